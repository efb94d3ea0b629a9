package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Changes tells cheaply whether anything was committed since the last
// look, in this process or another, on this host or another:
//
//   - SQLite: PRAGMA data_version on one connection it keeps;
//   - MySQL, and PostgreSQL in a one-request process: the highest message id
//     and the newest stream renewal, two index lookups on the pool;
//   - PostgreSQL otherwise: LISTEN on one connection it keeps; the schema's
//     triggers NOTIFY at every commit to messages or streams, so a check
//     costs nothing and C receives as soon as another host commits.
type Changes struct {
	check func(context.Context) (bool, error)
	close func() error
	c     chan struct{}
}

// Changed reports whether anything was committed since the previous call.
func (c *Changes) Changed(ctx context.Context) (bool, error) { return c.check(ctx) }

// C receives when the database itself announces a commit (PostgreSQL's
// NOTIFY); it is nil, and never receives, for the backends that are polled.
func (c *Changes) C() <-chan struct{} { return c.c }

// Close releases what the detector holds.
func (c *Changes) Close() error {
	if err := c.close(); err != nil {
		return fmt.Errorf("store: close change detector: %w", err)
	}
	return nil
}

// Changes returns the change detector that suits the backend and the
// process (see the type).
func (s *Store) Changes(ctx context.Context) (*Changes, error) {
	switch {
	case s.backend == sqliteBackend:
		return s.dataVersionChanges(ctx)
	case s.backend == postgresBackend && !s.single:
		return s.listenChanges(ctx), nil
	default:
		return s.pollChanges(ctx)
	}
}

// dataVersionChanges keeps one connection of the pool for PRAGMA
// data_version, which changes when another connection commits.
func (s *Store) dataVersionChanges(ctx context.Context) (*Changes, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, internal(err, "reserve a connection for change detection")
	}
	var version int64
	c := &Changes{close: conn.Close}
	c.check = func(ctx context.Context) (bool, error) {
		var v int64
		if err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
			return false, internal(err, "read data_version")
		}
		changed := v != version
		version = v
		return changed, nil
	}
	if _, err := c.check(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// selectChangeMark is what changes when a message (or a tombstone) is
// added or a stream opens, closes or is renewed: both maxima come from an
// index.
const selectChangeMark = `SELECT (SELECT COALESCE(MAX(id), 0) FROM messages),
	(SELECT COALESCE(MAX(seen_at), 0) FROM streams)`

// pollChanges compares the change mark with the previous one.
func (s *Store) pollChanges(ctx context.Context) (*Changes, error) {
	var lastID int64
	var lastSeen float64
	c := &Changes{close: func() error { return nil }}
	c.check = func(ctx context.Context) (bool, error) {
		var id int64
		var seen float64
		if err := s.db.QueryRowxContext(ctx, selectChangeMark).Scan(&id, &seen); err != nil {
			return false, internal(err, "read the change mark")
		}
		changed := id != lastID || seen != lastSeen
		lastID, lastSeen = id, seen
		return changed, nil
	}
	if _, err := c.check(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// notifyChannel is the channel the PostgreSQL schema's triggers notify.
const notifyChannel = "cgichat"

// listenRetry is how long the listener waits before connecting again
// after losing its connection; meanwhile every check reports a change, so
// the feed polls.
const listenRetry = time.Second

// listenChanges keeps one connection LISTENing for the schema's NOTIFYs
// until the detector is closed.
func (s *Store) listenChanges(ctx context.Context) *Changes {
	var listening, dirty atomic.Bool
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c := &Changes{c: make(chan struct{}, 1)}
	announce := func() {
		dirty.Store(true)
		select {
		case c.c <- struct{}{}:
		default:
		}
	}
	c.check = func(context.Context) (bool, error) {
		if !listening.Load() {
			return true, nil
		}
		return dirty.Swap(false), nil
	}
	c.close = func() error {
		cancel()
		<-done
		return nil
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			s.listen(ctx, func() {
				listening.Store(true)
				// What was committed before LISTEN took effect.
				announce()
			}, announce)
			listening.Store(false)
			select {
			case <-ctx.Done():
			case <-time.After(listenRetry):
			}
		}
	}()
	return c
}

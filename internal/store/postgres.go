//go:build !cgichat_sqlite_only

package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"cgichat"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
)

// postgresBackend is a PostgreSQL server (server.go has what it shares
// with MySQL). Its triggers NOTIFY at every commit to messages or streams,
// which a daemon LISTENs for.
type postgresBackend struct {
	schemaText func() string // tests substitute other schemas
}

var postgresDB = &postgresBackend{schemaText: func() string { return cgichat.SchemaPostgres }}

func (*postgresBackend) name() string { return "PostgreSQL" }

func (b *postgresBackend) schema() string { return b.schemaText() }

func (*postgresBackend) bindType() int { return sqlx.DOLLAR }

func (*postgresBackend) poolSize(o Options) int { return serverPoolSize(o) }

func (*postgresBackend) text(q stmt) string {
	if q.postgres != "" {
		return q.postgres
	}
	return q.sqlite
}

// open opens a pool for a postgres:// URL, which may carry any of libpq's
// parameters (sslmode=require, host=/run/postgresql, …).
func (*postgresBackend) open(source string) (*sqlx.DB, func() error, error) {
	cfg, err := pgx.ParseConfig(source)
	if err != nil {
		// pgx's error would quote the URL, password and all.
		return nil, nil, fmt.Errorf("not a PostgreSQL URL: postgres://USER:PASSWORD@HOST:PORT/DATABASE")
	}
	if _, ok := cfg.RuntimeParams["lock_timeout"]; !ok {
		cfg.RuntimeParams["lock_timeout"] = fmt.Sprint(BusyTimeout.Milliseconds())
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "cgichat"
	}
	return serverPool(sqlx.NewDb(stdlib.OpenDB(*cfg), "pgx")), nil, nil
}

func (*postgresBackend) raiseNextID(ctx context.Context, s *Store, tx *sqlx.Tx, id int64) error {
	return raiseCounter(ctx, s, tx, id)
}

func (*postgresBackend) begin(ctx context.Context, s *Store, lock string) (*sqlx.Tx, error) {
	return beginLocked(ctx, s, nil, lock)
}

func (*postgresBackend) queue(*Store) func() { return noQueue }

func (*postgresBackend) insertID(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (int64, error) {
	var id int64
	err := tx.QueryRowxContext(ctx, query+" RETURNING id", args...).Scan(&id)
	return id, err
}

func (b *postgresBackend) insertMessage(ctx context.Context, s *Store, tx *sqlx.Tx, args ...any) (int64, error) {
	return b.insertID(ctx, tx, s.dialect(insertMessage), args...)
}

func (*postgresBackend) deleteMessage() string { return "DELETE FROM messages WHERE id = ?" }

// deadlock reports PostgreSQL's deadlock_detected (40P01).
func (*postgresBackend) deadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}

// migrate applies each step in a transaction of its own.
func (*postgresBackend) migrate(ctx context.Context, s *Store, steps []step) error {
	return migrateServer(ctx, s, steps, s.db.DB, true)
}

// changes listens in a process serving many requests at once; a process
// serving one (CGI, mod_fcgid), which has one connection, polls.
func (*postgresBackend) changes(ctx context.Context, s *Store) (*Changes, error) {
	if !s.opts.Concurrent {
		return pollChanges(ctx, s)
	}
	return listenChanges(ctx, s), nil
}

// notifyChannel is the channel the PostgreSQL schema's triggers notify.
const notifyChannel = "cgichat"

// listenRetry is how long the listener waits before connecting again
// after losing its connection; meanwhile every check reports a change, so
// the feed polls.
const listenRetry = time.Second

// listenChanges keeps one connection LISTENing for the schema's NOTIFYs
// until the detector is closed.
func listenChanges(ctx context.Context, s *Store) *Changes {
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
			listen(ctx, s, func() {
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

// listen takes a connection of the pool, LISTENs on it, calls started,
// then notified for every notification, until ctx ends or the connection
// fails. The connection is then closed, not returned to the pool: it still
// listens.
func listen(ctx context.Context, s *Store, started, notified func()) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
			return driver.ErrBadConn
		}
		started()
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return driver.ErrBadConn
			}
			notified()
		}
	})
}

package store

import (
	"context"
	"fmt"
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
	return s.backend.changes(ctx, s)
}

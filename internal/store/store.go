// Package store keeps chat messages in SQLite. Every open turns on WAL,
// synchronous=NORMAL, a busy timeout and immediate write transactions, and
// brings the schema up to date from the embedded schema.sql.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"cgichat"
	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// BusyTimeout is how long a statement waits for another process's write
// lock before failing with "database is locked".
const BusyTimeout = 10 * time.Second

// Store is an open chat database.
type Store struct {
	db   *sqlx.DB
	path string

	// writeMu serialises this process's writers, so they queue here instead
	// of sleeping in SQLite's busy handler; other processes still wait
	// through the busy timeout.
	writeMu sync.Mutex

	secretMu sync.Mutex
	secret   []byte // signs nick claims, once read

	// Now returns the time stamped on new messages; tests replace it.
	Now func() time.Time
}

// Open opens the database at path, creating it and its directory when
// missing, and applies the schema. maxConns bounds the connection pool: 2
// is plenty for a one-request process, a daemon wants more.
func Open(ctx context.Context, path string, maxConns int) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: create the database directory: %w", err)
	}
	db, err := sqlx.Open("sqlite3", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	s := &Store{db: db, path: path, Now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// dsn returns go-sqlite3's connection string for path. The options apply to
// every connection the pool opens.
func dsn(path string) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", fmt.Sprint(BusyTimeout.Milliseconds()))
	q.Set("_txlock", "immediate")
	q.Set("_foreign_keys", "1")
	return path + "?" + q.Encode()
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes every connection.
func (s *Store) Close() error { return s.db.Close() }

// withTx runs fn in a write transaction (BEGIN IMMEDIATE, through the DSN)
// and commits it when fn succeeds.
func (s *Store) withTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// internal wraps err as a chat.EInternal error, so that callers can map it
// to a status while the log keeps the detail.
func internal(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var ce *chat.Error
	if errors.As(err, &ce) {
		return err
	}
	return &chat.Error{Code: chat.EInternal, Message: "store: " + fmt.Sprintf(format, args...), Err: err}
}

// schema returns the embedded schema; tests may substitute their own.
var schema = func() string { return cgichat.Schema }

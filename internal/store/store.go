// Package store keeps chat messages in a database: SQLite by default, or a
// MySQL/MariaDB or PostgreSQL server when several web hosts share one. The
// same methods behave the same on each; what differs (connection settings,
// SQL dialects, change detection) lives beside the backend it belongs to.
//
// SQLite: every open turns on WAL, synchronous=NORMAL, a busy timeout and
// immediate write transactions. The servers: writers queue on a lock row
// (table counters), as SQLite's single writer would, which also makes
// message ids visible in increasing order. Each open brings the schema up to
// date from the backend's embedded schema file.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// BusyTimeout is how long a statement waits for another process's write
// lock before failing: SQLite's "database is locked", the servers' lock
// wait timeout.
const BusyTimeout = 10 * time.Second

// Store is an open chat database.
type Store struct {
	db      *sqlx.DB
	source  string // CHAT_DB: a file path or a server URL
	backend *backend
	// single: the process serves one request (CGI), with one connection
	// for everything, change detection included.
	single bool

	// writeMu serialises this process's writers, so they queue here instead
	// of in the database; lockWrites queues SQLite writers behind other
	// processes' writers too.
	writeMu sync.Mutex

	secretMu sync.Mutex
	secret   []byte // signs nick claims, once read

	// Now returns the time stamped on new messages; tests replace it.
	Now func() time.Time
}

// Open opens the database named by source, a SQLite file path (created
// with its directory when missing) or a mysql:// or postgres:// URL, and
// applies the schema. maxConns bounds the connection pool: 1 for a process
// that serves a single request (CGI), which then uses one connection to a
// database server for everything; a daemon wants a few more.
func Open(ctx context.Context, source string, maxConns int) (*Store, error) {
	s := &Store{source: source, backend: backendOf(source), single: maxConns <= 1, Now: time.Now}
	var err error
	switch s.backend {
	case mysqlBackend:
		s.db, err = openMySQL(source)
	case postgresBackend:
		s.db, err = openPostgres(source)
	default:
		s.db, err = openSQLite(source)
		// The SQLite change detector holds a connection of its own.
		maxConns = max(maxConns, 2)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", s.Name(), err)
	}
	s.db.SetMaxOpenConns(max(maxConns, 1))
	s.db.SetMaxIdleConns(max(maxConns, 1))
	if s.backend != sqliteBackend {
		// Shared hosts cap connections per user and end idle ones: give
		// back what a quiet daemon does not use.
		s.db.SetConnMaxIdleTime(time.Minute)
		s.db.SetConnMaxLifetime(30 * time.Minute)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store: open %s: %w", s.Name(), err)
	}
	return s, nil
}

// DB returns what the store opened: the SQLite file's path or the server's
// URL, as CHAT_DB gave it.
func (s *Store) DB() string { return s.source }

// Name returns the database's name for messages: the path, or the URL
// without its password.
func (s *Store) Name() string { return redact(s.source) }

// Close closes every connection.
func (s *Store) Close() error { return s.db.Close() }

// Locks: the counters row a writer takes first on a database server.
const (
	lockMessages = "messages" // messages, claims, buckets, settings, retention
	lockStreams  = "streams"  // stream openings
)

const selectLock = `SELECT value FROM counters WHERE name = ? FOR UPDATE`

// withTx runs fn in a write transaction and commits it when fn succeeds.
// SQLite begins it IMMEDIATE (through the DSN): one writer at a time. On a
// server it first takes the lock row, for the same effect among the writers
// of that lock.
func (s *Store) withTx(ctx context.Context, lock string, fn func(*sqlx.Tx) error) error {
	defer s.lockWrites()()
	tx, err := s.db.BeginTxx(ctx, s.backend.txOptions)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if s.backend != sqliteBackend {
		var v int64
		if err := tx.QueryRowxContext(ctx, s.sql(selectLock), lock).Scan(&v); err != nil {
			tx.Rollback()
			return fmt.Errorf("take the %s lock: %w", lock, err)
		}
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

// insertID runs an INSERT of one row into a table whose id the database
// assigns, and returns that id.
func (s *Store) insertID(ctx context.Context, tx *sqlx.Tx, q stmt, args ...any) (int64, error) {
	var id int64
	if s.backend == postgresBackend {
		err := tx.QueryRowxContext(ctx, s.dialect(q)+" RETURNING id", args...).Scan(&id)
		return id, err
	}
	res, err := tx.ExecContext(ctx, s.dialect(q), args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
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

// noRows reports whether err says a query found nothing.
func noRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// Connect opens a pool on source, a SQLite path or a server URL, without
// creating or migrating anything, for tools and tests that read or change
// the tables the way a moderator does. Its Rebind turns ? placeholders into
// the backend's.
func Connect(source string) (*sqlx.DB, error) {
	switch b := backendOf(source); b {
	case mysqlBackend:
		return openMySQL(source)
	case postgresBackend:
		return openPostgres(source)
	default:
		return sqlx.Open("sqlite3", sqliteDSN(source))
	}
}

// ModeratorDelete returns the statement that deletes the message whose id
// is its one argument, leaving a tombstone that open pages act on: a plain
// DELETE, except on MySQL, whose triggers cannot add the tombstone.
func ModeratorDelete(source string) string {
	if backendOf(source) == mysqlBackend {
		return "CALL delete_message(?)"
	}
	return "DELETE FROM messages WHERE id = ?"
}

// backendOf returns the backend that source names.
func backendOf(source string) *backend {
	switch {
	case strings.HasPrefix(source, "mysql://"):
		return mysqlBackend
	case strings.HasPrefix(source, "postgres://"), strings.HasPrefix(source, "postgresql://"):
		return postgresBackend
	default:
		return sqliteBackend
	}
}

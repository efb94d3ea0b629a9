// Package store keeps chat messages in a database: SQLite by default, or a
// MySQL/MariaDB or PostgreSQL server when several web hosts share one. The
// same methods behave the same on each; what differs lives in one file per
// backend behind one interface (backend.go).
//
// The store takes plain values: which nicks are the same (the key the
// caller computes), whether a client holds a claim, what rate applies. It
// decides nothing of identity or policy itself, and reads no settings.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/config"

	"github.com/jmoiron/sqlx"
)

// BusyTimeout is how long a statement waits for another process's write
// lock before failing: SQLite's "database is locked", the servers' lock
// wait timeout.
const BusyTimeout = 10 * time.Second

// Options say what the process opening a store is.
type Options struct {
	// Concurrent: the process serves many requests at once (a daemon). It
	// keeps a small pool of connections and, on PostgreSQL, one that
	// LISTENs for changes. Otherwise (CGI, mod_fcgid) one connection
	// serves everything, which is what shared hosts that cap connections
	// per user need.
	Concurrent bool
	// NickKey returns the form in which two nicks are the same nick
	// (identity.Key), for matching bans; nil compares them as they are.
	NickKey func(nick string) string
}

// Connections per store: one for a process serving one request at a
// time, a small pool for a daemon serving many.
const (
	oneRequestConns = 1
	concurrentConns = 8
)

func (o Options) conns() int {
	if o.Concurrent {
		return concurrentConns
	}
	return oneRequestConns
}

// nickKey returns the key of nick under o.
func (o Options) nickKey(nick string) string {
	if o.NickKey == nil {
		return nick
	}
	return o.NickKey(nick)
}

// Store is an open chat database.
type Store struct {
	db      *sqlx.DB
	source  string // CHAT_DB: a file path or a server URL
	backend backend
	opts    Options

	// same returns errReplaced once source names another database than
	// the one opened (nil: it cannot); replaced ends when a check saw it.
	same        func() error
	replaced    context.Context
	setReplaced context.CancelFunc

	// writeMu serialises this process's writers, so they queue here instead
	// of in the database; lockWrites queues them behind other processes'
	// writers too.
	writeMu sync.Mutex

	secretMu sync.Mutex
	secret   []byte // signs nick claims, once read

	// Now returns the time stamped on new messages; tests replace it.
	Now func() time.Time
}

// Open opens the database named by source, a SQLite file path (created
// with its directory when missing) or a mysql:// or postgres:// URL, and
// applies the schema.
func Open(ctx context.Context, source string, o Options) (*Store, error) {
	b, err := backendFor(source)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", redact(source), err)
	}
	s := &Store{source: source, backend: b, opts: o, Now: time.Now}
	s.replaced, s.setReplaced = context.WithCancel(context.Background())
	if p, ok := b.(preparer); ok {
		if err := p.prepare(source); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", s.Name(), err)
		}
	}
	if s.db, s.same, err = b.open(source); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", s.Name(), err)
	}
	n := b.poolSize(o)
	s.db.SetMaxOpenConns(n)
	s.db.SetMaxIdleConns(n)
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

// exec runs one write statement outside a transaction, run again when the
// database chose it as a deadlock's victim, and only while the database is
// current (see Current).
func (s *Store) exec(ctx context.Context, query string, args ...any) error {
	defer s.lockWrites()()
	if err := s.Current(); err != nil {
		return err
	}
	var err error
	for range deadlockTries {
		if _, err = s.db.ExecContext(ctx, query, args...); !s.backend.deadlock(err) {
			return err
		}
	}
	return err
}

// Close closes every connection.
func (s *Store) Close() error {
	s.setReplaced()
	return s.db.Close()
}

// errReplaced is the cause of the error Current returns.
var errReplaced = errors.New("the database file was replaced or removed since it was opened")

// Current returns an error when CHAT_DB's path no longer names the SQLite
// file the store opened: the file was moved away, replaced (a backup moved
// over it) or deleted. What the store would write then would go where
// nobody reads it, so every write transaction checks this before it
// begins and after it commits, and fails when it finds it; a process that
// keeps its store (a daemon, mod_fcgid) must open the path anew. A
// database server (and a nil Store) is always current. It costs one stat.
func (s *Store) Current() error {
	if s == nil || s.same == nil {
		return nil
	}
	if err := s.same(); err != nil {
		s.setReplaced()
		return internal(err, "%s", s.Name())
	}
	return nil
}

// Replaced returns a context that ends when Current first fails, or the
// store is closed: what reads the store for a while (a stream) stops
// then, and its reader comes back to a store opened anew.
func (s *Store) Replaced() context.Context { return s.replaced }

// KeepIDsAbove makes every message id from now on greater than id: a
// database that replaced another (a backup restored) continues its ids,
// so that readers resuming from an id they saw miss nothing.
func (s *Store) KeepIDsAbove(ctx context.Context, id int64) error {
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		return s.backend.raiseNextID(ctx, s, tx, id)
	})
	return internal(err, "continue the message ids above %d", id)
}

// Locks: the lock a writer takes first among the writers of the database.
const (
	lockMessages = "messages" // messages, claims, buckets, settings, retention
	lockStreams  = "streams"  // stream openings
)

// withTx runs fn in a write transaction holding lock and commits it when
// fn succeeds. It fails unless the database is current (see Current)
// before it begins and after it commits: a commit to a file that was
// replaced meanwhile is reported as the failure it is.
//
// A transaction the database chose as a deadlock's victim (a server's
// writers without the lock row, such as a stream's renewal, can meet one
// that holds it) is run again, up to deadlockTries times in all.
func (s *Store) withTx(ctx context.Context, lock string, fn func(*sqlx.Tx) error) error {
	defer s.lockWrites()()
	if err := s.Current(); err != nil {
		return err
	}
	var err error
	for range deadlockTries {
		if err = s.tx(ctx, lock, fn); !s.backend.deadlock(err) {
			break
		}
	}
	if err != nil {
		return err
	}
	return s.Current()
}

// deadlockTries bounds how often a transaction runs when deadlocks keep
// choosing it.
const deadlockTries = 3

// tx runs fn in one write transaction holding lock.
func (s *Store) tx(ctx context.Context, lock string, fn func(*sqlx.Tx) error) error {
	tx, err := s.backend.begin(ctx, s, lock)
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

// dialect returns q for this store's backend, with its placeholders.
func (s *Store) dialect(q stmt) string { return s.sql(s.backend.text(q)) }

// sql returns a statement that every backend understands with this
// backend's placeholders.
func (s *Store) sql(q string) string { return sqlx.Rebind(s.backend.bindType(), q) }

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

// redact returns a database source fit for logs: a URL loses its
// password, in its user part or its query.
func redact(source string) string { return config.Redacted(source) }

// Connect opens a pool on source, a SQLite path or a server URL, without
// creating or migrating anything, for tools and tests that read or change
// the tables the way a moderator does. Its Rebind turns ? placeholders into
// the backend's.
func Connect(source string) (*sqlx.DB, error) {
	b, err := backendFor(source)
	if err != nil {
		return nil, err
	}
	db, _, err := b.open(source)
	return db, err
}

// ModeratorDelete returns the statement that deletes the message whose id
// is its one argument, leaving a tombstone that open pages act on: a plain
// DELETE, except on MySQL, whose triggers cannot add the tombstone.
func ModeratorDelete(source string) string {
	b, err := backendFor(source)
	if err != nil {
		return sqliteDB.deleteMessage()
	}
	return b.deleteMessage()
}

package store

import (
	"context"
	"strings"

	"github.com/jmoiron/sqlx"
)

// backend is what one kind of database does its own way. Each lives in a
// file of its own (sqlite.go, mysql.go, postgres.go, with server.go for
// what the two servers share); the rest of the package never asks which
// one it has.
type backend interface {
	// name names the database for messages: SQLite, MySQL or PostgreSQL.
	name() string
	// open returns a pool on source, which connects lazily, and a check
	// that returns errReplaced once source no longer names the database
	// the pool's connections opened (a SQLite file replaced or removed);
	// nil where it always does (a server).
	open(source string) (*sqlx.DB, func() error, error)
	// poolSize returns how many connections a store with o keeps.
	poolSize(o Options) int
	// schema returns the backend's schema file, numbered steps.
	schema() string
	// migrate applies every step the database has not seen yet.
	migrate(ctx context.Context, s *Store, steps []step) error
	// text returns the backend's text of q, with ? placeholders.
	text(q stmt) string
	// bindType is the backend's placeholder style, for sqlx.Rebind.
	bindType() int
	// begin starts a write transaction in which this writer holds lock
	// among the writers of the database.
	begin(ctx context.Context, s *Store, lock string) (*sqlx.Tx, error)
	// queue waits for this process's turn to write among the other
	// processes' writers, where the database does not queue them itself,
	// and returns what ends the turn.
	queue(s *Store) (done func())
	// insertID runs an INSERT of one row whose id the database assigns
	// and returns that id.
	insertID(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (int64, error)
	// insertMessage runs the statement insertMessage with args and returns
	// the new message's id.
	insertMessage(ctx context.Context, s *Store, tx *sqlx.Tx, args ...any) (int64, error)
	// changes returns the change detector that suits the backend and the
	// store's options.
	changes(ctx context.Context, s *Store) (*Changes, error)
	// raiseNextID makes the next message id greater than id, in tx.
	raiseNextID(ctx context.Context, s *Store, tx *sqlx.Tx, id int64) error
	// deleteMessage is the statement that deletes the message whose id is
	// its one argument, leaving the tombstone open pages act on.
	deleteMessage() string
	// deadlock reports whether err says the database ended a transaction
	// to break a deadlock, so that running it again can succeed.
	deadlock(err error) bool
}

// preparer is a backend that makes a place for a new database before it
// opens one (SQLite: the file's directory).
type preparer interface {
	prepare(source string) error
}

// stmt is one SQL statement written with ? placeholders, in each backend's
// dialect; an empty MySQL or PostgreSQL text means the SQLite one serves.
type stmt struct {
	sqlite, mysql, postgres string
}

// backendFor returns the backend that source names: a mysql:// or
// postgres:// (postgresql://) URL names a database server, anything else a
// SQLite file. A build without the servers' drivers refuses their URLs.
func backendFor(source string) (backend, error) {
	for _, scheme := range []string{"mysql", "postgres", "postgresql"} {
		if strings.HasPrefix(source, scheme+"://") {
			return serverBackend(scheme)
		}
	}
	return sqliteDB, nil
}

// plainInsertID is insertID for backends whose driver reports the id of
// an inserted row.
func plainInsertID(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

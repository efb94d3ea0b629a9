package store

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"cgichat"

	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// sqliteBackend is a SQLite file: every connection in WAL mode with
// synchronous=NORMAL, a busy timeout and immediate write transactions;
// schema steps counted by PRAGMA user_version; changes seen by PRAGMA
// data_version; writers queued on a lock file beside the database.
type sqliteBackend struct {
	schemaText func() string // tests substitute older schemas
}

var sqliteDB = &sqliteBackend{schemaText: func() string { return cgichat.Schema }}

func (*sqliteBackend) name() string { return "SQLite" }

func (b *sqliteBackend) schema() string { return b.schemaText() }

func (*sqliteBackend) text(q stmt) string { return q.sqlite }

func (*sqliteBackend) bindType() int { return sqlx.QUESTION }

// prepare creates the directory of the file at path when missing.
func (*sqliteBackend) prepare(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("create the database directory: %w", err)
	}
	return nil
}

// open opens the file at path; SQLite creates it on first use.
func (*sqliteBackend) open(path string) (*sqlx.DB, error) {
	return sqlx.Open("sqlite3", sqliteDSN(path))
}

// poolSize leaves room, even in a one-request process, for the connection
// the change detector keeps for itself.
func (*sqliteBackend) poolSize(o Options) int { return max(o.conns(), 2) }

// sqliteDSN returns go-sqlite3's connection string for path. The options
// apply to every connection the pool opens.
func sqliteDSN(path string) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", fmt.Sprint(BusyTimeout.Milliseconds()))
	q.Set("_txlock", "immediate")
	q.Set("_foreign_keys", "1")
	return path + "?" + q.Encode()
}

// begin begins an IMMEDIATE transaction (through the DSN): SQLite lets one
// writer in at a time, whatever the lock.
func (*sqliteBackend) begin(ctx context.Context, s *Store, _ string) (*sqlx.Tx, error) {
	return s.db.BeginTxx(ctx, nil)
}

// queue takes the lock file beside the database (see lockFile).
func (*sqliteBackend) queue(s *Store) func() { return lockFile(s.source+"-lock", BusyTimeout) }

func (*sqliteBackend) insertID(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (int64, error) {
	return plainInsertID(ctx, tx, query, args...)
}

func (b *sqliteBackend) insertMessage(ctx context.Context, s *Store, tx *sqlx.Tx, args ...any) (int64, error) {
	return plainInsertID(ctx, tx, s.dialect(insertMessage), args...)
}

func (*sqliteBackend) deleteMessage() string { return "DELETE FROM messages WHERE id = ?" }

// deadlock: SQLite has one writer at a time, and waits for it (the busy
// timeout) rather than choosing a victim.
func (*sqliteBackend) deadlock(error) bool { return false }

// migrate applies every step above the database's user_version, each in
// the same immediate transaction that raises the version, so processes
// that start together apply each step exactly once.
func (*sqliteBackend) migrate(ctx context.Context, s *Store, steps []step) error {
	latest := steps[len(steps)-1].version
	var v int
	if err := s.db.GetContext(ctx, &v, "PRAGMA user_version"); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > latest {
		return newerSchema(v, latest)
	}
	if v == latest {
		return nil
	}
	return s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		// Another process may have migrated since the read above.
		if err := tx.GetContext(ctx, &v, "PRAGMA user_version"); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		for _, st := range steps[v:] {
			if _, err := tx.ExecContext(ctx, st.sql); err != nil {
				return fmt.Errorf("apply schema step %d: %w", st.version, err)
			}
		}
		// PRAGMA takes no parameters; latest is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", latest)); err != nil {
			return fmt.Errorf("set schema version: %w", err)
		}
		return nil
	})
}

// changes keeps one connection of the pool for PRAGMA data_version, which
// changes when another connection commits.
func (*sqliteBackend) changes(ctx context.Context, s *Store) (*Changes, error) {
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

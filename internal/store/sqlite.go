package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"cgichat"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"
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

// open opens the file at path; SQLite creates it on first use. Every
// connection of the pool opens the file that the first one opened, or
// fails: a pool never spans two files that were at the path in turn.
func (*sqliteBackend) open(path string) (*sqlx.DB, func() error, error) {
	c := &fileConnector{path: path, dsn: sqliteDSN(path), driver: &sqlite3.SQLiteDriver{}}
	return sqlx.NewDb(sql.OpenDB(c), "sqlite3"), c.check, nil
}

// fileID names a file: its device and inode.
type fileID struct{ dev, ino uint64 }

// statID returns the file at path's fileID.
func statID(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// fileConnector opens connections on the SQLite file at path, all on one
// file: the one the first connection found there. A process that keeps
// its connections (a daemon, mod_fcgid) would otherwise go on writing to a
// file that was moved away or deleted (its data lost to anyone who opens
// the path), or mix connections on the old file and the new one.
type fileConnector struct {
	path, dsn string
	driver    *sqlite3.SQLiteDriver

	mu   sync.Mutex
	file fileID // zero until the first connection
}

// Connect opens a connection and checks which file it opened: the one at
// the path before and after the open (a file replaced in between fails
// it), and the pool's.
func (c *fileConnector) Connect(context.Context) (driver.Conn, error) {
	before, berr := statID(c.path)
	conn, err := c.driver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	after, aerr := statID(c.path)
	if aerr != nil || (berr == nil && before != after) {
		conn.Close()
		return nil, errReplaced
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file == (fileID{}) {
		c.file = after
	}
	if c.file != after {
		conn.Close()
		return nil, errReplaced
	}
	return conn, nil
}

func (c *fileConnector) Driver() driver.Driver { return c.driver }

// check returns errReplaced when the path names a file other than the
// pool's, or none. Before the first connection any file will do.
func (c *fileConnector) check() error {
	c.mu.Lock()
	want := c.file
	c.mu.Unlock()
	if want == (fileID{}) {
		return nil
	}
	if got, err := statID(c.path); err != nil || got != want {
		return errReplaced
	}
	return nil
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

const (
	raiseSequence = `UPDATE sqlite_sequence SET seq = ? WHERE name = 'messages' AND seq < ?`
	startSequence = `INSERT INTO sqlite_sequence (name, seq)
		SELECT 'messages', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'messages')`
)

// raiseNextID sets AUTOINCREMENT's record of the highest id, which has no
// row until the first insert.
func (*sqliteBackend) raiseNextID(ctx context.Context, _ *Store, tx *sqlx.Tx, id int64) error {
	if _, err := tx.ExecContext(ctx, raiseSequence, id, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, startSequence, id)
	return err
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
	if err := whileBusy(ctx, func() error { return s.db.GetContext(ctx, &v, "PRAGMA user_version") }); err != nil {
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

// whileBusy runs f, a pool's first statement, again while SQLite answers
// that the database is locked, for up to BusyTimeout. Connections that
// open a new file together are refused at once, not after the busy
// timeout: the one turning it to WAL needs it alone, and SQLite does not
// wait where waiting could deadlock.
func whileBusy(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(BusyTimeout)
	for pause := time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		err := f()
		var se sqlite3.Error
		if !errors.As(err, &se) || (se.Code != sqlite3.ErrBusy && se.Code != sqlite3.ErrLocked) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
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
		// A stream on a file that is no longer at the path would wait
		// for messages that go elsewhere: Replaced ends it.
		if err := s.Current(); err != nil {
			return false, err
		}
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

//go:build !cgichat_sqlite_only

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"cgichat"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

// mysqlBackend is a MySQL or MariaDB server (server.go has what it shares
// with PostgreSQL). Its triggers cannot add a tombstone to the table they
// fire on, so messages are deleted by a procedure; transactions read
// committed data, so a writer that waited for the lock row sees what the
// one before it committed (InnoDB's default REPEATABLE READ could show an
// older snapshot).
type mysqlBackend struct {
	schemaText func() string // tests substitute other schemas
}

var mysqlDB = &mysqlBackend{schemaText: func() string { return cgichat.SchemaMySQL }}

func (*mysqlBackend) name() string { return "MySQL" }

func (b *mysqlBackend) schema() string { return b.schemaText() }

func (*mysqlBackend) bindType() int { return sqlx.QUESTION }

func (*mysqlBackend) poolSize(o Options) int { return serverPoolSize(o) }

func (*mysqlBackend) text(q stmt) string {
	if q.mysql != "" {
		return q.mysql
	}
	return q.sqlite
}

// open opens a pool for a mysql:// URL.
func (*mysqlBackend) open(source string) (*sqlx.DB, func() error, error) {
	cfg, err := mysqlConfig(source)
	if err != nil {
		return nil, nil, err
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, nil, err
	}
	return serverPool(sqlx.NewDb(sql.OpenDB(conn), "mysql")), nil, nil
}

func (*mysqlBackend) raiseNextID(ctx context.Context, s *Store, tx *sqlx.Tx, id int64) error {
	return raiseCounter(ctx, s, tx, id)
}

// mysqlConfig turns mysql://USER:PASSWORD@HOST[:PORT]/DATABASE[?PARAMS]
// into the driver's configuration. PARAMS are the driver's own (tls=true,
// timeout=5s, …) plus socket=PATH for a server on a Unix socket. The
// password may hold any character, percent-encoded.
func mysqlConfig(source string) (*mysql.Config, error) {
	u, err := url.Parse(source)
	if err != nil {
		return nil, fmt.Errorf("not a URL: mysql://USER:PASSWORD@HOST:PORT/DATABASE")
	}
	q := u.Query()
	sock := q.Get("socket")
	q.Del("socket")
	// The driver reads its parameters from a DSN of its own form.
	cfg, err := mysql.ParseDSN("/" + strings.Trim(u.Path, "/") + "?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("the parameters of %s: %w", u.Redacted(), err)
	}
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net, cfg.Addr = "tcp", u.Host
	if sock != "" {
		cfg.Net, cfg.Addr = "unix", sock
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = BusyTimeout
	}
	// One round trip per statement: the driver quotes arguments itself
	// (safe with utf8mb4) instead of preparing every statement.
	cfg.InterpolateParams = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["innodb_lock_wait_timeout"]; !ok {
		cfg.Params["innodb_lock_wait_timeout"] = fmt.Sprint(int(BusyTimeout / time.Second))
	}
	return cfg, nil
}

func (*mysqlBackend) begin(ctx context.Context, s *Store, lock string) (*sqlx.Tx, error) {
	return beginLocked(ctx, s, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, lock)
}

func (*mysqlBackend) queue(*Store) func() { return noQueue }

func (*mysqlBackend) insertID(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (int64, error) {
	return plainInsertID(ctx, tx, query, args...)
}

// selectMessageID reads the id the trigger gave the message this
// transaction inserted: the transaction holds the counters row, and
// LAST_INSERT_ID knows nothing of ids a trigger assigns.
const selectMessageID = `SELECT value FROM counters WHERE name = 'messages'`

func (*mysqlBackend) insertMessage(ctx context.Context, s *Store, tx *sqlx.Tx, args ...any) (int64, error) {
	if _, err := tx.ExecContext(ctx, s.dialect(insertMessage), args...); err != nil {
		return 0, err
	}
	var id int64
	err := tx.GetContext(ctx, &id, selectMessageID)
	return id, err
}

func (*mysqlBackend) deleteMessage() string { return "CALL delete_message(?)" }

// deadlock reports MySQL's ER_LOCK_DEADLOCK (1213).
func (*mysqlBackend) deadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1213
}

// migrate applies the steps through a one-connection pool that may run
// several statements at once, as the schema's steps are written; MySQL
// cannot roll back DDL, so no step runs in a transaction.
func (*mysqlBackend) migrate(ctx context.Context, s *Store, steps []step) error {
	cfg, err := mysqlConfig(s.source)
	if err != nil {
		return err
	}
	cfg.MultiStatements = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxOpenConns(1)
	return migrateServer(ctx, s, steps, db, false)
}

func (*mysqlBackend) changes(ctx context.Context, s *Store) (*Changes, error) {
	return pollChanges(ctx, s)
}

//go:build !cgichat_sqlite_only

package store

import (
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

// openMySQL opens a pool for a mysql:// URL.
func openMySQL(source string) (*sqlx.DB, error) {
	cfg, err := mysqlConfig(source)
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sqlx.NewDb(sql.OpenDB(conn), "mysql"), nil
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

// openMySQLMigrator opens a one-connection pool that may run several
// statements at once, as the schema's steps are written.
func openMySQLMigrator(source string) (*sql.DB, error) {
	cfg, err := mysqlConfig(source)
	if err != nil {
		return nil, err
	}
	cfg.MultiStatements = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

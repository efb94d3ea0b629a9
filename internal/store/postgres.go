//go:build !cgichat_sqlite_only

package store

import (
	"context"
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
)

// openPostgres opens a pool for a postgres:// URL, which may carry any of
// libpq's parameters (sslmode=require, host=/run/postgresql, …).
func openPostgres(source string) (*sqlx.DB, error) {
	cfg, err := pgx.ParseConfig(source)
	if err != nil {
		// pgx's error would quote the URL, password and all.
		return nil, fmt.Errorf("not a PostgreSQL URL: postgres://USER:PASSWORD@HOST:PORT/DATABASE")
	}
	if _, ok := cfg.RuntimeParams["lock_timeout"]; !ok {
		cfg.RuntimeParams["lock_timeout"] = fmt.Sprint(BusyTimeout.Milliseconds())
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "cgichat"
	}
	return sqlx.NewDb(stdlib.OpenDB(*cfg), "pgx"), nil
}

// listen takes a connection of the pool, LISTENs on it, calls started,
// then notified for every notification, until ctx ends or the connection
// fails. The connection is then closed, not returned to the pool: it still
// listens.
func (s *Store) listen(ctx context.Context, started, notified func()) {
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

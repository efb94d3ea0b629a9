package store

import (
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

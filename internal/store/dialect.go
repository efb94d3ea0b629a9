package store

import (
	"database/sql"
	"net/url"

	"cgichat"

	"github.com/jmoiron/sqlx"
)

// backend is what the store needs to know of one kind of database.
type backend struct {
	name string // for messages
	// driver names the database/sql driver, which also tells sqlx the
	// placeholder style (? or $1).
	driver string
	// schema returns the backend's embedded schema; tests may substitute
	// their own.
	schema func() string
	// txOptions begins write transactions.
	txOptions *sql.TxOptions
}

// The backends.
var (
	sqliteBackend = &backend{"SQLite", "sqlite3", func() string { return cgichat.Schema }, nil}
	// READ COMMITTED: a writer that waited for the lock row sees what the
	// one before it committed (InnoDB's default REPEATABLE READ could show
	// an older snapshot).
	mysqlBackend = &backend{"MySQL", "mysql", func() string { return cgichat.SchemaMySQL },
		&sql.TxOptions{Isolation: sql.LevelReadCommitted}}
	postgresBackend = &backend{"PostgreSQL", "pgx", func() string { return cgichat.SchemaPostgres }, nil}
)

// stmt is one SQL statement written with ? placeholders, in each backend's
// dialect; an empty MySQL or PostgreSQL text means the SQLite one serves.
type stmt struct {
	sqlite, mysql, postgres string
}

// dialect returns q for this store's backend, with its placeholders.
func (s *Store) dialect(q stmt) string {
	text := q.sqlite
	switch {
	case s.backend == mysqlBackend && q.mysql != "":
		text = q.mysql
	case s.backend == postgresBackend && q.postgres != "":
		text = q.postgres
	}
	return s.sql(text)
}

// sql returns a statement that every backend understands with this
// backend's placeholders.
func (s *Store) sql(q string) string {
	return sqlx.Rebind(sqlx.BindType(s.backend.driver), q)
}

// redact returns a database source fit for logs: a URL loses its password.
func redact(source string) string {
	u, err := url.Parse(source)
	if err != nil || u.User == nil {
		return source
	}
	return u.Redacted()
}

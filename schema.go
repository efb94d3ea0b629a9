// Package cgichat holds what the whole module shares at its root: the
// database schemas, embedded from the .sql files beside this one so that
// each file stays the one source of its backend's schema.
package cgichat

import _ "embed"

// Schema is the text of schema.sql, for SQLite: numbered steps applied by
// the store.
//
//go:embed schema.sql
var Schema string

// SchemaMySQL is the text of schema.mysql.sql, for MySQL and MariaDB: the
// same tables and meaning in numbered steps.
//
//go:embed schema.mysql.sql
var SchemaMySQL string

// SchemaPostgres is the text of schema.postgres.sql, for PostgreSQL: the
// same tables and meaning in numbered steps.
//
//go:embed schema.postgres.sql
var SchemaPostgres string

// Package cgichat holds what the whole module shares at its root: the
// database schema, embedded from schema.sql so the file stays the one source.
package cgichat

import _ "embed"

// Schema is the text of schema.sql: numbered steps applied by the store.
//
//go:embed schema.sql
var Schema string

package store

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// openSQLite opens the file at path, creating its directory when missing.
func openSQLite(path string) (*sqlx.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create the database directory: %w", err)
	}
	return sqlx.Open("sqlite3", sqliteDSN(path))
}

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

//go:build cgichat_sqlite_only

package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Built with the tag cgichat_sqlite_only, as deploy.sh builds for a SQLite
// CHAT_DB, the programs leave the MySQL and PostgreSQL drivers out: the
// binaries are 40 % smaller, and so is what every CGI process maps (its
// resident size). A server URL then fails with a message saying how to get
// a build that has them.

func openMySQL(string) (*sqlx.DB, error) { return nil, sqliteOnly("MySQL") }

func openMySQLMigrator(string) (*sql.DB, error) { return nil, sqliteOnly("MySQL") }

func openPostgres(string) (*sqlx.DB, error) { return nil, sqliteOnly("PostgreSQL") }

// listen is never reached: no PostgreSQL store opens.
func (s *Store) listen(context.Context, func(), func()) {}

func sqliteOnly(server string) error {
	return fmt.Errorf("this build of cgichat has SQLite only (deploy.sh builds it so for a SQLite --db): "+
		"deploy again with --db set to the %s URL, or build without -tags cgichat_sqlite_only", server)
}

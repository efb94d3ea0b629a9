//go:build cgichat_sqlite_only

package store

import "fmt"

// Built with the tag cgichat_sqlite_only, as deploy.sh builds for a SQLite
// CHAT_DB, the programs leave out whole files: server.go, mysql.go and
// postgres.go with the MySQL and PostgreSQL drivers, which make the
// binaries and what every CGI process maps much larger
// (docs/performance.md). A server URL then fails with a message saying how
// to get a build that has them.

func serverBackend(scheme string) (backend, error) {
	server := "MySQL"
	if scheme != "mysql" {
		server = "PostgreSQL"
	}
	return nil, fmt.Errorf("this build of cgichat has SQLite only (deploy.sh builds it so for a SQLite --db): "+
		"deploy again with --db set to the %s URL, or build without -tags cgichat_sqlite_only", server)
}

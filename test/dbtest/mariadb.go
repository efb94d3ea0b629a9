package dbtest

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-sql-driver/mysql"
)

// The account the tests' programs use on the MariaDB server.
const (
	mariaUser     = "chat"
	mariaPassword = "chat-pw"
)

// mariaDB is a MariaDB server in a temporary directory.
type mariaDB struct {
	base  string
	port  int
	proc  *process
	admin *sql.DB // root, over the Unix socket
}

// startMariaDB initialises a data directory and starts mariadbd on a free
// loopback port, with settings for speed over durability (a test server
// loses nothing it needs in a crash), and creates the account the programs
// log in with.
func startMariaDB() (server, error) {
	acct, err := accountFor("mysql")
	if err != nil {
		return nil, err
	}
	base, data, err := acct.tempDir("cgichat-mariadb-")
	if err != nil {
		return nil, err
	}
	m := &mariaDB{base: base}
	ok := false
	defer func() {
		if !ok {
			m.stop()
		}
	}()
	install := acct.command("mariadb-install-db", "--no-defaults", "--datadir="+data,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve")
	if out, err := install.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	if m.port, err = freePort(); err != nil {
		return nil, err
	}
	sock := filepath.Join(base, "mysqld.sock")
	cmd := acct.command("mariadbd", "--no-defaults", "--datadir="+data, "--socket="+sock,
		fmt.Sprint("--port=", m.port), "--bind-address=127.0.0.1", "--skip-name-resolve",
		"--pid-file="+filepath.Join(base, "mysqld.pid"), "--log-error="+filepath.Join(base, "error.log"),
		"--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=2",
		"--innodb-doublewrite=0", "--max-connections=500", "--skip-log-bin", "--performance-schema=0")
	// The socket directory must be writable by the server.
	if err := os.Chown(base, int(acct.uid), int(acct.gid)); err != nil {
		return nil, err
	}
	if m.proc, err = startProcess(cmd, filepath.Join(base, "stdout.log")); err != nil {
		return nil, err
	}
	m.proc.log = filepath.Join(base, "error.log")
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", sock
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	m.admin = sql.OpenDB(conn)
	if err := m.proc.waitReady("mariadbd", func() error { return ping(m.admin) }); err != nil {
		return nil, err
	}
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'", mariaUser, mariaPassword),
		fmt.Sprintf("GRANT ALL ON *.* TO '%s'@'127.0.0.1'", mariaUser),
	} {
		if _, err := m.admin.Exec(q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	ok = true
	return m, nil
}

func (m *mariaDB) create(name string) (string, error) {
	if _, err := m.admin.Exec("CREATE DATABASE " + name); err != nil {
		return "", err
	}
	return fmt.Sprintf("mysql://%s:%s@127.0.0.1:%d/%s", mariaUser, mariaPassword, m.port, name), nil
}

func (m *mariaDB) drop(name string) error {
	_, err := m.admin.Exec("DROP DATABASE " + name)
	return err
}

func (m *mariaDB) stop() {
	if m.admin != nil {
		m.admin.Close()
	}
	if m.proc != nil {
		m.proc.stop()
	}
	os.RemoveAll(m.base)
}

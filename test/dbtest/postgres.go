package dbtest

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// The role the tests' programs use on the PostgreSQL server.
const (
	pgUser     = "chat"
	pgPassword = "chat-pw"
)

// postgres is a PostgreSQL server in a temporary directory.
type postgres struct {
	base  string
	port  int
	proc  *process
	admin *sql.DB // the superuser, over TCP
}

// pgBin returns the directory of Debian's newest PostgreSQL programs.
func pgBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	if len(dirs) == 0 {
		return "", fmt.Errorf("no /usr/lib/postgresql/*/bin")
	}
	return dirs[len(dirs)-1], nil
}

// startPostgres initialises a cluster and starts postgres on a free
// loopback port, with settings for speed over durability, and creates the
// role the programs log in with.
func startPostgres() (server, error) {
	bin, err := pgBin()
	if err != nil {
		return nil, err
	}
	acct, err := accountFor("postgres")
	if err != nil {
		return nil, err
	}
	base, data, err := acct.tempDir("cgichat-postgres-")
	if err != nil {
		return nil, err
	}
	p := &postgres{base: base}
	ok := false
	defer func() {
		if !ok {
			p.stop()
		}
	}()
	initdb := acct.command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if p.port, err = freePort(); err != nil {
		return nil, err
	}
	sockDir := filepath.Join(base, "sock")
	if err := os.Mkdir(sockDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(sockDir, int(acct.uid), int(acct.gid)); err != nil {
		return nil, err
	}
	cmd := acct.command(filepath.Join(bin, "postgres"), "-D", data, "-k", sockDir, "-h", "127.0.0.1",
		"-p", fmt.Sprint(p.port), "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=400", "-c", "shared_buffers=64MB")
	if p.proc, err = startProcess(cmd, filepath.Join(base, "postgres.log")); err != nil {
		return nil, err
	}
	p.admin, err = sql.Open("pgx", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port))
	if err != nil {
		return nil, err
	}
	if err := p.proc.waitReady("postgres", func() error { return ping(p.admin) }); err != nil {
		return nil, err
	}
	q := fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", pgUser, pgPassword)
	if _, err := p.admin.Exec(q); err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	ok = true
	return p, nil
}

func (p *postgres) create(name string) (string, error) {
	if _, err := p.admin.Exec("CREATE DATABASE " + name + " OWNER " + pgUser); err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, pgPassword, p.port, name), nil
}

func (p *postgres) drop(name string) error {
	// Programs of the test may still hold connections for a moment.
	_, err := p.admin.Exec("DROP DATABASE " + name + " WITH (FORCE)")
	return err
}

func (p *postgres) stop() {
	if p.admin != nil {
		p.admin.Close()
	}
	if p.proc != nil {
		p.proc.stop()
	}
	os.RemoveAll(p.base)
}

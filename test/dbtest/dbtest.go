// Package dbtest gives tests a fresh, empty database of each backend the
// store supports: a SQLite file in a temporary directory, or a new database
// on a throwaway MariaDB or PostgreSQL server that this package starts on
// 127.0.0.1 the first time a test asks for one. Every server a test package
// started is stopped, and its files removed, when Main returns; a server
// also dies with the test binary should that be killed.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Backend names one kind of database.
type Backend string

// The backends: SQLite embedded, MariaDB (for MySQL too) and PostgreSQL.
const (
	SQLite   Backend = "sqlite"
	MySQL    Backend = "mysql"
	Postgres Backend = "postgres"
)

// Backends lists every backend, SQLite first.
var Backends = []Backend{SQLite, MySQL, Postgres}

// Servers lists the backends that are database servers.
var Servers = []Backend{MySQL, Postgres}

// server is one running database server.
type server interface {
	// create makes a new empty database and returns its CHAT_DB URL.
	create(name string) (string, error)
	// drop removes a database made by create.
	drop(name string) error
	stop()
}

// servers holds the servers this test binary started, one per backend.
var servers struct {
	mu      sync.Mutex
	running map[Backend]server
	failed  map[Backend]error
}

// starters start each kind of server.
var starters = map[Backend]func() (server, error){
	MySQL:    startMariaDB,
	Postgres: startPostgres,
}

// Main runs the tests of a package and then stops the servers they
// started. Call it from TestMain: os.Exit(dbtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	StopAll()
	return code
}

// StopAll stops every server started so far and removes its files.
func StopAll() {
	servers.mu.Lock()
	defer servers.mu.Unlock()
	for b, s := range servers.running {
		s.stop()
		delete(servers.running, b)
	}
}

// New returns CHAT_DB for a new, empty database of backend b, removed when
// the test ends. Servers start on first use; a server that cannot start
// fails the test (test/run installs them: no test skips for want of one).
func New(tb testing.TB, b Backend) string {
	tb.Helper()
	if b == SQLite {
		return filepath.Join(tb.TempDir(), "data", "chat.db")
	}
	s, err := get(b)
	if err != nil {
		tb.Fatalf("dbtest: %s server: %v (test/run installs mariadb-server and postgresql)", b, err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "t_" + hex.EncodeToString(rnd[:])
	url, err := s.create(name)
	if err != nil {
		tb.Fatalf("dbtest: create a %s database: %v", b, err)
	}
	tb.Cleanup(func() {
		if err := s.drop(name); err != nil {
			tb.Logf("dbtest: drop %s database %s: %v", b, name, err)
		}
	})
	return url
}

// get returns the running server of b, starting it on first use.
func get(b Backend) (server, error) {
	servers.mu.Lock()
	defer servers.mu.Unlock()
	if s, ok := servers.running[b]; ok {
		return s, nil
	}
	if err := servers.failed[b]; err != nil {
		return nil, err
	}
	start, ok := starters[b]
	if !ok {
		return nil, fmt.Errorf("no server for backend %q", b)
	}
	s, err := start()
	if err != nil {
		if servers.failed == nil {
			servers.failed = make(map[Backend]error)
		}
		servers.failed[b] = err
		return nil, err
	}
	if servers.running == nil {
		servers.running = make(map[Backend]server)
	}
	servers.running[b] = s
	return s, nil
}

// account is the system user a server runs as: the named one when the
// tests run as root (the servers refuse root), the current user otherwise.
type account struct {
	uid, gid uint32
	asRoot   bool
}

func accountFor(name string) (account, error) {
	if os.Geteuid() != 0 {
		return account{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{uid: uint32(uid), gid: uint32(gid), asRoot: true}, nil
}

// command returns cmd set to run as a, and to be killed if this process
// dies before stopping it.
func (a account) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if a.asRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid}
	}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	return cmd
}

// tempDir makes a directory the server's account owns, below a new
// temporary directory every user can traverse.
func (a account) tempDir(prefix string) (base, dir string, err error) {
	base, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", "", err
	}
	dir = filepath.Join(base, "data")
	if err = os.Chmod(base, 0o755); err == nil {
		err = os.Mkdir(dir, 0o700)
	}
	if err == nil {
		err = os.Chown(dir, int(a.uid), int(a.gid))
	}
	if err != nil {
		os.RemoveAll(base)
		return "", "", err
	}
	return base, dir, nil
}

// process is a started server process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// startProcess starts cmd with its output in logPath.
func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process group with SIGTERM, and SIGKILL after 10 s.
func (p *process) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// waitReady tries ping until it succeeds, the process exits or 60 s pass.
func (p *process) waitReady(what string, ping func() error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := ping()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while starting: %v; log:\n%s", what, err, tail(p.log))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 60 s: %v; log:\n%s", what, err, tail(p.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ping opens db's first connection and checks it.
func ping(db *sql.DB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

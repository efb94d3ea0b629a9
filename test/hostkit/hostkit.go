// Package hostkit installs cgichat with deploy.sh into a temporary docroot
// and runs it behind the real web servers it supports, each on its own
// 127.0.0.1 port: Apache with mod_cgid (over HTTP/1.1, and over HTTP/2
// without TLS), with mod_fcgid (default buffer and FcgidOutputBufferSize 0)
// and with mod_proxy_fcgi in front of the daemons; nginx in front of the
// daemons and with fcgiwrap; lighttpd with mod_cgi and in front of the
// daemons; Caddy in front of the daemons. Variants are hosts set up as
// particular shared hosts are (suEXEC running the programs as a throwaway
// account, ModSecurity with the OWASP CRS, .htaccess without Options); an
// account's processes can be capped (Account.ProcessLimit) and its
// requests limited as CloudLinux does (LimitEntries).
//
// The servers run as www-data when the caller runs as root (as in CI), as
// the current user otherwise. test/hosts tests through it and bench
// measures through it; both hand it a T, which *testing.T satisfies.
package hostkit

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// T is what hostkit needs of its caller: *testing.T, or a small runner in
// a command. Fatalf must not return (testing's ends the goroutine; a
// runner may panic and recover), and is called only on the caller's
// goroutine.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// Setup is one way of hosting cgichat.
type Setup struct {
	Name  string
	Args  []string // deploy.sh's options beyond the common ones
	Batch bool     // the stream answers in batch mode here
	// CGI: one process per request, so a freed stream is an exited
	// process; otherwise a FastCGI process serves it over a connection.
	CGI bool
	// Daemon: the programs run as the two FastCGI daemons of the systemd
	// unit deploy.sh writes.
	Daemon bool
	// Restart: the settings live in server files or daemons, read at
	// start, so a new deployment needs a restart (not for .htaccess).
	Restart bool
	// Account: the programs run as a throwaway account through suEXEC,
	// deployed by that account over "SSH" (root only: see NewAccount).
	Account bool
	// H2C: the server speaks HTTP/2 without TLS (prior knowledge), and
	// clients should too.
	H2C   bool
	Start func(t T, h *Host) []*Proc
}

// Setups are every way of hosting cgichat that deploy.sh supports.
var Setups = []Setup{
	{Name: "apache-mod_cgid", Args: []string{"--mode", "cgi"}, CGI: true, Start: ApacheCGID},
	{Name: "apache-mod_fcgid", Args: []string{"--mode", "fcgid"}, Batch: true, Start: ApacheFcgid},
	{Name: "apache-mod_fcgid-unbuffered", Args: []string{"--mode", "fcgid", "--stream-mode", "live"}, Start: ApacheFcgidUnbuffered},
	{Name: "apache-mod_proxy_fcgi-daemon", Args: []string{"--mode", "daemon"}, Daemon: true, Restart: true, Start: ApacheProxyFCGI},
	{Name: "nginx-daemon", Args: []string{"--mode", "daemon"}, Daemon: true, Restart: true, Start: NginxDaemon},
	{Name: "nginx-fcgiwrap", Args: []string{"--mode", "cgi"}, Batch: true, CGI: true, Restart: true, Start: NginxFcgiwrap},
	{Name: "apache-h2c", Args: []string{"--mode", "cgi"}, CGI: true, H2C: true, Start: ApacheCGIDH2C},
	{Name: "lighttpd-cgi", Args: []string{"--mode", "cgi"}, CGI: true, Restart: true, Start: LighttpdCGI},
	{Name: "lighttpd-daemon", Args: []string{"--mode", "daemon"}, Daemon: true, Restart: true, Start: LighttpdDaemon},
	{Name: "caddy-daemon", Args: []string{"--mode", "daemon"}, Daemon: true, Restart: true, Start: CaddyDaemon},
}

// LookupSetup returns the setup called name, one of Setups or Variants.
func LookupSetup(name string) (Setup, bool) {
	for _, s := range slices.Concat(Setups, Variants) {
		if s.Name == name {
			return s, true
		}
	}
	return Setup{}, false
}

// Host is one setup's deployment: its directories, port and servers.
type Host struct {
	Setup     Setup
	Base      string // everything of this host lives here
	Docroot   string
	DB        string // CHAT_DB, passed as --db: a SQLite path or a server's URL
	ConfDir   string
	RunDir    string // sockets, owned by the server's user
	LogDir    string
	StreamBin string
	PostBin   string
	Port      int
	URL       string   // http://127.0.0.1:PORT
	User      WebUser  // the web server's
	Account   *Account // the account the programs run as, for an Account setup

	// Env holds settings (NAME=value) that every Deploy passes with --env.
	Env []string
	// ApacheConf is appended to the Apache configuration, after the
	// modules (the benchmark raises process and worker limits there).
	ApacheConf string
	// NginxWorkerConnections replaces nginx's worker_connections (256)
	// when set.
	NginxWorkerConnections int
	// NginxRlimitNofile, when set, is nginx's worker_rlimit_nofile: the
	// open-file limit of its workers.
	NginxRlimitNofile int

	procs []*Proc
	logs  []string // shown when the caller fails
}

// NewHost prepares the directories of a setup in a fresh temp directory
// that the server's user can reach; everything it starts is stopped when
// t's cleanups run.
func NewHost(t T, s Setup) *Host {
	t.Helper()
	base := t.TempDir()
	Reachable(t, base)
	h := &Host{
		Setup:   s,
		Base:    base,
		Docroot: filepath.Join(base, "docroot"),
		DB:      filepath.Join(base, "cgichat-data", "chat.db"),
		ConfDir: filepath.Join(base, "cgichat-conf"),
		RunDir:  filepath.Join(base, "run"),
		LogDir:  filepath.Join(base, "logs"),
		Port:    FreePort(t),
		User:    ServerUser(t),
	}
	if s.Account {
		useAccount(t, h)
	}
	h.StreamBin = filepath.Join(h.Docroot, "cgi-bin", "stream")
	h.PostBin = filepath.Join(h.Docroot, "cgi-bin", "post")
	h.URL = "http://" + h.Addr()
	MustMkdir(t, h.LogDir, 0o755)
	MustMkdir(t, h.RunDir, 0o755)
	MustMkdir(t, filepath.Join(h.RunDir, "fcgid"), 0o755)
	h.User.Own(t, h.RunDir, filepath.Join(h.RunDir, "fcgid"))
	t.Cleanup(func() {
		h.Stop()
		// Whatever still runs a program of this host (a FastCGI process
		// its server left behind) goes too.
		KillAll(PIDsUnder(base))
		if t.Failed() {
			shown := make(map[string]bool)
			for _, path := range h.logs {
				if !shown[path] {
					shown[path] = true
					t.Logf("%s:\n%s", path, Tail(path, 40))
				}
			}
		}
	})
	return h
}

// Deploy runs deploy.sh for this host with the common options, h.Env, the
// setup's options, then extra.
func (h *Host) Deploy(t T, extra ...string) {
	t.Helper()
	args := []string{
		"--db", h.DB,
		"--http-listen", h.Addr(),
		"--server-name", "127.0.0.1",
		"--socket-dir", h.RunDir,
		"--fcgiwrap-socket", filepath.Join(h.RunDir, "fcgiwrap.sock"),
	}
	for _, kv := range h.Env {
		args = append(args, "--env", kv)
	}
	// An account deploys over SSH, and deploy.sh takes it for the
	// programs' user, as on a shared host.
	target, env := h.Docroot, []string(nil)
	if h.Account != nil {
		target, env = h.Account.Target(h.Docroot), h.Account.DeployEnv(t)
	} else {
		args = append(args, "--web-user", h.User.Name)
	}
	args = append(append(append(args, h.Setup.Args...), extra...), target)
	out, err := RunDeploy(t, env, args...)
	if err != nil {
		t.Fatalf("deploy.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Start starts the setup's servers.
func (h *Host) Start(t T) { h.procs = h.Setup.Start(t, h) }

// Stop ends the host's servers, last started first.
func (h *Host) Stop() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		h.procs[i].Stop()
	}
	h.procs = nil
}

// Procs returns the servers running now, in the order they started.
func (h *Host) Procs() []*Proc { return h.procs }

// Addr returns the host's 127.0.0.1:PORT.
func (h *Host) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port)) }

// MainLog is the log most likely to explain a failure.
func (h *Host) MainLog() string {
	if len(h.logs) == 0 {
		return filepath.Join(h.LogDir, "none")
	}
	return h.logs[len(h.logs)-1]
}

// CGIProcess returns the stream CGI process serving room, or 0.
func (h *Host) CGIProcess(room string) int {
	for _, pid := range PIDsRunning(h.StreamBin) {
		if HasEnv(pid, "QUERY_STRING=room="+room) {
			return pid
		}
	}
	return 0
}

// Connections returns the FastCGI connections the stream processes serve
// (nil for CGI setups).
func (h *Host) Connections(t T) map[string]bool {
	t.Helper()
	if h.Setup.CGI {
		return nil
	}
	held, err := ConnectedSockets(h.StreamBin)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return held
}

// StreamEndLogged reports whether the stream daemon logged the end of a
// stream of room (it does so at CHAT_LOG_LEVEL=debug).
func (h *Host) StreamEndLogged(room string) bool {
	b, _ := os.ReadFile(filepath.Join(h.LogDir, "daemon-stream.log"))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `msg="stream ended"`) && strings.Contains(line, " room="+room+" ") {
			return true
		}
	}
	return false
}

// WebUser is the account the servers and programs run as.
type WebUser struct {
	Name, Group string
	UID, GID    int
}

// ServerUser returns www-data when the caller runs as root, else the
// current user (servers not started as root keep their user).
func ServerUser(t T) WebUser {
	t.Helper()
	var u *user.User
	var err error
	if os.Geteuid() == 0 {
		u, err = user.Lookup("www-data")
	} else {
		u, err = user.Current()
	}
	if err != nil {
		t.Fatalf("the web server's user: %v", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatalf("%v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return WebUser{Name: u.Username, Group: g.Name, UID: uid, GID: gid}
}

// RunAs makes cmd run as the user, when the caller may switch users.
func (u WebUser) RunAs(cmd *exec.Cmd) {
	if os.Geteuid() != 0 {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}
}

// Own gives paths to the user.
func (u WebUser) Own(t T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Chown(p, u.UID, u.GID); err != nil {
			t.Fatalf("%v", err)
		}
	}
}

// Reachable lets every user traverse dir and its parents up to the temp
// directory (t.TempDir makes them 0700).
func Reachable(t T, dir string) {
	t.Helper()
	top := filepath.Clean(os.TempDir())
	for d := dir; strings.HasPrefix(d, top+"/"); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
			t.Fatalf("%v", err)
		}
	}
}

// RequireTools fails when a program the caller runs is missing: test/run
// installs them, and CI skips nothing.
func RequireTools(t T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing (%v): run test/run, which installs what the tests need", p, err)
		}
	}
}

// NewRoom returns a fresh room name with the given prefix.
func NewRoom(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// MustMkdir creates dir with exactly mode.
func MustMkdir(t T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatalf("%v", err)
	}
}

// MustWrite writes a file with exactly mode.
func MustWrite(t T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatalf("%v", err)
	}
}

// Package hosts installs cgichat with deploy.sh and runs it behind the real
// web servers it supports, each on its own 127.0.0.1 port, as a browser
// would use it: Apache with mod_cgid, with mod_fcgid (default buffer and
// FcgidOutputBufferSize 0) and with mod_proxy_fcgi in front of the
// daemons; nginx in front of the daemons and with fcgiwrap. It also tests
// deploy.sh itself.
//
// The servers run as www-data when the test runs as root (as in CI), as the
// current user otherwise.
package hosts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cgichat/internal/dbtest"
)

// Event latency limits from a post's 201 to the event at a stream opened
// before it, and how long a departed client may hold its stream.
const (
	liveLatency  = time.Second
	batchLatency = 2 * time.Second
	freedWithin  = 30 * time.Second
)

// setup is one way of hosting cgichat.
type setup struct {
	name  string
	args  []string // deploy.sh's options beyond the common ones
	batch bool     // the stream answers in batch mode here
	// cgi: one process per request, so a freed stream is an exited
	// process; otherwise a FastCGI process serves it over a connection.
	cgi bool
	// daemon: the daemon logs each stream's end (CHAT_LOG_LEVEL=debug in
	// its unit), which shows its goroutine is gone too.
	daemon bool
	// restart: the settings live in server files or daemons, read at
	// start, so a new deployment needs a restart (not for .htaccess).
	restart bool
	// backend is the database: SQLite beside the docroot, or a new
	// database on a MariaDB or PostgreSQL server.
	backend dbtest.Backend
	start   func(t *testing.T, h *host) []*proc
}

var setups = []setup{
	{name: "apache-mod_cgid", args: []string{"--mode", "cgi"}, cgi: true, start: apacheCGID},
	{name: "apache-mod_fcgid", args: []string{"--mode", "fcgid"}, batch: true, start: apacheFcgid},
	{name: "apache-mod_fcgid-unbuffered", args: []string{"--mode", "fcgid", "--stream-mode", "live"}, start: apacheFcgidUnbuffered},
	{name: "apache-mod_proxy_fcgi-daemon", args: []string{"--mode", "daemon"}, daemon: true, restart: true, start: apacheProxyFCGI},
	{name: "nginx-daemon", args: []string{"--mode", "daemon"}, daemon: true, restart: true, start: nginxDaemon},
	{name: "nginx-fcgiwrap", args: []string{"--mode", "cgi"}, batch: true, cgi: true, restart: true, start: nginxFcgiwrap},
	// The same programs on a database server: CGI polling MariaDB, and a
	// daemon listening to PostgreSQL.
	{name: "apache-mod_cgid-mysql", args: []string{"--mode", "cgi"}, cgi: true, backend: dbtest.MySQL, start: apacheCGID},
	{name: "nginx-daemon-postgres", args: []string{"--mode", "daemon"}, daemon: true, restart: true, backend: dbtest.Postgres, start: nginxDaemon},
}

// setupNamed returns the setup called name.
func setupNamed(t *testing.T, name string) setup {
	t.Helper()
	for _, s := range setups {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("no setup %q", name)
	return setup{}
}

// TestHosts deploys and checks every setup, all at once: they mostly wait
// (for streams to end, for servers to notice a departed client), so they
// run side by side rather than -parallel (GOMAXPROCS) at a time.
func TestHosts(t *testing.T) {
	requireTools(t, apacheBin, nginxBin, fcgiwrapBin)
	warmBuild(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range setups {
		wg.Go(func() { t.Run(s.name, func(t *testing.T) { testSetup(t, s) }) })
	}
}

// testSetup deploys s and checks the page, what is refused, event latency
// and a departed client; then deploys again with a 2 s stream life and
// checks resuming across cut streams.
func testSetup(t *testing.T, s setup) {
	h := newHost(t, s, "")
	h.deploy(t)
	h.start(t)
	c := newClient(h.url)
	t.Run("page", func(t *testing.T) { testPage(t, h, c) })
	t.Run("refused", func(t *testing.T) { testRefused(t, h, c) })
	t.Run("latency", func(t *testing.T) { testLatency(t, h, c) })
	t.Run("disconnect", func(t *testing.T) { testDisconnect(t, h, c) })
	h.deploy(t, "--env", "CHAT_STREAM_SECONDS=2")
	if s.restart {
		h.stop()
		h.start(t)
	}
	t.Run("resume", func(t *testing.T) { testResume(t, h, c) })
}

// testPage loads the page and every file deploy.sh installed beside it.
func testPage(t *testing.T, h *host, c *client) {
	resp, body := c.get(t, "/")
	if g, e := resp.StatusCode, 200; g != e {
		t.Fatalf("GET /: got status %d, want %d", g, e)
	}
	if g := resp.Header.Get("Content-Type"); !strings.HasPrefix(g, "text/html") {
		t.Errorf("GET /: got Content-Type %q, want text/html", g)
	}
	if !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("GET /: got %.200q, want the page", body)
	}
	files := 0
	err := filepath.WalkDir(h.docroot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(h.docroot, path)
		if d.IsDir() && (rel == "cgi-bin" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		files++
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		resp, got := c.get(t, "/"+filepath.ToSlash(rel))
		if resp.StatusCode != 200 || got != string(want) {
			t.Errorf("GET /%s: got status %d and %d bytes, want 200 and the file's %d bytes", rel, resp.StatusCode, len(got), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Errorf("the docroot holds %d page files, want index.html and what it loads", files)
	}
}

// secret marks files that must never be served.
const secret = "cgichat-secret-3f9a"

// testRefused plants what a careless owner might leave in a docroot and
// checks that neither it, nor the configuration, nor the database is
// served. Every planted file is readable by the server's user, so a refusal
// comes from the configuration, not from file permissions.
func testRefused(t *testing.T, h *host, c *client) {
	for path, content := range map[string]string{
		".env":               "PASSWORD=" + secret,
		".git/config":        "[core] " + secret,
		"chat.db":            "SQLite format 3\x00" + secret,
		"cgi-bin/chat.db":    "SQLite format 3\x00" + secret,
		"notes.txt":          secret,
		"backup/messages.db": "SQLite format 3\x00" + secret,
	} {
		full := filepath.Join(h.docroot, path)
		mustMkdir(t, filepath.Dir(full), 0o755)
		mustWrite(t, full, content, 0o644)
	}
	// The real database (or, for a database server, the wake-up sockets)
	// lives outside the docroot; were it inside, its URL would be this one.
	local := h.db
	if h.setup.backend != dbtest.SQLite {
		local = filepath.Join(h.base, "cgichat-data", "wake", "1-x")
	}
	dbRel, err := filepath.Rel(filepath.Dir(h.docroot), local)
	if err != nil || strings.HasPrefix(dbRel, "..") {
		t.Fatalf("database %s is not beside the docroot %s", local, h.docroot)
	}
	if strings.HasPrefix(local, h.docroot+"/") {
		t.Errorf("database %s is inside the docroot %s", local, h.docroot)
	}
	paths := []string{
		"/.htaccess", "/cgi-bin/.htaccess", "/.env", "/.git/config", "/.git/",
		"/chat.db", "/cgi-bin/chat.db", "/notes.txt", "/backup/messages.db",
		"/cgi-bin/", "/" + filepath.ToSlash(dbRel), "/" + filepath.ToSlash(dbRel) + "-wal",
		"/" + filepath.ToSlash(filepath.Dir(dbRel)) + "/.htaccess",
	}
	for _, path := range paths {
		resp, body := c.get(t, path)
		if resp.StatusCode != 403 && resp.StatusCode != 404 {
			t.Errorf("GET %s: got status %d, want 403 or 404", path, resp.StatusCode)
		}
		for _, leak := range []string{secret, "Require", "SQLite format"} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s: the body contains %q", path, leak)
			}
		}
	}
}

// testLatency opens a stream, then posts, and measures from each 201 to
// the event at the stream: live setups get three posts on one stream,
// batch setups one (the response ends with it).
func testLatency(t *testing.T, h *host, c *client) {
	room := newRoom("latency")
	before := h.connections(t)
	s := c.openStream(room, "")
	defer s.close()
	limit, posts := liveLatency, 3
	if h.setup.batch {
		limit, posts = batchLatency, 1
		// A buffering host sends nothing before the end: see that the
		// stream is being served before posting.
		h.serving(t, room, before)
	} else {
		ev, ok := s.next("ready", 10*time.Second)
		if !ok {
			t.Fatalf("no ready event within 10 s: %v", s.result(time.Second))
		}
		if g, e := ev.Data, `{"mode":"live"}`; g != e {
			t.Errorf("ready: got %s, want %s", g, e)
		}
	}
	for i := range posts {
		m, at := c.post(t, room, "ada", fmt.Sprintf("hello %d", i))
		ev, ok := s.next("message", 10*time.Second)
		if !ok {
			t.Fatalf("post %d (id %d): no event within 10 s; the stream ended with %v", i, m.ID, s.result(time.Second))
		}
		got := decode(t, ev)
		if got != m {
			t.Errorf("post %d: got event %+v, want %+v", i, got, m)
		}
		// The event may be parsed before the 201 is: a negative latency.
		latency := ev.at.Sub(at)
		t.Logf("%s: event %d arrived %v after the 201", h.setup.name, m.ID, latency.Round(100*time.Microsecond))
		if latency > limit {
			t.Errorf("post %d: the event arrived %v after the 201, want at most %v", i, latency, limit)
		}
	}
	hdr := s.headers(t, time.Second)
	if g, e := hdr.Get("Content-Type"), "text/event-stream; charset=utf-8"; g != e {
		t.Errorf("stream: got Content-Type %q, want %q", g, e)
	}
	if g := hdr.Get("Content-Encoding"); g != "" {
		t.Errorf("stream: got Content-Encoding %q, want none (compression holds events back)", g)
	}
}

// testDisconnect opens a stream, finds what serves it, drops the
// connection and measures until that is freed: the CGI process exits, or
// the FastCGI connection closes (and a daemon logs the stream's end).
func testDisconnect(t *testing.T, h *host, c *client) {
	room := newRoom("gone")
	before := h.connections(t)
	s := c.openStream(room, "")
	defer s.close()
	if !h.setup.batch {
		if _, ok := s.next("ready", 10*time.Second); !ok {
			t.Fatalf("no ready event within 10 s: %v", s.result(time.Second))
		}
	}
	what, freed := h.serving(t, room, before)
	if h.setup.batch {
		// The client waits in vain for a while, as a tab left open does.
		time.Sleep(time.Second)
	}
	left := time.Now()
	s.close()
	deadline := left.Add(freedWithin + 5*time.Second)
	for !freed() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(left)
	if !freed() {
		t.Fatalf("the stream's %s was still busy %v after its client left, want at most %v", what, took.Round(time.Second), freedWithin)
	}
	t.Logf("%s: the stream's %s was freed %v after its client left", h.setup.name, what, took.Round(100*time.Millisecond))
	if took > freedWithin {
		t.Errorf("freed after %v, want at most %v", took, freedWithin)
	}
}

// serving waits until a stream of room is being served, and returns what
// serves it and a test of whether that is free again: the room's CGI
// process, or the FastCGI connection that was not among before.
func (h *host) serving(t *testing.T, room string, before map[string]bool) (what string, freed func() bool) {
	t.Helper()
	if h.setup.cgi {
		var pid int
		waitFor(t, nil, h.mainLog(), "the stream's CGI process", 10*time.Second, func() bool {
			pid = h.cgiProcess(room)
			return pid != 0
		})
		return fmt.Sprintf("CGI process %d", pid), func() bool {
			return !slices.Contains(pidsRunning(h.streamBin), pid)
		}
	}
	var mine []string
	waitFor(t, nil, h.mainLog(), "the stream's FastCGI connection", 10*time.Second, func() bool {
		for inode := range h.connections(t) {
			if !before[inode] {
				mine = append(mine, inode)
			}
		}
		return len(mine) > 0
	})
	return fmt.Sprintf("FastCGI connection (socket %v)", mine), func() bool {
		now := h.connections(t)
		for _, inode := range mine {
			if now[inode] {
				return false
			}
		}
		return !h.setup.daemon || h.streamEndLogged(room)
	}
}

// testResume posts messages in bursts for about 4 s while a client reads
// the room the way EventSource does: when a stream ends (after
// CHAT_STREAM_SECONDS=2, or after each message in batch mode) it waits
// retry: and reconnects with Last-Event-ID. Every message must arrive
// exactly once, in order, some of them posted while the client was away.
func testResume(t *testing.T, h *host, c *client) {
	resumeAcross(t, h.setup.name, []*client{c}, []*client{c})
}

// resumeAcross is testResume with the posts sent in turn through posters
// and the connections made in turn through readers: front ends of one
// database, between which a reader must lose nothing either.
func resumeAcross(t *testing.T, name string, posters, readers []*client) {
	room := newRoom("resume")
	const posts = 15
	var (
		mu      sync.Mutex
		want    []int64 // ids posted so far
		postErr error
	)
	posting := make(chan struct{})
	go func() {
		defer close(posting)
		for i := range posts {
			// Each poster its own nick: nicks belong to whoever used them first.
			p := i % len(posters)
			m, _, err := posters[p].tryPost(room, fmt.Sprint("bob", p), fmt.Sprintf("message %d", i))
			mu.Lock()
			want, postErr = append(want, m.ID), err
			mu.Unlock()
			if err != nil {
				return
			}
			// Bursts of three: in batch mode the first ends the response
			// and the others come while the client reconnects.
			if i%3 == 2 {
				time.Sleep(800 * time.Millisecond)
			}
		}
	}()
	// caughtUp reports whether posting is over and the last post arrived.
	caughtUp := func(got []int64) bool {
		select {
		case <-posting:
		default:
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && len(want) > 0 && got[len(got)-1] >= want[len(want)-1]
	}

	var got []int64
	lastID, retry, conns, caughtUpOnResume := "", 0, 0, 0
	deadline := time.Now().Add(40 * time.Second)
	for conns < 100 && time.Now().Before(deadline) && !caughtUp(got) {
		s := readers[conns%len(readers)].openStream(room, lastID)
		conns++
		backlog, _, err := readAll(s, 15*time.Second, func(ev timedEvent) {
			got = append(got, decode(t, ev).ID)
			lastID, retry = ev.ID, ev.Retry
		})
		if conns > 1 {
			caughtUpOnResume += backlog
		}
		if err != io.EOF {
			t.Errorf("connection %d ended with %v, want a clean end after a whole event", conns, err)
		}
		time.Sleep(time.Duration(retry) * time.Millisecond)
	}
	<-posting
	if postErr != nil {
		t.Fatalf("posting: %v", postErr)
	}
	t.Logf("%s: %d messages over %d connections; %d of them posted between two connections and sent on resuming", name, len(got), conns, caughtUpOnResume)
	if !slices.Equal(got, want) {
		t.Errorf("got ids %v, want %v (each posted one once, in order)", got, want)
	}
	if len(want) != posts {
		t.Errorf("posted %d messages, want %d", len(want), posts)
	}
	if caughtUpOnResume == 0 {
		t.Errorf("no message was posted while the client was between two connections (%d connections): nothing tested resuming", conns)
	}
}

// readAll reads a stream's message events until it ends or timeout
// passes, and returns how many came before its ready event (the backlog)
// and after it, and why it ended.
func readAll(s *stream, timeout time.Duration, each func(timedEvent)) (backlog, live int, err error) {
	defer s.close()
	ready := false
	deadline := time.After(timeout)
	for {
		select {
		case ev, open := <-s.events:
			switch {
			case !open:
				return backlog, live, s.result(time.Second)
			case ev.Comment != "":
			case ev.Type == "ready":
				ready = true
			case ev.Type == "message" && ready:
				live++
				each(ev)
			case ev.Type == "message":
				backlog++
				each(ev)
			}
		case <-deadline:
			return backlog, live, fmt.Errorf("still open after %v", timeout)
		}
	}
}

// host is one setup's deployment: its directories, port and servers.
type host struct {
	setup     setup
	base      string // everything of this host lives here
	docroot   string
	db        string // CHAT_DB: a SQLite path or a server's URL
	confDir   string
	runDir    string // sockets, owned by the server's user
	logDir    string
	streamBin string
	port      int
	url       string
	user      webUser
	procs     []*proc
	logs      []string // shown when the test fails
}

// newHost prepares the directories of a setup in a fresh temp directory
// that the server's user can reach. db is CHAT_DB; empty means a new
// database of the setup's backend.
func newHost(t *testing.T, s setup, db string) *host {
	t.Helper()
	base := t.TempDir()
	reachable(t, base)
	switch {
	case db != "":
	case s.backend == "" || s.backend == dbtest.SQLite:
		db = filepath.Join(base, "cgichat-data", "chat.db")
	default:
		db = dbtest.New(t, s.backend)
	}
	h := &host{
		setup:   s,
		base:    base,
		docroot: filepath.Join(base, "docroot"),
		db:      db,
		confDir: filepath.Join(base, "cgichat-conf"),
		runDir:  filepath.Join(base, "run"),
		logDir:  filepath.Join(base, "logs"),
		port:    freePort(t),
		user:    serverUser(t),
	}
	h.streamBin = filepath.Join(h.docroot, "cgi-bin", "stream")
	h.url = "http://" + h.addr()
	mustMkdir(t, h.logDir, 0o755)
	mustMkdir(t, h.runDir, 0o755)
	mustMkdir(t, filepath.Join(h.runDir, "fcgid"), 0o755)
	h.user.own(t, h.runDir, filepath.Join(h.runDir, "fcgid"))
	t.Cleanup(func() {
		h.stop()
		// Whatever still runs a program of this host (a FastCGI process
		// its server left behind) goes too.
		killAll(pidsUnder(base))
		if t.Failed() {
			shown := make(map[string]bool)
			for _, path := range h.logs {
				if !shown[path] {
					shown[path] = true
					t.Logf("%s:\n%s", path, tail(path, 40))
				}
			}
		}
	})
	return h
}

// deploy runs deploy.sh for this host with the common options, then extra.
func (h *host) deploy(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{
		"--web-user", h.user.name,
		"--http-listen", h.addr(),
		"--server-name", "127.0.0.1",
		"--socket-dir", h.runDir,
		"--fcgiwrap-socket", filepath.Join(h.runDir, "fcgiwrap.sock"),
		"--db", h.db,
		"--env", "CHAT_LOG_LEVEL=debug",
		// Posts come in bursts from one address: a rate limit well above
		// that keeps its machinery in the path without refusing.
		"--env", "CHAT_RATE_LIMIT=100/10s",
	}, h.setup.args...)
	args = append(append(args, extra...), h.docroot)
	out, err := runDeploy(t, nil, args...)
	if err != nil {
		t.Fatalf("deploy.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (h *host) start(t *testing.T) { h.procs = h.setup.start(t, h) }

// stop ends the host's servers, last started first.
func (h *host) stop() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		h.procs[i].stop()
	}
	h.procs = nil
}

func (h *host) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)) }

// mainLog is the log most likely to explain a failure.
func (h *host) mainLog() string {
	if len(h.logs) == 0 {
		return filepath.Join(h.logDir, "none")
	}
	return h.logs[len(h.logs)-1]
}

// cgiProcess returns the stream CGI process serving room, or 0.
func (h *host) cgiProcess(room string) int {
	for _, pid := range pidsRunning(h.streamBin) {
		if hasEnv(pid, "QUERY_STRING=room="+room) {
			return pid
		}
	}
	return 0
}

// connections returns the FastCGI connections the stream processes serve.
func (h *host) connections(t *testing.T) map[string]bool {
	t.Helper()
	if h.setup.cgi {
		return nil
	}
	held, err := connectedSockets(h.streamBin)
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// streamEndLogged reports whether the stream daemon logged the end of a
// stream of room.
func (h *host) streamEndLogged(room string) bool {
	b, _ := os.ReadFile(filepath.Join(h.logDir, "daemon-stream.log"))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `msg="stream ended"`) && strings.Contains(line, " room="+room+" ") {
			return true
		}
	}
	return false
}

// webUser is the account the servers and programs run as.
type webUser struct {
	name, group string
	uid, gid    int
}

// serverUser returns www-data when the test runs as root, else the
// current user (servers not started as root keep their user).
func serverUser(t *testing.T) webUser {
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
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return webUser{name: u.Username, group: g.Name, uid: uid, gid: gid}
}

// runAs makes cmd run as the user, when the test may switch users.
func (u webUser) runAs(cmd *exec.Cmd) {
	if os.Geteuid() != 0 {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}
}

// own gives paths to the user.
func (u webUser) own(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Chown(p, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// reachable lets every user traverse dir and its parents up to the temp
// directory (t.TempDir makes them 0700).
func reachable(t *testing.T, dir string) {
	t.Helper()
	top := filepath.Clean(os.TempDir())
	for d := dir; strings.HasPrefix(d, top+"/"); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
			t.Fatal(err)
		}
	}
}

// deployTimeout bounds one run of deploy.sh; the first build of go-sqlite3
// with the static tags takes about a minute.
const deployTimeout = 5 * time.Minute

// runDeploy runs the source copy's deploy.sh with args and extra
// environment (NAME=value), returning its combined output.
func runDeploy(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(sourceDir(t), "deploy.sh"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

var warm sync.Once

// warmBuild runs one dry deployment before any test deploys, so that the
// first (slow) static build of go-sqlite3 happens once, not in every
// parallel test at the same time.
func warmBuild(t *testing.T) {
	t.Helper()
	warm.Do(func() {
		dir, err := os.MkdirTemp("", "cgichat-warm-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if out, err := runDeploy(t, nil, "--dry-run", "--web-user", serverUser(t).name, filepath.Join(dir, "docroot")); err != nil {
			t.Fatalf("deploy.sh --dry-run: %v\n%s", err, out)
		}
	})
}

// requireTools fails the test when a program it runs is missing: test/run
// installs them, and CI skips nothing.
func requireTools(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing (%v): run test/run, which installs what the tests need", p, err)
		}
	}
}

// newRoom returns a fresh room name with the given prefix.
func newRoom(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func mustMkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Package hosts installs cgichat with deploy.sh and runs it behind the real
// web servers it supports, each on its own 127.0.0.1 port, as a browser
// would use it: every setup of test/hostkit (Apache with mod_cgid over
// HTTP/1.1 and over HTTP/2 without TLS, with mod_fcgid and with
// mod_proxy_fcgi; nginx, lighttpd and Caddy in front of the daemons; nginx
// with fcgiwrap; lighttpd with mod_cgi). It also tests deploy.sh itself.
// Deploying and starting the servers is test/hostkit's work, shared with
// the benchmark (bench/).
//
// The servers run as www-data when the test runs as root (as in CI), as the
// current user otherwise.
package hosts

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/test/dbtest"
	"cgichat/test/hostkit"
)

// Event latency limits from a post's 201 to the event at a stream opened
// before it, and how long a departed client may hold its stream.
const (
	liveLatency  = time.Second
	batchLatency = 2 * time.Second
	freedWithin  = 30 * time.Second
)

// testEnv is what every deployment here sets beyond deploy.sh's defaults.
var testEnv = []string{
	// The daemons log each stream's end, which testDisconnect looks for.
	"CHAT_LOG_LEVEL=debug",
	// Posts come in bursts from one address: a rate limit well above
	// that keeps its machinery in the path without refusing.
	"CHAT_RATE_LIMIT=100/10s",
	// testSettings sees it arrive: 16 messages of history, not the
	// default 50; more than a resuming reader's first connection needs.
	"CHAT_HISTORY=16",
}

// hostParallel is how many host tests run at once unless -test.parallel
// says otherwise. They mostly wait — for servers to start, streams to end,
// heartbeats, programs under an emulator — and at -parallel's default
// (GOMAXPROCS, 2 on a 2-core machine) the last quarter of a full run left
// the machine idle while they queued two at a time.
const hostParallel = 4

func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		flag.Set("test.parallel", strconv.Itoa(hostParallel))
	}
	code := dbtest.Main(m)
	hostkit.RemoveSource()
	os.Exit(code)
}

// TestHosts deploys and checks every setup, all at once: they mostly wait
// (for streams to end, for servers to notice a departed client), so they
// run side by side rather than -parallel (GOMAXPROCS) at a time.
func TestHosts(t *testing.T) {
	hostkit.RequireTools(t, hostkit.ApacheBin, hostkit.NginxBin, hostkit.FcgiwrapBin, hostkit.LighttpdBin, hostkit.CaddyBin)
	hostkit.WarmBuild(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range hostkit.Setups {
		wg.Go(func() { t.Run(s.Name, func(t *testing.T) { testSetup(t, s, dbtest.SQLite) }) })
	}
	// The same programs on a database server: CGI polling MariaDB, and
	// daemons listening to PostgreSQL.
	for _, on := range []struct {
		setup   string
		backend dbtest.Backend
	}{{"apache-mod_cgid", dbtest.MySQL}, {"nginx-daemon", dbtest.Postgres}} {
		s := lookupSetup(t, on.setup)
		wg.Go(func() {
			t.Run(s.Name+"-"+string(on.backend), func(t *testing.T) { testSetup(t, s, on.backend) })
		})
	}
}

// lookupSetup returns hostkit's setup called name.
func lookupSetup(t *testing.T, name string) hostkit.Setup {
	t.Helper()
	s, ok := hostkit.LookupSetup(name)
	if !ok {
		t.Fatalf("no setup %q", name)
	}
	return s
}

// newHost prepares a host of setup s on a new database of backend b (for
// SQLite, the file deploy.sh places beside the docroot).
func newHost(t *testing.T, s hostkit.Setup, b dbtest.Backend) *hostkit.Host {
	h := hostkit.NewHost(t, s)
	if b != dbtest.SQLite {
		h.DB = dbtest.New(t, b)
	}
	h.Env = testEnv
	return h
}

// testSetup deploys s on backend b and checks the page, what is refused,
// event latency and a departed client; then deploys again with a 2 s
// stream life and checks resuming across cut streams.
func testSetup(t *testing.T, s hostkit.Setup, b dbtest.Backend) {
	h := newHost(t, s, b)
	h.Deploy(t)
	h.Start(t)
	c := clientFor(h)
	t.Run("page", func(t *testing.T) { testPage(t, h, c) })
	t.Run("refused", func(t *testing.T) { testRefused(t, h, c) })
	t.Run("settings", func(t *testing.T) { testSettings(t, h, c) })
	t.Run("requests", func(t *testing.T) { testRequests(t, h, c) })
	t.Run("latency", func(t *testing.T) { testLatency(t, h, c) })
	t.Run("disconnect", func(t *testing.T) { testDisconnect(t, h, c) })
	h.Deploy(t, "--env", "CHAT_STREAM_SECONDS=2")
	if s.Restart {
		h.Stop()
		h.Start(t)
	}
	t.Run("resume", func(t *testing.T) { testResume(t, h, c) })
}

// testPage loads the page and every file deploy.sh installed beside it.
func testPage(t *testing.T, h *hostkit.Host, c *client) {
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
	err := filepath.WalkDir(h.Docroot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(h.Docroot, path)
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
func testRefused(t *testing.T, h *hostkit.Host, c *client) {
	for path, content := range map[string]string{
		".env":               "PASSWORD=" + secret,
		".git/config":        "[core] " + secret,
		"chat.db":            "SQLite format 3\x00" + secret,
		"cgi-bin/chat.db":    "SQLite format 3\x00" + secret,
		"notes.txt":          secret,
		"backup/messages.db": "SQLite format 3\x00" + secret,
	} {
		full := filepath.Join(h.Docroot, path)
		hostkit.MustMkdir(t, filepath.Dir(full), 0o755)
		hostkit.MustWrite(t, full, content, 0o644)
	}
	// The real database lives outside the docroot; were it inside, its
	// URL would be this one.
	// The real database (or, for a database server, the wake-up sockets)
	// lives outside the docroot; were it inside, its URL would be this one.
	local := h.DB
	if strings.Contains(h.DB, "://") {
		local = filepath.Join(h.Base, "cgichat-data", "wake", "1-x")
	}
	dbRel, err := filepath.Rel(filepath.Dir(h.Docroot), local)
	if err != nil || strings.HasPrefix(dbRel, "..") {
		t.Fatalf("database %s is not beside the docroot %s", local, h.Docroot)
	}
	if strings.HasPrefix(local, h.Docroot+"/") {
		t.Errorf("database %s is inside the docroot %s", local, h.Docroot)
	}
	paths := []string{
		"/.htaccess", "/cgi-bin/.htaccess", "/.env", "/.git/config", "/.git/",
		"/chat.db", "/cgi-bin/chat.db", "/notes.txt", "/backup/messages.db",
		"/cgi-bin/", "/cgi-bin/cgichat.conf", "/" + filepath.ToSlash(dbRel), "/" + filepath.ToSlash(dbRel) + "-wal",
		"/" + filepath.ToSlash(filepath.Dir(dbRel)) + "/.htaccess",
	}
	for _, path := range paths {
		resp, body := c.get(t, path)
		if resp.StatusCode != 403 && resp.StatusCode != 404 {
			t.Errorf("GET %s: got status %d, want 403 or 404", path, resp.StatusCode)
		}
		for _, leak := range []string{secret, "Require", "SQLite format", "CHAT_DB="} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s: the body contains %q", path, leak)
			}
		}
	}
}

// firstWait returns the Last-Event-ID of a request that waits for the
// first message of a new room: in batch mode the first answer in an empty
// room ends at once with a Last-Event-ID of 0, and the browser's next
// request, with it, is the one that waits.
func firstWait(h *hostkit.Host) string {
	if h.Setup.Batch {
		return "0"
	}
	return ""
}

// testLatency opens a stream, then posts, and measures from each 201 to
// the event at the stream: live setups get three posts on one stream,
// batch setups one (the response ends with it).
func testLatency(t *testing.T, h *hostkit.Host, c *client) {
	room := hostkit.NewRoom("latency")
	before := h.Connections(t)
	s := c.openStream(room, firstWait(h))
	defer s.close()
	limit, posts := liveLatency, 3
	if h.Setup.Batch {
		limit, posts = batchLatency, 1
		// A buffering host sends nothing before the end: see that the
		// stream is being served before posting.
		serving(t, h, room, before)
	} else {
		ev, ok := s.next("ready", 10*time.Second)
		if !ok {
			t.Fatalf("no ready event within 10 s: %v", s.result(time.Second))
		}
		if g, e := ev.Data, `{"mode":"live","retry":1000}`; g != e {
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
		t.Logf("%s: event %d arrived %v after the 201", h.Setup.Name, m.ID, latency.Round(100*time.Microsecond))
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
func testDisconnect(t *testing.T, h *hostkit.Host, c *client) {
	room := hostkit.NewRoom("gone")
	before := h.Connections(t)
	s := c.openStream(room, firstWait(h))
	defer s.close()
	if !h.Setup.Batch {
		if _, ok := s.next("ready", 10*time.Second); !ok {
			t.Fatalf("no ready event within 10 s: %v", s.result(time.Second))
		}
	}
	what, freed := serving(t, h, room, before)
	if h.Setup.Batch {
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
	t.Logf("%s: the stream's %s was freed %v after its client left", h.Setup.Name, what, took.Round(100*time.Millisecond))
	if took > freedWithin {
		t.Errorf("freed after %v, want at most %v", took, freedWithin)
	}
}

// serving waits until a stream of room is being served, and returns what
// serves it and a test of whether that is free again: the room's CGI
// process, or the FastCGI connection that was not among before.
func serving(t *testing.T, h *hostkit.Host, room string, before map[string]bool) (what string, freed func() bool) {
	t.Helper()
	if h.Setup.CGI {
		var pid int
		hostkit.WaitFor(t, nil, h.MainLog(), "the stream's CGI process", 10*time.Second, func() bool {
			pid = h.CGIProcess(room)
			return pid != 0
		})
		return fmt.Sprintf("CGI process %d", pid), func() bool {
			return !slices.Contains(hostkit.PIDsRunning(h.StreamBin), pid)
		}
	}
	var mine []string
	hostkit.WaitFor(t, nil, h.MainLog(), "the stream's FastCGI connection", 10*time.Second, func() bool {
		for inode := range h.Connections(t) {
			if !before[inode] {
				mine = append(mine, inode)
			}
		}
		return len(mine) > 0
	})
	return fmt.Sprintf("FastCGI connection (socket %v)", mine), func() bool {
		now := h.Connections(t)
		for _, inode := range mine {
			if now[inode] {
				return false
			}
		}
		return !h.Setup.Daemon || h.StreamEndLogged(room)
	}
}

// testResume posts messages in bursts for about 4 s while a client reads
// the room the way EventSource does: when a stream ends (after
// CHAT_STREAM_SECONDS=2, or after each message in batch mode) it waits
// retry: and reconnects with Last-Event-ID. Every message must arrive
// exactly once, in order, some of them posted while the client was away.
func testResume(t *testing.T, h *hostkit.Host, c *client) {
	resumeAcross(t, h.Setup.Name, []*client{c}, []*client{c})
}

// resumeAcross is testResume with the posts sent in turn through posters
// and the connections made in turn through readers: front ends of one
// database, between which a reader must lose nothing either.
func resumeAcross(t *testing.T, name string, posters, readers []*client) {
	room := hostkit.NewRoom("resume")
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

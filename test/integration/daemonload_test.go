package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cgichat/internal/fastcgi/record"
	"cgichat/test/fcgiclient"
	"cgichat/test/hostkit"
)

// daemon is one program started in a FastCGI mode (as a daemon, or with a
// listening socket as stdin), reached over raw FastCGI connections.
type daemon struct {
	cmd     *exec.Cmd
	network string // of its socket: unix or tcp
	addr    string
	db      string
	posts   int
}

// startRawDaemon starts prog as a daemon on a unix socket with env; with
// nofile > 0 it runs under that open-file limit (soft and hard, through
// prlimit), as `ulimit -n` would start it. Its log also goes to log, when
// not nil.
func startRawDaemon(tb testing.TB, prog string, env map[string]string, nofile int, log io.Writer) *daemon {
	tb.Helper()
	db, kv := settings(tb, env)
	sock := filepath.Join(tb.TempDir(), prog+".sock")
	args := []string{filepath.Join(bin, prog), "-listen", "unix:" + sock}
	if nofile > 0 {
		limit := strconv.Itoa(nofile)
		args = append([]string{"prlimit", "--nofile=" + limit + ":" + limit, "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = kv
	startLogged(tb, cmd, log)
	waitForSocket(tb, sock)
	return &daemon{cmd: cmd, network: "unix", addr: sock, db: db}
}

// startRawStdin starts prog as mod_fcgid and spawn-fcgi do, with a
// listening socket of network (unix, or tcp on 127.0.0.1) as its stdin.
func startRawStdin(tb testing.TB, prog, network string, env map[string]string, log io.Writer) *daemon {
	tb.Helper()
	db, kv := settings(tb, env)
	var l net.Listener
	var err error
	if network == "unix" {
		l, err = net.Listen("unix", filepath.Join(tb.TempDir(), prog+".sock"))
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		tb.Fatal(err)
	}
	var f *os.File
	switch l := l.(type) {
	case *net.UnixListener:
		// The child holds its own copy; the socket file must stay.
		l.SetUnlinkOnClose(false)
		f, err = l.File()
	case *net.TCPListener:
		f, err = l.File()
	}
	addr := l.Addr().String()
	l.Close()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, prog))
	cmd.Stdin, cmd.Env = f, kv
	startLogged(tb, cmd, log)
	f.Close()
	return &daemon{cmd: cmd, network: network, addr: addr, db: db}
}

// startLogged starts cmd with its log on stderr and in log.
func startLogged(tb testing.TB, cmd *exec.Cmd, log io.Writer) {
	tb.Helper()
	cmd.Stderr = os.Stderr
	if log != nil {
		cmd.Stderr = io.MultiWriter(os.Stderr, log)
	}
	startProcess(tb, cmd)
}

// dial connects to d.
func (d *daemon) dial(tb testing.TB) *fcgiclient.Conn {
	tb.Helper()
	c, err := fcgiclient.Dial(d.network, d.addr)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return c
}

// streamParams are the FastCGI parameters of GET cgi-bin/stream?query, as
// nginx sends them.
func streamParams(query string) map[string]string {
	return map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"REQUEST_METHOD":    "GET",
		"SCRIPT_NAME":       "/cgi-bin/stream",
		"REQUEST_URI":       "/cgi-bin/stream?" + query,
		"QUERY_STRING":      query,
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_NAME":       "127.0.0.1",
		"SERVER_PORT":       "80",
		"HTTP_HOST":         "127.0.0.1",
		"HTTP_ACCEPT":       "text/event-stream",
		"REMOTE_ADDR":       "127.0.0.1",
		"REMOTE_PORT":       "40000",
	}
}

// openStream opens a stream over a new connection and reads it up to its
// ready event.
func (d *daemon) openStream(tb testing.TB, query string) *fcgiclient.Conn {
	tb.Helper()
	c := d.dial(tb)
	if err := c.Send(1, false, streamParams(query), nil); err != nil {
		tb.Fatalf("opening a stream: %v", err)
	}
	if out, err := c.ReadUntil(1, "event: ready\n"); err != nil {
		tb.Fatalf("opening a stream: %v after %q", err, out)
	}
	c.SetDeadline(time.Time{})
	return c
}

// rss returns the resident memory of process pid, in bytes.
func rss(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no VmRSS for process %d", pid)
	return 0
}

// BenchmarkIdleDaemonStreams measures what an idle stream costs the stream
// daemon: its resident memory with 1,000 streams open and nothing posted,
// less its memory with one, per stream.
func BenchmarkIdleDaemonStreams(b *testing.B) {
	const n = 1000
	d := startRawDaemon(b, "stream", map[string]string{"CHAT_STREAMS_PER_CLIENT": "0"}, 0, nil)
	// The first stream pays for the database, the feed and their buffers.
	first := d.openStream(b, "room=lobby")
	defer first.Close()
	var total, per float64
	for range b.N {
		time.Sleep(time.Second)
		before := rss(b, d.cmd.Process.Pid)
		conns := make([]*fcgiclient.Conn, 0, n)
		for range n {
			conns = append(conns, d.openStream(b, "room=lobby"))
		}
		// Let the daemon settle, as an idle stream does.
		time.Sleep(2 * time.Second)
		after := rss(b, d.cmd.Process.Pid)
		total, per = float64(after)/(1<<20), float64(after-before)/n/1024
		for _, c := range conns {
			c.Close()
		}
	}
	b.ReportMetric(per, "KiB/stream")
	b.ReportMetric(total, "MiB-total")
}

// syncBuffer is a log that a test reads while a process writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// postParams are the FastCGI parameters of a JSON post of n bytes.
func postParams(n int) map[string]string {
	p := streamParams("")
	p["REQUEST_METHOD"], p["SCRIPT_NAME"], p["REQUEST_URI"] = "POST", "/cgi-bin/post", "/cgi-bin/post"
	p["CONTENT_TYPE"], p["CONTENT_LENGTH"] = "application/json", strconv.Itoa(n)
	delete(p, "HTTP_ACCEPT")
	return p
}

// post posts text to the lobby through the post daemon d, under a nick of
// its own (holding no cookie, a client may not reuse one), and returns the
// status.
func (d *daemon) post(tb testing.TB, text string) int {
	tb.Helper()
	c := d.dial(tb)
	defer c.Close()
	d.posts++
	body := fmt.Sprintf(`{"nick":"poster%d","text":%q}`, d.posts, text)
	if err := c.Send(1, false, postParams(len(body)), []byte(body)); err != nil {
		tb.Fatal(err)
	}
	res, err := c.ReadResponse(1)
	if err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode
}

// logLine finds the first line of the log that contains s and returns its
// key=value fields.
func logLine(log, s string) map[string]string {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, s) {
			continue
		}
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = strings.Trim(v, `"`)
			}
		}
		return fields
	}
	return nil
}

// running reports whether process pid is alive (not exited, not a zombie).
func running(pid int) bool {
	f, err := hostkit.StatFields(pid)
	if err != nil || len(f) == 0 {
		return false
	}
	return f[0] != "Z" && f[0] != "X"
}

// TestDaemonAtFileLimit starts the stream daemon with 64 open files
// (soft and hard, as `ulimit -n 64` does) and opens more idle connections
// than that to its socket. It must not exit: it keeps serving the stream
// it has, answers a new request past its connection limit with a 503 in
// the chat's error form, and serves again once connections close. Its
// database is never short of files meanwhile (no error logged).
func TestDaemonAtFileLimit(t *testing.T) {
	const files, idle = 64, 70
	var log syncBuffer
	d := startRawDaemon(t, "stream", map[string]string{"CHAT_STREAMS_PER_CLIENT": "0"}, files, &log)
	poster := startRawDaemon(t, "post", map[string]string{"CHAT_DB": d.db}, 0, nil)
	pid := d.cmd.Process.Pid

	limits := logLine(log.String(), "connection limit")
	if limits["open_files"] != strconv.Itoa(files) {
		t.Fatalf("the daemon logged its limits as %v, want open_files=%d", limits, files)
	}
	maxConns, err1 := strconv.Atoi(limits["max_conns"])
	busyConns, err2 := strconv.Atoi(limits["busy_conns"])
	if err1 != nil || err2 != nil || maxConns < 2 || maxConns+busyConns >= files {
		t.Fatalf("the daemon logged max_conns=%q busy_conns=%q under %d files", limits["max_conns"], limits["busy_conns"], files)
	}

	stream := d.openStream(t, "room=lobby")
	defer stream.Close()
	// More idle connections than the process may open files. The socket
	// queues what the daemon does not accept; the connections it answers
	// busy send nothing and are closed after a while, and the next are
	// accepted in their place.
	var conns []net.Conn
	for range idle {
		c, err := net.Dial("unix", d.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	// It lives, and the stream it had still delivers.
	if code := poster.post(t, "still here"); code != 201 {
		t.Fatalf("post: status %d", code)
	}
	if out, err := stream.ReadUntil(1, "still here"); err != nil {
		t.Fatalf("the open stream after %d connections: %v after %q", idle, err, out)
	}
	if !running(pid) {
		t.Fatalf("the daemon exited under %d connections:\n%s", idle, log.String())
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		t.Logf("the daemon holds %d open files under %d connections", len(fds), idle)
	}

	// Past the limit, a new request gets 503, once the idle connections
	// queued before it have had their turn.
	const asked = 3
	for i := range asked {
		c := d.dial(t)
		if err := c.Send(1, false, streamParams("room=lobby"), nil); err != nil {
			t.Fatal(err)
		}
		res, err := c.ReadResponse(1)
		c.Close()
		if err != nil {
			t.Fatalf("request %d past the limit: %v", i, err)
		}
		var body struct{ Error string }
		b, _ := io.ReadAll(res.Body)
		jerr := json.Unmarshal(b, &body)
		if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") || jerr != nil || body.Error == "" {
			t.Errorf("request %d past the limit: status %d, Retry-After %q, Content-Type %q, body %q; want 503 with Retry-After and a JSON error",
				i, res.StatusCode, res.Header.Get("Retry-After"), res.Header.Get("Content-Type"), b)
		}
	}

	// Once connections close, new streams are served again. The daemon
	// may not have seen them close yet: a 503 is asked again, a bounded
	// number of times.
	for _, c := range conns {
		c.Close()
	}
	for again, try := 0, 0; again < 3; try++ {
		c := d.dial(t)
		c.Send(1, false, streamParams("room=lobby"), nil)
		out, err := c.ReadUntil(1, "event: ready\n")
		c.Close()
		switch {
		case err == nil:
			again++
		case !strings.Contains(out, "Status: 503") || try == 200:
			t.Fatalf("after the connections closed: %v after %q", err, out)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	if code := poster.post(t, "and still"); code != 201 {
		t.Fatalf("post: status %d", code)
	}
	if out, err := stream.ReadUntil(1, "and still"); err != nil {
		t.Fatalf("the first stream at the end: %v after %q", err, out)
	}

	if !running(pid) {
		t.Fatal("the daemon exited")
	}
	if g := strings.Count(log.String(), "connections are at their limit"); g < 1 {
		t.Errorf("the daemon logged its limit %d times, want at least once:\n%s", g, log.String())
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("the daemon logged errors at its file limit:\n%s", log.String())
	}
}

// cpuTime returns the CPU time (user and system, every thread, those
// gone included) process pid has used, from /proc/PID/stat, whose clock
// ticks are 1/100 s on Linux (USER_HZ).
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	f, err := hostkit.StatFields(pid)
	if err != nil {
		tb.Fatal(err)
	}
	if len(f) < 13 {
		tb.Fatalf("/proc/%d/stat: %q", pid, f)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			tb.Fatalf("/proc/%d/stat: %q", pid, f)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// BenchmarkDaemonFanOut measures what delivering a message to one open
// stream costs the stream daemon, with no web server in front: 2,000 and
// 10,000 streams read straight from its socket, one post at a time through
// the post daemon, each waited for at every stream before the next; the
// daemon's CPU time over the deliveries, and how long the streams took to
// open (each opening writes its row). The benchmark command (go run
// ./bench) measures the same behind nginx, with every process's share;
// this one leaves out the noise of the others.
func BenchmarkDaemonFanOut(b *testing.B) {
	for _, n := range []int{2000, 10000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) { benchmarkFanOut(b, n) })
	}
}

func benchmarkFanOut(b *testing.B, n int) {
	// The daemon serves fewer connections than it may open files (its
	// logs, the database, the room to answer 503): an eighth more leaves
	// room for all n.
	d := startRawDaemon(b, "stream", map[string]string{
		"CHAT_STREAMS_PER_CLIENT": "0",
		"CHAT_HEARTBEAT_SECONDS":  "30",
	}, n+n/8+512, nil)
	poster := startRawDaemon(b, "post", map[string]string{"CHAT_DB": d.db}, 0, nil)
	opening := time.Now()
	var delivered atomic.Int64
	conns := make([]*fcgiclient.Conn, 0, n)
	for range n {
		c := d.openStream(b, "room=lobby")
		conns = append(conns, c)
		go func() {
			for {
				h, content, err := c.Next()
				if err != nil {
					return
				}
				if h.Type == record.Stdout && bytes.Contains(content, []byte("event: message\n")) {
					delivered.Add(int64(bytes.Count(content, []byte("event: message\n"))))
				}
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	opened := time.Since(opening)
	time.Sleep(time.Second)
	pid := d.cmd.Process.Pid
	b.ResetTimer()
	cpu0, start := cpuTime(b, pid), time.Now()
	for i := range b.N {
		if code := poster.post(b, fmt.Sprintf("fan-out %d", i)); code != 201 {
			b.Fatalf("post: status %d", code)
		}
		want := int64(i+1) * int64(n)
		for deadline := time.Now().Add(30 * time.Second); delivered.Load() < want; {
			if time.Now().After(deadline) {
				b.Fatalf("post %d reached %d of %d streams in 30 s", i, delivered.Load()-int64(i)*int64(n), n)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	wall, cpu := time.Since(start), cpuTime(b, pid)-cpu0
	b.StopTimer()
	deliveries := float64(b.N) * float64(n)
	b.ReportMetric(float64(cpu.Microseconds())/deliveries, "daemon-µs/delivery")
	b.ReportMetric(float64(wall.Milliseconds())/float64(b.N), "ms/fan-out")
	b.ReportMetric(opened.Seconds(), "s/open-all")
}

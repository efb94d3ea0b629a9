package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cgichat/test/fcgiclient"
)

// daemon is one program started as a FastCGI daemon, reached over raw
// FastCGI connections.
type daemon struct {
	cmd  *exec.Cmd
	sock string
	db   string
}

// startRawDaemon starts prog as a daemon on a unix socket with env; with
// nofile > 0 it runs under that open-file limit (soft and hard, through
// prlimit), as `ulimit -n` would start it.
func startRawDaemon(tb testing.TB, prog string, env map[string]string, nofile int) *daemon {
	tb.Helper()
	db, kv := settings(tb, env)
	sock := filepath.Join(tb.TempDir(), prog+".sock")
	args := []string{filepath.Join(bin, prog), "-listen", "unix:" + sock}
	if nofile > 0 {
		limit := strconv.Itoa(nofile)
		args = append([]string{"prlimit", "--nofile=" + limit + ":" + limit, "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr, cmd.Env = os.Stderr, kv
	startProcess(tb, cmd)
	waitForSocket(tb, sock)
	return &daemon{cmd: cmd, sock: sock, db: db}
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
	c, err := fcgiclient.Dial("unix", d.sock)
	if err != nil {
		tb.Fatalf("opening a stream: %v", err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
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
// less its memory with one, per stream. docs/performance.md has the
// figures.
func BenchmarkIdleDaemonStreams(b *testing.B) {
	const n = 1000
	d := startRawDaemon(b, "stream", map[string]string{"CHAT_STREAMS_PER_CLIENT": "0"}, 0)
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

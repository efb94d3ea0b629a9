package web

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"cgichat/internal/fastcgi"
	"cgichat/internal/hosting"
	"cgichat/internal/store"
	"cgichat/test/fcgiclient"
)

// TestParkedStreamsHoldNoGoroutine serves streams over FastCGI, as a daemon
// behind nginx does, and checks that an idle stream keeps no goroutine of
// its own, that every parked stream still gets the next message once, and
// that streams whose web server left end and free their rows.
func TestParkedStreamsHoldNoGoroutine(t *testing.T) {
	const n = 100
	db := filepath.Join(t.TempDir(), "chat.db")
	env := map[string]string{"CHAT_DB": db, "CHAT_STREAMS_PER_CLIENT": "0", "CHAT_POLL_MS": "50"}
	a := NewStream(hosting.Env{Mode: hosting.Daemon, Log: quiet})
	a.Getenv = func(k string) string { return env[k] }
	a.Dir = t.TempDir()
	t.Cleanup(func() { a.Close() })
	sock := filepath.Join(t.TempDir(), "stream.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	base, cancel := context.WithCancel(context.Background())
	srv := &fastcgi.Server{Handler: a, BaseContext: base, Log: quiet}
	go srv.Serve(l)
	t.Cleanup(func() {
		cancel()
		srv.Shutdown(context.Background())
	})

	open := func(i int) *fcgiclient.Conn {
		c, err := fcgiclient.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		q := fmt.Sprintf("room=lobby&reader=r%d", i)
		params := map[string]string{
			"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/cgi-bin/stream", "REQUEST_URI": "/cgi-bin/stream?" + q,
			"QUERY_STRING": q, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
			"HTTP_HOST": "127.0.0.1", "HTTP_ACCEPT": "text/event-stream", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000",
		}
		if err := c.Send(1, false, params, nil); err != nil {
			t.Fatal(err)
		}
		if out, err := c.ReadUntil(1, "event: ready\n"); err != nil {
			t.Fatalf("stream %d: %v after %q", i, err, out)
		}
		return c
	}
	open(-1) // the database and the feed are opened by the first
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	conns := make([]*fcgiclient.Conn, n)
	for i := range conns {
		conns[i] = open(i)
	}
	time.Sleep(200 * time.Millisecond)
	if got := runtime.NumGoroutine() - before; got > n/10 {
		t.Errorf("%d idle streams hold %d goroutines more than none, want at most %d", n, got, n/10)
	}

	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := st.Insert(context.Background(), "lobby", "ada", "to every parked stream")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("id: %d\n", m.ID)
	for i, c := range conns {
		out, err := c.ReadUntil(1, want)
		if err != nil {
			t.Fatalf("stream %d: %v after %q", i, err, out)
		}
		if strings.Count(out, want) != 1 {
			t.Errorf("stream %d got the message %d times", i, strings.Count(out, want))
		}
	}

	// The web server leaves: every stream ends and closes its row.
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		open := count(t, db, "SELECT count(*) FROM streams WHERE open != 0")
		if open <= 1 { // the first stream's
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d stream rows still open 10 s after their connections closed", open)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cgichat/internal/fastcgi/record"
)

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns how many lines contain s.
func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// chanListener hands out what the test sends it: connections (over a
// real Unix socket, buffered as the web server's are) or errors.
type chanListener struct {
	inner   net.Listener
	accepts chan func() (net.Conn, error)
	closed  chan struct{}
	once    sync.Once
}

func newChanListener(t *testing.T) *chanListener {
	inner, err := net.Listen("unix", filepath.Join(t.TempDir(), "fcgi.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	return &chanListener{inner: inner, accepts: make(chan func() (net.Conn, error), 100), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case f := <-l.accepts:
		return f()
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.inner.Addr() }

// fail makes the next Accept fail with errno, as accept4 does.
func (l *chanListener) fail(errno syscall.Errno) {
	l.accepts <- func() (net.Conn, error) {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", errno)}
	}
}

// dial makes the next Accept return a new connection and returns its
// client's end.
func (l *chanListener) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	client, err := net.Dial("unix", l.inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := l.inner.Accept()
	if err != nil {
		t.Fatal(err)
	}
	l.accepts <- func() (net.Conn, error) { return server, nil }
	client.SetDeadline(time.Now().Add(10 * time.Second))
	return client, bufio.NewReader(client)
}

// TestAcceptFailures checks that a daemon out of file descriptors (or
// memory, or buffers) does not exit: Accept is retried with a back-off,
// the failures of one burst are logged once, open connections go on, and
// the next connection is served. A failure that is no load ends Serve.
func TestAcceptFailures(t *testing.T) {
	var log logBuffer
	l := newChanListener(t)
	h := newWaiting()
	s := &Server{Handler: h, Log: log.logger()}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	open, openR := l.dial(t)
	start(t, open, openR, 1)
	burst := []syscall.Errno{syscall.EMFILE, syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EMFILE}
	for _, errno := range burst {
		l.fail(errno)
	}
	c, r := l.dial(t)
	send(t, c, record.Append(nil, record.BeginRequest, 1, begin(false)), record.AppendStream(nil, record.Params, 1, getParams("/", "")), record.Append(nil, record.Stdin, 1, nil))
	readRaw(t, r) // "started": served after the burst
	if g, e := log.count("cannot accept connections"), 1; g != e {
		t.Errorf("%d log lines about the failures, want %d:\n%s", g, e, log.String())
	}
	if g, e := log.count(fmt.Sprintf("accepting connections again\" failures=%d", len(burst))), 1; g != e {
		t.Errorf("%d log lines about the end of the burst of %d, want %d:\n%s", g, len(burst), e, log.String())
	}
	// The stream open through the burst still runs and writes.
	c.Close()
	wait(t, h.ended, "end of the request after the burst")
	h.release <- struct{}{}
	if body, _ := answer(t, openR, 1); body != "after" {
		t.Errorf("the request open through the failures: got %q, want %q", body, "after")
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v after temporary failures", err)
	default:
	}

	l.fail(syscall.EBADF)
	if err := wait(t, served, "end of Serve after EBADF"); !errors.Is(err, syscall.EBADF) {
		t.Errorf("Serve returned %v, want EBADF", err)
	}
}

func TestTemporary(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{syscall.EMFILE, true},
		{syscall.ENFILE, true},
		{syscall.ENOBUFS, true},
		{syscall.ENOMEM, true},
		{syscall.ECONNABORTED, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{syscall.EBADF, false},
		{syscall.EINVAL, false},
		{net.ErrClosed, false},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := temporary(tt.err); got != tt.want {
			t.Errorf("temporary(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// busyAnswer is a Server.Busy for tests.
var busyAnswer = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, "busy")
})

// TestMaxConns fills a server's connections: the next is answered by Busy
// and closed, while the open ones go on; once one closes, new connections
// are served again. A burst is logged once.
func TestMaxConns(t *testing.T) {
	var log logBuffer
	l := newChanListener(t)
	h := newWaiting()
	s := &Server{Handler: h, MaxConns: 2, Busy: busyAnswer, MaxBusy: 1, Log: log.logger()}
	go s.Serve(l)
	defer s.Shutdown(context.Background())

	first, firstR := l.dial(t)
	start(t, first, firstR, 1)
	second, secondR := l.dial(t)
	start(t, second, secondR, 1)
	for i := range 3 {
		c, r := l.dial(t)
		send(t, c, record.Append(nil, record.BeginRequest, 1, begin(true)), record.AppendStream(nil, record.Params, 1, getParams("/", "")), record.Append(nil, record.Stdin, 1, nil))
		if body, status := answer(t, r, 1); body != "busy" || status != record.StatusRequestComplete {
			t.Errorf("connection %d past the limit: got %q, status %d; want the busy answer", 3+i, body, status)
		}
		// Asked to keep it, but closed: the connection's place is needed.
		if _, err := r.ReadByte(); err != io.EOF {
			t.Errorf("connection %d past the limit: %v after the answer, want it closed", 3+i, err)
		}
	}
	// The open ones still run.
	first.Close()
	wait(t, h.ended, "end of the first request")
	h.release <- struct{}{}
	if body, _ := answer(t, secondR, 1); body != "after" {
		t.Errorf("an open request: got %q, want %q", body, "after")
	}
	// Served again once the connections are gone; the server may not have
	// seen them go yet, so a busy answer is tried again.
	for try := 0; ; try++ {
		c, r := l.dial(t)
		send(t, c, record.Append(nil, record.BeginRequest, 1, begin(false)), record.AppendStream(nil, record.Params, 1, getParams("/", "")), record.Append(nil, record.Stdin, 1, nil))
		if out := firstOutput(t, r, 1); !strings.HasSuffix(out, "busy") {
			if !strings.HasSuffix(out, "started") {
				t.Fatalf("after connections closed: got %q, want the handler's answer", out)
			}
			break
		}
		if try == 100 {
			t.Fatal("still busy after connections closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g, e := log.count("connections are at their limit"), 1; g != e {
		t.Errorf("%d log lines about the limit, want %d:\n%s", g, e, log.String())
	}
	if g := log.count("serving new connections again"); g != 1 {
		t.Errorf("%d log lines about serving again, want 1:\n%s", g, log.String())
	}
	h.release <- struct{}{}
}

// firstOutput reads request id's output until the handler's first write
// or the end of the request, and returns it.
func firstOutput(t *testing.T, r *bufio.Reader, id uint16) string {
	t.Helper()
	var out []byte
	for {
		rec := readRaw(t, r)
		switch {
		case rec.id != id:
		case rec.typ == record.EndRequest:
			return string(out)
		case rec.typ == record.Stdout:
			out = append(out, rec.content...)
			if bytes.HasSuffix(out, []byte("started")) {
				return string(out)
			}
		}
	}
}

// TestShutdown closes idle connections at once, lets a running request
// finish and end properly, and only then returns.
func TestShutdown(t *testing.T) {
	l := newChanListener(t)
	h := newWaiting()
	s := &Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	idle, idleR := l.dial(t)
	send(t, idle, record.Append(nil, record.GetValues, 0, nil))
	readRaw(t, idleR) // accepted and read
	busy, busyR := l.dial(t)
	start(t, busy, busyR, 1)

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Errorf("an idle connection after Shutdown: %v, want it closed", err)
	}
	if err := wait(t, served, "end of Serve"); err != ErrServerClosed {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request runs", err)
	default:
	}
	h.release <- struct{}{}
	if body, status := answer(t, busyR, 1); body != "after" || status != record.StatusRequestComplete {
		t.Errorf("the running request: got %q, status %d", body, status)
	}
	if err := wait(t, shut, "end of Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := busyR.ReadByte(); err != io.EOF {
		t.Errorf("the kept connection after its request and Shutdown: %v, want it closed", err)
	}
}

// TestPanicAnswered500 checks that a handler's panic is a 500 for the
// request and a log line, not the end of the process.
func TestPanicAnswered500(t *testing.T) {
	var log logBuffer
	l := newChanListener(t)
	s := &Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }), Log: log.logger()}
	go s.Serve(l)
	defer s.Shutdown(context.Background())
	c, r := l.dial(t)
	send(t, c, record.Append(nil, record.BeginRequest, 1, begin(false)), record.AppendStream(nil, record.Params, 1, getParams("/", "")), record.Append(nil, record.Stdin, 1, nil))
	var out []byte
	for {
		rec := readRaw(t, r)
		if rec.typ == record.EndRequest {
			break
		}
		out = append(out, rec.content...)
	}
	if !bytes.HasPrefix(out, []byte("Status: 500 ")) {
		t.Errorf("got %q, want a 500", out)
	}
	if log.count("the handler panicked") != 1 {
		t.Errorf("the panic was not logged once:\n%s", log.String())
	}
}

//go:build linux

package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"cgichat/internal/fastcgi/record"
)

// socketPair returns a connection of this package over one end of a Unix
// socket pair whose send buffer is sndbuf bytes (as the kernel rounds
// it), with a response of request 1 whose header was sent, and the other
// end, as the web server.
func socketPair(t *testing.T, sndbuf int) (*response, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetsockoptInt(fds[0], syscall.SOL_SOCKET, syscall.SO_SNDBUF, sndbuf); err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conns[i].Close() })
	}
	raw, err := conns[0].(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{srv: &Server{}, rwc: conns[0], raw: raw}
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	w := &response{c: c, req: &request{id: 1, ctx: ctx, cancel: cancel}, header: http.Header{}, code: 200, wroteHeader: true, sentHeader: true}
	return w, conns[1]
}

// readStdout reads records from br until FCGI_END_REQUEST, or until their
// FCGI_STDOUT content is upTo bytes long when upTo > 0, and returns that
// content; any other record, or a record of another request, fails the
// test.
func readStdout(t *testing.T, br *bufio.Reader, upTo int) []byte {
	t.Helper()
	var out []byte
	for upTo <= 0 || len(out) < upTo {
		rec := readRaw(t, br)
		switch {
		case rec.id != 1:
			t.Fatalf("a record of request %d", rec.id)
		case rec.typ == record.EndRequest:
			return out
		case rec.typ != record.Stdout:
			t.Fatalf("a record of type %d", rec.typ)
		}
		out = append(out, rec.content...)
	}
	return out
}

// TestTryWrite checks TryWrite against a web server that reads, then one
// that does not: it never waits; what it takes is sent whole, in order
// and in whole records, before anything written after it, whether the
// socket took all of it, part of it (the rest pending, and nothing more
// taken meanwhile) or none of it.
func TestTryWrite(t *testing.T) {
	tests := []struct {
		name string
		size int    // of each write
		part bool   // the socket comes to take part of a write; else none of one
		then string // what sends the rest: flush (then write and end), write (then end), end
	}{
		{"PartFlush", 12 << 10, true, "flush"}, // more than the socket takes at once
		{"PartWrite", 12 << 10, true, "write"},
		{"PartEnd", 12 << 10, true, "end"},
		{"NoneFlush", 100, false, "flush"}, // one piece of the socket's: all or nothing
		{"NoneWrite", 100, false, "write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, front := socketPair(t, 4096)
			var want []byte
			// A web server that reads: all is sent at once.
			if n, err := TryWrite(w, []byte("hello")); n != 5 || err != nil {
				t.Fatalf("TryWrite to a reading web server: %d, %v; want 5, nil", n, err)
			}
			want = append(want, "hello"...)
			// One that does not read: the socket fills.
			for i := 0; ; i++ {
				if i == 1000 {
					t.Fatalf("1,000 writes of %d bytes to a web server that reads nothing were all taken", tt.size)
				}
				p := bytes.Repeat([]byte{byte('A' + i%26)}, tt.size)
				start := time.Now()
				n, err := TryWrite(w, p)
				if d := time.Since(start); d > time.Second {
					t.Fatalf("TryWrite waited %v", d)
				}
				if err == nil && n == len(p) {
					want = append(want, p...)
					continue
				}
				if !errors.Is(err, ErrWouldBlock) || (n != 0) == !tt.part {
					t.Fatalf("write %d of %d bytes: %d, %v; want %v", i, len(p), n, err, map[bool]string{true: "all taken, ErrWouldBlock", false: "0, ErrWouldBlock"}[tt.part])
				}
				want = append(want, p[:n]...)
				break
			}
			front.SetReadDeadline(time.Now().Add(10 * time.Second))
			var prefix []byte
			if tt.part {
				// The web server reads some: with the rest still pending,
				// nothing more is taken, though the socket has room.
				prefix = make([]byte, 4096)
				if _, err := io.ReadFull(front, prefix); err != nil {
					t.Fatal(err)
				}
				if n, err := TryWrite(w, []byte("x")); n != 0 || !errors.Is(err, ErrWouldBlock) {
					t.Fatalf("TryWrite with a write pending: %d, %v; want 0, ErrWouldBlock", n, err)
				}
			}
			br := bufio.NewReader(io.MultiReader(bytes.NewReader(prefix), front))
			var got []byte
			if tt.then == "flush" {
				// A Flush alone sends what is pending, as the web server
				// reads.
				flushed := make(chan error, 1)
				go func() {
					w.Flush()
					flushed <- w.err
				}()
				got = readStdout(t, br, len(want))
				if err := <-flushed; err != nil {
					t.Fatalf("Flush: %v", err)
				}
			}
			// What comes after, if anything, then the end of the request:
			// after what is pending.
			done := make(chan error, 1)
			go func() {
				if tt.then != "end" {
					if _, err := w.Write([]byte("after")); err != nil {
						done <- err
						return
					}
				}
				done <- w.c.end(1, record.StatusRequestComplete)
			}()
			if tt.then != "end" {
				want = append(want, "after"...)
			}
			got = append(got, readStdout(t, br, 0)...)
			if err := <-done; err != nil {
				t.Fatalf("writing after TryWrite: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("the web server read %d bytes, want %d (the first difference at %d)", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestTryWriteLeavesToWrite checks what TryWrite never takes, so that
// Write sends it: a response of another kind, the CGI header (the first
// write), more than 16 KiB, nothing at all; and what it answers once the
// request ended.
func TestTryWriteLeavesToWrite(t *testing.T) {
	if n, err := TryWrite(httptest.NewRecorder(), []byte("x")); n != 0 || !errors.Is(err, ErrWouldBlock) {
		t.Errorf("TryWrite to a recorder: %d, %v; want 0, ErrWouldBlock", n, err)
	}
	tests := []struct {
		name       string
		sentHeader bool
		p          []byte
	}{
		{"Header", false, []byte("x")},
		{"Long", true, make([]byte, tryBytes+1)},
		{"Empty", true, nil},
	}
	for _, tt := range tests {
		w, _ := socketPair(t, 1<<16)
		w.sentHeader = tt.sentHeader
		if n, err := TryWrite(unwrapper{w}, tt.p); n != 0 || !errors.Is(err, ErrWouldBlock) {
			t.Errorf("%s: %d, %v; want 0, ErrWouldBlock", tt.name, n, err)
		}
	}
	w, _ := socketPair(t, 1<<16)
	cause := errors.New("the web server aborted the request")
	w.req.cancel(cause)
	if n, err := TryWrite(w, []byte("x")); n != 0 || err != cause {
		t.Errorf("after the request ended: %d, %v; want 0, %v", n, err, cause)
	}
}

// TestFinishWithPending checks the end of a request whose handler set a
// write deadline and whose context ended (a shutdown, the web server
// aborted) while the web server reads nothing: with bytes pending
// (TryWrite took a record in part), they go under the handler's deadline;
// with a full socket and nothing pending, the end records go under a
// bound of their own (endTimeout). Either way the end does not wait
// longer, and the connection is closed, with nothing more written after
// what may be a cut record.
func TestFinishWithPending(t *testing.T) {
	defer func(d time.Duration) { endTimeout = d }(endTimeout)
	endTimeout = time.Second
	tests := []struct {
		name string
		size int // of each TryWrite
	}{
		{"Pending", 12 << 10}, // taken in part at last
		{"FullNothingPending", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := socketPair(t, 4096)
			w.body, w.req.stdinDone = http.NoBody, closedChan
			w.c.refs, w.c.release = 1, func() {}
			w.c.srv.conns = map[uint32]*conn{}
			if err := w.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				if i == 100000 {
					t.Fatal("100,000 writes to a web server that reads nothing were all taken")
				}
				n, err := TryWrite(w, bytes.Repeat([]byte{'a'}, tt.size))
				if err == nil {
					continue
				}
				if !errors.Is(err, ErrWouldBlock) {
					t.Fatalf("TryWrite: %d, %v", n, err)
				}
				break
			}
			if pending := len(w.c.pending) > 0; pending != (tt.name == "Pending") {
				t.Fatalf("bytes pending: %v, want %v", pending, !pending)
			}
			w.req.cancel(errors.New("the web server aborted the request"))
			done := make(chan struct{})
			go func() {
				w.c.finish(w, false)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the request's end still waits 10 s after write bounds of 1 s")
			}
			if _, err := w.c.rwc.Write([]byte("x")); err == nil {
				t.Error("the connection is still open after its end could not be sent")
			}
		})
	}
}

// TestFailedWriteEndsWrites checks that once a write on a connection
// failed (here the reader's, past a deadline, as an answer to a
// management record could), which may have cut a record, nothing more is
// sent on it: TryWrite and Write fail with that error.
func TestFailedWriteEndsWrites(t *testing.T) {
	w, _ := socketPair(t, 4096)
	w.c.rwc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	err := w.c.write(make([]byte, 1<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write of 1 MiB to a web server that reads nothing: %v, want the deadline", err)
	}
	// A deadline again, so that a write that did try fails soon.
	w.c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	if n, got := TryWrite(w, []byte("x")); n != 0 || got != err {
		t.Errorf("TryWrite after a failed write: %d, %v; want 0, %v", n, got, err)
	}
	if _, got := w.Write([]byte("x")); got != err {
		t.Errorf("Write after a failed write: %v, want %v", got, err)
	}
}

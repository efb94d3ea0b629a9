package web

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
	"weak"

	"cgichat/internal/chat"
	"cgichat/internal/fastcgi"
	"cgichat/internal/fastcgi/record"
	"cgichat/internal/hosting"
	"cgichat/internal/sse"
	"cgichat/internal/store"
	"cgichat/test/fcgiclient"
)

// TestParkedStreamsHoldNoGoroutine serves streams over FastCGI, as a daemon
// behind nginx does, and checks that an idle stream keeps no goroutine of
// its own, that every parked stream still gets the next message once, and
// that streams whose web server left end and free their rows.
// parkedApp returns a stream App for a daemon, served over FastCGI on a
// Unix socket, as behind nginx; and the database's path and the socket's.
func parkedApp(t *testing.T) (a *App, db, sock string) {
	t.Helper()
	return parkedAppBuffered(t, 0)
}

// parkedAppBuffered is parkedApp with a send buffer of sndbuf bytes (as
// the kernel rounds it) for every connection, unless 0.
func parkedAppBuffered(t *testing.T, sndbuf int) (a *App, db, sock string) {
	t.Helper()
	db = filepath.Join(t.TempDir(), "chat.db")
	env := map[string]string{"CHAT_DB": db, "CHAT_STREAMS_PER_CLIENT": "0", "CHAT_POLL_MS": "50"}
	a = NewStream(hosting.Env{Mode: hosting.Daemon, Log: quiet})
	a.Getenv = func(k string) string { return env[k] }
	a.Dir = t.TempDir()
	t.Cleanup(func() { a.Close() })
	sock = filepath.Join(t.TempDir(), "stream.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if sndbuf > 0 {
		l = sndbufListener{l.(*net.UnixListener), sndbuf}
	}
	base, cancel := context.WithCancel(context.Background())
	srv := &fastcgi.Server{Handler: a, BaseContext: base, Log: quiet}
	go srv.Serve(l)
	t.Cleanup(func() {
		cancel()
		srv.Shutdown(context.Background())
	})
	return a, db, sock
}

// sndbufListener sets the send buffer of every connection it accepts
// (an accepted Unix socket does not take the listening socket's).
type sndbufListener struct {
	*net.UnixListener
	size int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, l.size) })
	if serr != nil {
		c.Close()
		return nil, serr
	}
	return c, nil
}

// openParked opens a stream of reader on sock, with the FastCGI
// parameters nginx sends and extra ones, and reads it up to its ready
// event.
func openParked(t *testing.T, sock, reader string, extra map[string]string) *fcgiclient.Conn {
	t.Helper()
	c, err := fcgiclient.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	q := "room=lobby&reader=" + reader
	params := map[string]string{
		"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/cgi-bin/stream", "REQUEST_URI": "/cgi-bin/stream?" + q,
		"QUERY_STRING": q, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
		"DOCUMENT_ROOT": "/var/www/chat", "SCRIPT_FILENAME": "/var/www/chat/cgi-bin/stream",
		"HTTP_HOST": "127.0.0.1", "HTTP_ACCEPT": "text/event-stream", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000",
	}
	for k, v := range extra {
		params[k] = v
	}
	if err := c.Send(1, false, params, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := c.ReadUntil(1, "event: ready\n"); err != nil {
		t.Fatalf("stream of %s: %v after %q", reader, err, out)
	}
	return c
}

// TestParkedStreamsHoldNoGoroutine serves streams over FastCGI, as a daemon
// behind nginx does, and checks that an idle stream keeps no goroutine of
// its own, that every parked stream still gets the next message once, and
// that streams whose web server left end and free their rows.
func TestParkedStreamsHoldNoGoroutine(t *testing.T) {
	const n = 100
	_, db, sock := parkedApp(t)
	open := func(i int) *fcgiclient.Conn { return openParked(t, sock, fmt.Sprintf("r%d", i), nil) }
	// The database and the feed are opened by the first stream, and the
	// pool of writers by the first message.
	first := open(-1)
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	warm, err := st.Insert(context.Background(), "lobby", "ada", "before the others")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := first.ReadUntil(1, fmt.Sprintf("id: %d\n", warm.ID)); err != nil {
		t.Fatalf("the first stream: %v after %q", err, out)
	}
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

	// Two messages, one after the other: each stream gets each once, in
	// order (what is read up to the second holds the first once).
	var ids []string
	for _, text := range []string{"to every parked stream", "and again"} {
		m, err := st.Insert(context.Background(), "lobby", "ada", text)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprintf("id: %d\n", m.ID))
		for i, c := range conns {
			out, err := c.ReadUntil(1, ids[len(ids)-1])
			if err != nil {
				t.Fatalf("stream %d: %v after %q", i, err, out)
			}
			if len(ids) > 1 && strings.Contains(out, ids[0]) {
				t.Errorf("stream %d sent a message twice: %q", i, out)
			}
		}
	}
	// A message more ends what each stream sent of the two.
	last, err := st.Insert(context.Background(), "lobby", "ada", "the end")
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		out, err := c.ReadUntil(1, fmt.Sprintf("id: %d\n", last.ID))
		if err != nil {
			t.Fatalf("stream %d: %v after %q", i, err, out)
		}
		if strings.Contains(out, ids[0]) || strings.Contains(out, ids[1]) {
			t.Errorf("stream %d sent a message twice: %q", i, out)
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

// TestParkedWakeDuringStep checks the parked writer's states: a wake-up
// that comes while the writer runs, after its session said it had nothing
// (the window between TryNext's ErrWait and the writer going idle), runs
// the writer once more; one that comes while it is idle has a writer of
// the pool run it, without waiting (try); a step that would have waited
// goes on on a goroutine that may; once ended, nothing runs it.
func TestParkedWakeDuringStep(t *testing.T) {
	tests := []struct {
		name      string
		wakeInRun bool // the first step is woken before it returns
		wakeIdle  bool // woken after it went idle
		blockAt   int  // the step that would wait (1 is the first), or 0
		wantTries []bool
	}{
		{"Nothing more", false, false, 0, []bool{false}},
		{"Woken while running", true, false, 0, []bool{false, false}},
		{"Woken while idle", false, true, 0, []bool{false, true}},
		{"Would wait on a writer", false, true, 2, []bool{false, true, false}},
		{"Woken while running, then would wait", true, true, 3, []bool{false, false, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var tries []bool
			steps := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(tries)
			}
			ran := make(chan struct{}, 10)
			p := &parked{}
			p.step = func(try bool) (string, bool, bool) {
				mu.Lock()
				tries = append(tries, try)
				n := len(tries)
				mu.Unlock()
				if n == 1 && tt.wakeInRun {
					p.wake()
				}
				ran <- struct{}{}
				return "", false, n == tt.blockAt
			}
			p.state.Store(parkRunning)
			p.run(false)
			if tt.wakeIdle {
				for p.state.Load() != parkIdle {
					time.Sleep(time.Millisecond)
				}
				p.wake()
			}
			deadline := time.After(5 * time.Second)
			for range tt.wantTries {
				select {
				case <-ran:
				case <-deadline:
					t.Fatalf("%d steps ran, want %d", steps(), len(tt.wantTries))
				}
			}
			// The writer goes idle once it has nothing; then nothing runs.
			for p.state.Load() != parkIdle {
				select {
				case <-deadline:
					t.Fatalf("the writer is in state %d, want idle", p.state.Load())
				case <-time.After(time.Millisecond):
				}
			}
			mu.Lock()
			got := slices.Clone(tries)
			mu.Unlock()
			if !slices.Equal(got, tt.wantTries) {
				t.Errorf("steps ran with try %v, want %v", got, tt.wantTries)
			}
			p.state.Store(parkEnded)
			p.wake()
			time.Sleep(20 * time.Millisecond)
			if got := steps(); got != len(tt.wantTries) {
				t.Errorf("an ended writer ran again: %d steps, want %d", got, len(tt.wantTries))
			}
		})
	}
}

// TestParkedStreamKeepsNoParameters checks that a waiting stream keeps
// none of its request's FastCGI parameters (nginx sends a dozen with
// every request), while a daemon takes no setting from them: a big
// parameter of each stream is gone after a collection.
func TestParkedStreamKeepsNoParameters(t *testing.T) {
	a, _, sock := parkedApp(t)
	var mu sync.Mutex
	var kept []weak.Pointer[byte]
	params := a.params
	a.params = func(r *http.Request) map[string]string {
		m := params(r)
		if v := m["BIG_PARAM"]; v != "" {
			mu.Lock()
			kept = append(kept, weak.Make(unsafe.StringData(v)))
			mu.Unlock()
		}
		return m
	}
	for i := range 5 {
		openParked(t, sock, fmt.Sprintf("r%d", i), map[string]string{"BIG_PARAM": strings.Repeat("p", 64<<10)})
	}
	runtime.GC()
	runtime.GC()
	mu.Lock()
	defer mu.Unlock()
	if len(kept) != 5 {
		t.Fatalf("saw the parameter of %d streams, want 5", len(kept))
	}
	for i, p := range kept {
		if p.Value() != nil {
			t.Errorf("stream %d keeps its request's parameters while it waits", i)
		}
	}
}

// TestStreamThatCannotDetach checks that a stream served where its
// response cannot outlive the handler (the development server) is written
// by its handler, and that once it ended the database's handler is no
// longer held: a replaced database file is closed after its streams.
func TestStreamThatCannotDetach(t *testing.T) {
	db := filepath.Join(t.TempDir(), "chat.db")
	env := map[string]string{"CHAT_DB": db, "CHAT_STREAMS_PER_CLIENT": "0"}
	a := NewStream(hosting.Env{Mode: hosting.Daemon, Log: quiet})
	a.Getenv = func(k string) string { return env[k] }
	a.Dir = t.TempDir()
	t.Cleanup(func() { a.Close() })
	srv := httptest.NewServer(a)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/cgi-bin/stream?room=lobby", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events := sse.NewReader(bufio.NewReader(resp.Body))
	ev, err := events.Next()
	for err == nil && ev.Type != "ready" {
		ev, err = events.Next()
	}
	if err != nil {
		t.Fatalf("no ready event: %v", err)
	}
	cancel()
	resp.Body.Close()
	a.mu.Lock()
	var o *opened
	for _, h := range a.instances {
		o = h
	}
	a.mu.Unlock()
	if o == nil {
		t.Fatal("no handler for the database")
	}
	done := make(chan struct{})
	go func() {
		o.busy.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("the database's handler is still held 10 s after its only stream ended")
	}
}

// TestStalledReadersHoldNoWriter serves parked streams of which more than
// the writers of the pool never read, while messages long enough to fill
// their sockets come: the streams that read get every message at once
// all the same (a writer that waited for a stalled stream would hold
// them back for its write deadline, 25 s), and the stalled streams, once
// they read, get every message once, in order.
func TestStalledReadersHoldNoWriter(t *testing.T) {
	tests := []struct {
		name     string
		sndbuf   int // 0: the system's
		messages int
		paced    bool // each message reaches the reading streams before the next is sent
	}{
		{"Burst", 0, 300, false}, // the stalled streams' writes are long (64 KiB)
		// One message per write, and a buffer that takes part of one.
		{"PacedSmallBuffers", 4096, 40, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { stalledReaders(t, tt.sndbuf, tt.messages, tt.paced) })
	}
}

// background is what a stream's connection sent, read on a goroutine of
// its own, as a reader that keeps up does.
type background struct {
	mu  sync.Mutex
	out strings.Builder // the FCGI_STDOUT records' content
	err error           // why reading ended, once it did
}

// readInBackground reads c's FCGI_STDOUT records until its connection
// ends, with no deadline.
func readInBackground(c *fcgiclient.Conn) *background {
	c.SetDeadline(time.Time{})
	r := &background{}
	go func() {
		for {
			h, b, err := c.Next()
			r.mu.Lock()
			if err != nil {
				r.err = err
				r.mu.Unlock()
				return
			}
			if h.Type == record.Stdout {
				r.out.Write(b)
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// has reports whether what was read so far holds s, and why reading
// ended, if it did.
func (r *background) has(s string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Contains(r.out.String(), s), r.err
}

func stalledReaders(t *testing.T, sndbuf, messages int, paced bool) {
	const reading = 3
	stalled := runtime.GOMAXPROCS(0) + 1
	_, db, sock := parkedAppBuffered(t, sndbuf)
	readers := make([]*background, reading)
	for i := range readers {
		readers[i] = readInBackground(openParked(t, sock, fmt.Sprintf("reading%d", i), nil))
	}
	stalls := make([]*fcgiclient.Conn, stalled)
	for i := range stalls {
		stalls[i] = openParked(t, sock, fmt.Sprintf("stalled%d", i), nil)
		stalls[i].SetDeadline(time.Now().Add(60 * time.Second))
	}
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Every reading stream has the message whose id line is want, within
	// 10 s of when it was sent (a writer held by a stalled stream would
	// hold it for 25 s).
	arrives := func(what, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, r := range readers {
			for {
				got, err := r.has(want)
				if got {
					break
				}
				if err != nil {
					t.Fatalf("a reading stream ended before %s: %v", what, err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s has not reached a reading stream in 10 s, beside %d stalled ones", what, stalled)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	// 2,000 characters, 6,000 bytes: a frame the small buffers take in
	// part.
	text := strings.Repeat("😀", 2000)
	var ids []int64
	for i := range messages {
		m, err := st.Insert(context.Background(), "lobby", "ada", text)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
		if paced || i%50 == 49 {
			arrives(fmt.Sprintf("message %d", i+1), fmt.Sprintf("id: %d\n", m.ID))
		}
	}
	last, err := st.Insert(context.Background(), "lobby", "ada", "and one more")
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, last.ID)
	arrives("the last message", fmt.Sprintf("id: %d\n", last.ID))

	// The stalled streams read now: every message once, in order.
	for i, c := range stalls {
		out, err := c.ReadUntil(1, fmt.Sprintf("id: %d\n", last.ID))
		if err != nil {
			t.Fatalf("stalled stream %d: %v after %d bytes", i, err, len(out))
		}
		var got []int64
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				var id int64
				fmt.Sscan(v, &id)
				got = append(got, id)
			}
		}
		if !slices.Equal(got, ids) {
			t.Errorf("stalled stream %d got %d messages (first %v), want the %d sent, once each, in order", i, len(got), got[:min(len(got), 5)], len(ids))
		}
	}
}

// shortWriteTimeout has streams' writes time out after d, their deadline
// set again within d/6 of it, until the test ends. Call it before starting
// the app, so that the app ends first.
func shortWriteTimeout(t *testing.T, d time.Duration) {
	timeout, slack := writeTimeout, deadlineSlack
	writeTimeout, deadlineSlack = d, d/6
	t.Cleanup(func() { writeTimeout, deadlineSlack = timeout, slack })
}

// TestStalledStreamEndsAtItsDeadline serves a parked stream whose reader
// reads nothing while messages fill its socket: once a write has waited
// writeTimeout, the stream ends, its row is marked closed and its
// connection is closed; a stream that reads meanwhile gets every message.
func TestStalledStreamEndsAtItsDeadline(t *testing.T) {
	shortWriteTimeout(t, 2*time.Second)
	_, db, sock := parkedAppBuffered(t, 0)
	reading := readInBackground(openParked(t, sock, "reading", nil))
	stalled := openParked(t, sock, "stalled", nil)
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// 100 messages of 6,000 bytes: more than the stalled stream's socket
	// holds, and a fraction of it at a time on the reading one's.
	text := strings.Repeat("😀", 2000)
	var last chat.Message
	for range 100 {
		if last, err = st.Insert(context.Background(), "lobby", "ada", text); err != nil {
			t.Fatal(err)
		}
	}
	want := fmt.Sprintf("id: %d\n", last.ID)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		arrived, err := reading.has(want)
		if arrived {
			break
		}
		if err != nil {
			t.Fatalf("the reading stream ended before the last message: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the last message has not reached the reading stream in 10 s, beside a stalled one")
		}
	}
	sq, err := sql.Open("sqlite3", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	open := func() int {
		var n int
		if err := sq.QueryRow("SELECT count(*) FROM streams WHERE reader = 'stalled' AND open <> 0").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled stream's row is still open 10 s after its socket filled, with a write timeout of 2 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its connection is closed: what was sent, then the end, not a wait.
	stalled.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := stalled.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the stalled stream's connection is still open 10 s after its stream ended")
		}
		if err != nil {
			break
		}
	}
}

// TestWriterPoolFull wakes streams while the pool's every writer is busy
// and its queue full: the stream past the queue runs at once on a
// goroutine of its own (a step that may wait), and the queued one on the
// writer once it is free (a step that must not wait).
func TestWriterPoolFull(t *testing.T) {
	wp := &writerPool{size: 1, queue: 1}
	t.Cleanup(func() { close(wp.q) })
	type ran struct {
		name string
		try  bool
	}
	steps := make(chan ran, 3)
	free := make(chan struct{})
	stream := func(name string, holds bool) *parked {
		p := &parked{}
		p.step = func(try bool) (string, bool, bool) {
			steps <- ran{name, try}
			if holds {
				<-free
			}
			return "", false, false
		}
		p.state.Store(parkRunning)
		return p
	}
	next := func() ran {
		t.Helper()
		select {
		case r := <-steps:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no stream ran in 5 s")
		}
		return ran{}
	}
	wp.run(stream("busy", true))
	if got, want := next(), (ran{"busy", true}); got != want {
		t.Fatalf("first step %+v, want %+v", got, want)
	}
	wp.run(stream("queued", false))
	wp.run(stream("past the queue", false))
	if got, want := next(), (ran{"past the queue", false}); got != want {
		t.Fatalf("with the writer busy and the queue full, %+v ran; want %+v", got, want)
	}
	close(free)
	if got, want := next(), (ran{"queued", true}); got != want {
		t.Fatalf("once the writer was free, %+v ran; want %+v", got, want)
	}
}

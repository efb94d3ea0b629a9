package hostkit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"cgichat/internal/sse"
)

// tailFile is the tail's name, as the program names it.
const tailFile = "0123456789abcdef0123456789abcdef.txt"

// chatServer is a chat as the programs and the web server make it, small:
// at /chat/cgi-bin/stream a program that answers every request as a poll
// naming the room's tail file, at /chat/tail/ the tail files, served as
// the web server serves static files (with an ETag, 304 when it matches).
type chatServer struct {
	t     *testing.T
	dir   string
	retry time.Duration
	every time.Duration
	keep  int // events the tail file holds; 0: it is written by hand
	url   string

	mu     sync.Mutex
	rows   []row       // the room, in id order
	polls  []poll      // the stream requests
	tailAt []time.Time // the tail fetches
}

type row struct {
	id   int64
	typ  string
	data string
}

type poll struct {
	at     time.Time
	lastID string
}

func newChatServer(t *testing.T, retry, every time.Duration, keep int) *chatServer {
	c := &chatServer{t: t, dir: t.TempDir(), retry: retry, every: every, keep: keep}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chat/cgi-bin/stream", c.stream)
	mux.HandleFunc("GET /chat/tail/{name}", c.file)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c.url = srv.URL + "/chat/cgi-bin/stream?room=r"
	return c
}

// stream answers a poll: retry:, the rows after Last-Event-ID, ready
// with the tail, and the end. Like the program, it makes the file current.
func (c *chatServer) stream(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lastID := r.Header.Get("Last-Event-ID")
	c.polls = append(c.polls, poll{at: time.Now(), lastID: lastID})
	after, err := eventID(lastID)
	if err != nil {
		http.Error(w, "bad Last-Event-ID", http.StatusBadRequest)
		return
	}
	b := sse.AppendRetry(nil, c.retry.Milliseconds())
	for _, r := range c.rows {
		if r.id > after {
			b = sse.AppendEvent(b, r.id, r.typ, r.data)
		}
	}
	ready := fmt.Sprintf(`{"mode":"poll","retry":%d,"tail":"../tail/%s","every":%d}`, c.retry.Milliseconds(), tailFile, c.every.Milliseconds())
	b = sse.AppendEvent(b, 0, "ready", ready)
	c.writeKept()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Write(b)
}

// file serves a tail file as a web server does, read whole so that its
// ETag (a hash of its bytes) always matches what is sent.
func (c *chatServer) file(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.tailAt = append(c.tailAt, time.Now())
	c.mu.Unlock()
	path := filepath.Join(c.dir, r.PathValue("name"))
	b, err := os.ReadFile(path)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`"%x"`, sha256.Sum256(b)))
	http.ServeContent(w, r, path, fi.ModTime(), bytes.NewReader(b))
}

// post adds a row to the room; a message's data is its id.
func (c *chatServer) post(typ string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := int64(len(c.rows) + 1)
	c.rows = append(c.rows, row{id: id, typ: typ, data: strconv.FormatInt(id, 10)})
	c.writeKept()
	return id
}

// writeKept makes the tail file current when the server keeps it: the
// latest keep rows. Called with mu held.
func (c *chatServer) writeKept() {
	if c.keep == 0 {
		return
	}
	after := max(int64(len(c.rows)-c.keep), 0)
	c.writeTail(after, int64(len(c.rows)))
}

// writeTail writes the tail file holding the rows with ids in
// (after, last], replacing it at once as the program does. Called with
// mu held.
func (c *chatServer) writeTail(after, last int64) {
	b := sse.AppendEvent(nil, 0, "tail", fmt.Sprintf(`{"room":"r","after":%d,"last":%d}`, after, last))
	for _, r := range c.rows {
		if r.id > after && r.id <= last {
			b = sse.AppendEvent(b, r.id, r.typ, r.data)
		}
	}
	c.writeFile(b)
}

func (c *chatServer) writeFile(b []byte) {
	tmp := filepath.Join(c.dir, ".new")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		c.t.Error(err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, tailFile)); err != nil {
		c.t.Error(err)
	}
}

// pollsSeen returns the stream requests so far.
func (c *chatServer) pollsSeen() []poll {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.polls)
}

// tailsBetween counts the tail fetches in [from, to).
func (c *chatServer) tailsBetween(from, to time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, at := range c.tailAt {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// reader runs an EventSource and keeps the rows it got.
type reader struct {
	es   *EventSource
	done chan struct{}
	stop context.CancelFunc

	mu  sync.Mutex
	got []string // "id type data" of each message and deletion
}

func startReader(t *testing.T, c *chatServer, es *EventSource) *reader {
	ctx, stop := context.WithCancel(context.Background())
	r := &reader{es: es, done: make(chan struct{}), stop: stop}
	es.URL = c.url
	es.OnEvent = func(ev sse.Event, _ time.Time) {
		if ev.Type == "message" || ev.Type == "delete" {
			r.mu.Lock()
			r.got = append(r.got, ev.ID+" "+ev.Type+" "+ev.Data)
			r.mu.Unlock()
		}
	}
	go func() {
		defer close(r.done)
		es.Run(ctx)
	}()
	t.Cleanup(func() {
		stop()
		<-r.done
	})
	return r
}

func (r *reader) gotRows() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor waits until ok holds, for at most ten seconds.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
	}
}

// rowsOf returns what a reader should have got of c's room: every row
// once, in id order.
func (c *chatServer) rowsOf() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var want []string
	for _, r := range c.rows {
		want = append(want, fmt.Sprintf("%d %s %s", r.id, r.typ, r.data))
	}
	return want
}

// hasAll waits until r has got every row of c, and checks it got each
// once, in order.
func hasAll(t *testing.T, c *chatServer, r *reader) {
	t.Helper()
	want := c.rowsOf()
	waitFor(t, fmt.Sprintf("the %d rows", len(want)), func() bool { return len(r.gotRows()) >= len(want) })
	if got := r.gotRows(); !slices.Equal(got, want) {
		t.Errorf("got %q, want every row once, in order: %q", got, want)
	}
}

func TestEventSourceTail(t *testing.T) {
	t.Parallel()

	// Between polls, what is new comes from the tail file: once, in
	// order, deletions too, without calling the program, and an
	// unchanged file is answered 304.
	t.Run("BetweenPolls", func(t *testing.T) {
		t.Parallel()
		c := newChatServer(t, time.Minute, 20*time.Millisecond, 50)
		for range 3 {
			c.post("message")
		}
		r := startReader(t, c, &EventSource{})
		hasAll(t, c, r)
		for i := range 8 {
			typ := "message"
			if i == 5 {
				typ = "delete"
			}
			c.post(typ)
			time.Sleep(30 * time.Millisecond)
		}
		hasAll(t, c, r)
		waitFor(t, "a 304", func() bool { return r.es.Stats().TailUnchanged > 0 })
		st := r.es.Stats()
		if g, w := st.Requests, 1; g != w {
			t.Errorf("%d stream requests, want %d: the tail brought everything after the first (%+v)", g, w, st)
		}
		if g, w := st.TailEvents, 8; g != w {
			t.Errorf("%d events from the tail, want %d (%+v)", g, w, st)
		}
		if st.TailRequests <= st.TailUnchanged || st.TailFailed > 0 || st.TailGaps > 0 {
			t.Errorf("want tail fetches answered 200 and 304, none failed, no gap: %+v (last error %q)", st, r.es.LastError())
		}
	})

	// A file that does not reach back to the last event id calls the
	// program at once, which sends what the file lacks.
	t.Run("Gap", func(t *testing.T) {
		t.Parallel()
		c := newChatServer(t, time.Minute, 20*time.Millisecond, 0)
		for range 3 {
			c.post("message")
		}
		c.mu.Lock()
		c.writeTail(0, 3)
		c.mu.Unlock()
		r := startReader(t, c, &EventSource{})
		hasAll(t, c, r)
		waitFor(t, "a tail fetch", func() bool { return r.es.Stats().TailRequests > 0 })
		for range 5 {
			c.post("message")
		}
		c.mu.Lock()
		c.writeTail(5, 8)
		c.mu.Unlock()
		hasAll(t, c, r)
		polls := c.pollsSeen()
		if g, w := len(polls), 2; g != w {
			t.Fatalf("%d stream requests, want %d", g, w)
		}
		if g, w := polls[1].lastID, "3"; g != w {
			t.Errorf("the second request's Last-Event-ID is %q, want %q", g, w)
		}
		if st := r.es.Stats(); st.TailGaps != 1 || st.TailEvents != 0 {
			t.Errorf("want one gap and no event from the tail: %+v", st)
		}
	})

	// A tail that fails stops the tail reads: the program is called
	// again at its retry:, not sooner, and no tail fetch comes between.
	for _, tc := range []struct {
		name string
		file []byte // nil: none (404)
	}{
		{"NotFound", nil},
		{"NoTailEvent", sse.AppendEvent(nil, 4, "message", "4")},
		{"NotEvents", []byte("<html>Not here</html>")},
		{"TailWithoutAfter", sse.AppendEvent(nil, 0, "tail", `{"room":"r"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const retry = 400 * time.Millisecond
			c := newChatServer(t, retry, 20*time.Millisecond, 0)
			c.post("message")
			if tc.file != nil {
				c.writeFile(tc.file)
			}
			r := startReader(t, c, &EventSource{})
			waitFor(t, "three stream requests", func() bool { return len(c.pollsSeen()) >= 3 })
			r.stop()
			<-r.done
			polls := c.pollsSeen()
			for i := range 2 {
				if g := polls[i+1].at.Sub(polls[i].at); g < retry {
					t.Errorf("stream request %d came %v after the one before, want at least the retry, %v", i+2, g, retry)
				}
				if g, w := c.tailsBetween(polls[i].at, polls[i+1].at), 1; g != w {
					t.Errorf("%d tail fetches between stream requests %d and %d, want %d", g, i+1, i+2, w)
				}
			}
			if st := r.es.Stats(); st.TailFailed < 2 || st.TailEvents != 0 || st.TailGaps != 0 {
				t.Errorf("want every tail fetch failed: %+v", st)
			}
			if r.es.LastTailError() == "" {
				t.Error("no tail error was kept")
			}
			if got, want := r.gotRows(), c.rowsOf(); !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}

	// Posts faster than the tail is read, a short file kept current by
	// the program, a short retry:: the stream, the tail and the gaps
	// between them bring every row once, in order.
	t.Run("Mixed", func(t *testing.T) {
		t.Parallel()
		c := newChatServer(t, 150*time.Millisecond, 20*time.Millisecond, 2)
		r := startReader(t, c, &EventSource{})
		for i := range 60 {
			typ := "message"
			if i%7 == 6 {
				typ = "delete"
			}
			c.post(typ)
			time.Sleep(8 * time.Millisecond)
		}
		hasAll(t, c, r)
		st := r.es.Stats()
		if st.Requests < 2 || st.TailEvents == 0 {
			t.Errorf("want rows from both the stream and the tail: %+v", st)
		}
		t.Logf("%+v", st)
	})
}

// TestEventSourceBounds checks that Run stops by itself when its stream
// requests are spent, makes no more tail fetches than its bound, and
// stops at once when its context ends.
func TestEventSourceBounds(t *testing.T) {
	t.Parallel()
	t.Run("Spent", func(t *testing.T) {
		t.Parallel()
		c := newChatServer(t, 50*time.Millisecond, 5*time.Millisecond, 10)
		c.post("message")
		es := &EventSource{URL: c.url, Connects: 4, TailFetches: 3}
		done := make(chan struct{})
		go func() {
			defer close(done)
			es.Run(context.Background())
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not stop by itself in 10 s")
		}
		st := es.Stats()
		if st.Requests != 4 || st.TailRequests != 3 {
			t.Errorf("want 4 stream requests and 3 tail fetches: %+v", st)
		}
	})
	t.Run("Context", func(t *testing.T) {
		t.Parallel()
		c := newChatServer(t, time.Minute, 10*time.Millisecond, 10)
		c.post("message")
		es := &EventSource{URL: c.url}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			es.Run(ctx)
		}()
		waitFor(t, "a tail fetch", func() bool { return es.Stats().TailRequests > 0 })
		stop()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("Run did not stop within a second of its context's end")
		}
	})
}

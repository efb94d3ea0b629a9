// Package contract holds the HTTP contract of post and stream as tests that
// run against any deployment: in process, as CGI children, over FastCGI on
// stdin or to a FastCGI daemon. Each hosting mode supplies a Start function
// and calls Run.
package contract

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/sse"
	"cgichat/internal/store"

	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // the tests read the database directly
)

// Deployment is one running pair of programs.
type Deployment struct {
	URL string // base URL: the programs answer at URL/cgi-bin/post and URL/cgi-bin/stream
	DB  string // CHAT_DB of the programs: a SQLite path or a server URL
	// WakeDir is CHAT_WAKE_DIR of the programs when set; "" is its
	// default, beside the SQLite file.
	WakeDir string

	jar http.CookieJar // Post's cookies: it keeps its nick claims, as a browser does
}

// client returns the HTTP client of Post, which keeps cookies.
func (d *Deployment) client() *http.Client {
	if d.jar == nil {
		d.jar, _ = cookiejar.New(nil)
	}
	return &http.Client{Jar: d.jar}
}

// Seed stores n messages in room straight into the database, faster than
// posting them, and returns them.
func (d *Deployment) Seed(t testing.TB, room string, n int) []chat.Message {
	t.Helper()
	st, err := store.Open(context.Background(), d.DB, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms := make([]chat.Message, n)
	for i := range ms {
		if ms[i], err = st.Insert(context.Background(), room, "seed", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		ms[i].Kind = "" // as clients see it: the JSON has no kind
	}
	return ms
}

// Start brings up a deployment with the given CHAT_* settings (CHAT_DB is
// chosen by Start) and stops it when the test ends.
type Start func(t *testing.T, env map[string]string) *Deployment

// PostURL returns the address of post.
func (d *Deployment) PostURL() string { return d.URL + "/cgi-bin/post" }

// StreamURL returns the address of stream with the given query.
func (d *Deployment) StreamURL(query url.Values) string {
	u := d.URL + "/cgi-bin/stream"
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}

// readAnswer reads an answer's body, failing the test when it did not
// arrive whole (a web server that lost the program's output cuts it).
func readAnswer(t testing.TB, res *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Errorf("the answer %d did not arrive whole: %v", res.StatusCode, err)
	}
	return b
}

// Post sends a JSON message and returns the stored message, failing the
// test unless the answer is 201.
func (d *Deployment) Post(t testing.TB, room, nick, text string) chat.Message {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"room": room, "nick": nick, "text": text})
	res, err := d.client().Post(d.PostURL(), "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer res.Body.Close()
	b := readAnswer(t, res)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("post: status %d, body %s; want 201", res.StatusCode, b)
	}
	var m chat.Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("post: body %s: %v", b, err)
	}
	return m
}

// Count returns how many messages the database holds.
func (d *Deployment) Count(t testing.TB) int {
	t.Helper()
	db := d.sqlDB(t, false)
	var n int
	if err := db.QueryRow("SELECT count(*) FROM messages").Scan(&n); err != nil {
		// The programs have not created the table yet (or, for SQLite,
		// the file).
		for _, missing := range []string{"no such table", "unable to open", "doesn't exist", "does not exist"} {
			if strings.Contains(err.Error(), missing) {
				return 0
			}
		}
		t.Fatalf("count messages: %v", err)
	}
	return n
}

// sqlDB opens the deployment's database for the test to read and change,
// as a moderator would: SQLite read-only unless write is set.
func (d *Deployment) sqlDB(t testing.TB, write bool) *sqlx.DB {
	t.Helper()
	var db *sqlx.DB
	var err error
	switch {
	case config.IsServerURL(d.DB):
		db, err = store.Connect(d.DB)
	case write:
		db, err = sqlx.Open("sqlite3", d.DB+"?_busy_timeout=10000")
	default:
		db, err = sqlx.Open("sqlite3", "file:"+d.DB+"?mode=ro")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Stream is an open event stream read in the background.
type Stream struct {
	Res *http.Response
	// FirstRetry is the retry: value in force at the first event or
	// comment, set once that has arrived: positive if retry: came first.
	FirstRetry int

	events chan sse.Event
	done   chan error
	cancel context.CancelFunc
	lastID atomic.Value // string: the last event id the reader saw
}

// LastID returns the stream's last event id, as EventSource would send it
// as Last-Event-ID on its next request.
func (s *Stream) LastID() string {
	id, _ := s.lastID.Load().(string)
	return id
}

// Open starts a GET of url with the given headers and fails the test unless
// it answers 200 with an event stream. It is closed when the test ends.
func Open(t testing.TB, url string, header http.Header) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("open stream: status %d, type %q, body %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	s := &Stream{Res: res, events: make(chan sse.Event, 4096), done: make(chan error, 1), cancel: cancel}
	go func() {
		r := sse.NewReader(bufio.NewReader(res.Body))
		for i := 0; ; i++ {
			ev, err := r.Next()
			s.lastID.Store(r.LastID())
			if err != nil {
				close(s.events)
				s.done <- err
				return
			}
			if i == 0 {
				s.FirstRetry = ev.Retry
			}
			s.events <- ev
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Close abandons the stream, as a browser tab that closes.
func (s *Stream) Close() {
	s.cancel()
	s.Res.Body.Close()
}

// Next returns the next event or comment, failing the test if none comes
// within d. ok is false when the stream has ended.
func (s *Stream) Next(t testing.TB, d time.Duration) (ev sse.Event, ok bool) {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
		return sse.Event{}, false
	}
}

// NextMessage skips comments and other events and returns the next chat
// message, failing the test if none comes within d.
func (s *Stream) NextMessage(t testing.TB, d time.Duration) chat.Message {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ev, ok := s.Next(t, time.Until(deadline))
		if !ok {
			t.Fatalf("stream ended while waiting for a message")
		}
		if ev.Type != "message" {
			continue
		}
		var m chat.Message
		if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
			t.Fatalf("message data %q: %v", ev.Data, err)
		}
		if ev.ID != "" && ev.ID != jsonInt(m.ID) {
			t.Fatalf("event id %q but message id %d", ev.ID, m.ID)
		}
		return m
	}
}

// NextOf skips to the next event of type typ, failing the test if none
// comes within d.
func (s *Stream) NextOf(t testing.TB, typ string, d time.Duration) sse.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ev, ok := s.Next(t, time.Until(deadline))
		if !ok {
			t.Fatalf("stream ended while waiting for a %q event", typ)
		}
		if ev.Type == typ && ev.Comment == "" {
			return ev
		}
	}
}

// Until reads events until one of type typ, returning the messages before
// it; it fails the test if the stream ends or d passes first.
func (s *Stream) Until(t testing.TB, typ string, d time.Duration) []chat.Message {
	t.Helper()
	deadline := time.Now().Add(d)
	var ms []chat.Message
	for {
		ev, ok := s.Next(t, time.Until(deadline))
		if !ok {
			t.Fatalf("stream ended before a %q event", typ)
		}
		switch ev.Type {
		case typ:
			return ms
		case "message":
			var m chat.Message
			if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
				t.Fatalf("message data %q: %v", ev.Data, err)
			}
			ms = append(ms, m)
		}
	}
}

// Rest reads to the end of the stream and returns its messages and
// heartbeats (": ping" comments), failing the test if it does not end
// within d.
func (s *Stream) Rest(t testing.TB, d time.Duration) (ms []chat.Message, pings int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ev, ok := s.Next(t, time.Until(deadline))
		if !ok {
			if err := <-s.done; err != io.EOF {
				t.Errorf("stream ended with %v, want a clean end after a whole event", err)
			}
			return ms, pings
		}
		switch {
		case ev.Comment == "ping":
			pings++
		case ev.Comment != "":
		case ev.Type == "message":
			var m chat.Message
			json.Unmarshal([]byte(ev.Data), &m)
			ms = append(ms, m)
		}
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cgichat/test/cgihost"

	_ "github.com/mattn/go-sqlite3" // the "sqlite3" driver, for moderating as from the shell
)

// basePath is where the chat lives on the test server: a user's folder, as
// on a shared host, so an absolute URL in the page would miss.
const basePath = "/~tester/chat/"

// setup says how a test wants its chat deployed.
type setup struct {
	// env holds CHAT_* settings for the programs, added to the defaults of
	// deploy (a fresh database, a 1 s heartbeat).
	env []string
	// holdBackStream makes the host hold every stream response back until
	// the program ends, as mod_fcgid does with its default output buffer.
	holdBackStream bool
	// postGate, if set, holds every post of a message from the page (one
	// with an Idempotency-Key; actions pass) until it can receive from it
	// (a closed gate lets all through), so a test sees a post on its way.
	postGate chan struct{}
	// pollEvery, if set, makes every stream response a poll, as a server
	// with no stream to spare answers (issue 12): the backlog, "ready" with
	// {"mode":"poll"}, this retry: and the end, at once.
	pollEvery time.Duration
}

// A deployment is a running chat: the page and the two programs under URL.
type deployment struct {
	URL      string // the page's folder, ending in "/"
	DB       string // the SQLite file (CHAT_DB)
	Tails    string // the folder of the rooms' tail files (tail/ beside cgi-bin/)
	requests *requestLog
	// streamDown, while set, makes the server drop every new stream
	// connection without an answer, as a host that is restarting would;
	// postDown does the same to posts (and actions).
	streamDown, postDown atomic.Bool
	// tailsHeld, while set, holds every request for a tail file until
	// the channel closes (see holdTails).
	tailsHeld atomic.Pointer[chan struct{}]
	// tailsFail is how many of the next requests for a tail file are
	// answered 503, as a busy host may.
	tailsFail atomic.Int32
	// streamsHeld, while set, holds every stream request until the
	// channel closes.
	streamsHeld atomic.Pointer[chan struct{}]
	// loseAnswers, while above 0, is how many more posts the program
	// stores and answers while the connection drops before its answer
	// leaves: the client sees no answer for a message that is stored.
	loseAnswers atomic.Int32
	// streamRefusal, while not 0, is the status every new stream request
	// gets instead of a stream (see refuseWith).
	streamRefusal atomic.Int32
	// postPage and streamPage, while set, are what every post or every
	// stream request gets instead of the program's answer: a page of the
	// host's, or of something between the browser and it (see answerWith).
	postPage, streamPage atomic.Pointer[hostPage]

	srv *httptest.Server

	// clients holds one cookie-keeping client per nick posting from Go,
	// so each keeps its nick claim as a browser would.
	clientsMu sync.Mutex
	clients   map[string]*http.Client
}

// client returns the HTTP client that posts as nick.
func (d *deployment) client(nick string) *http.Client {
	d.clientsMu.Lock()
	defer d.clientsMu.Unlock()
	if d.clients == nil {
		d.clients = map[string]*http.Client{}
	}
	c, ok := d.clients[nick]
	if !ok {
		jar, _ := cookiejar.New(nil)
		c = &http.Client{Jar: jar}
		d.clients[nick] = c
	}
	return c
}

// deploy starts a chat for t on 127.0.0.1 and stops it when t ends. It is
// the only function that knows how the chat is hosted: here Go's own CGI
// host (test/cgihost) runs the real built programs as CGI children, as
// cmd/devserver does. A real web server from test/hosts can take its
// place without changing any test.
//
// Each deployment has a chat folder of its own, laid out as deploy.sh
// lays it out: the programs in cgi-bin/, and beside it tail/, where they
// keep the rooms' tail files, which the server serves as static files.
func deploy(t *testing.T, s setup) *deployment {
	t.Helper()
	db := filepath.Join(t.TempDir(), "chat.db")
	chatDir := t.TempDir()
	tails := filepath.Join(chatDir, "tail")
	for _, dir := range []string{filepath.Join(chatDir, "cgi-bin"), tails} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	prog := func(name string) string {
		path := filepath.Join(chatDir, "cgi-bin", name)
		if err := linkOrCopy(filepath.Join(binDir, name), path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	env := append([]string{
		"CHAT_DB=" + db,
		// A short heartbeat lets a stream whose tab closed end quickly.
		"CHAT_HEARTBEAT_SECONDS=1",
		// The tests post faster than people do.
		"CHAT_RATE_LIMIT=off",
	}, s.env...)
	d := &deployment{DB: db, Tails: tails, requests: &requestLog{}}
	var stream http.Handler = cgihost.Handler(prog("stream"), env)
	if s.holdBackStream {
		stream = holdBack(stream)
	}
	if s.pollEvery > 0 {
		stream = asPoll(stream, s.pollEvery)
	}
	stream = dropWhile(&d.streamDown, stream)
	stream = holdWhile(&d.streamsHeld, stream)
	stream = refuseWith(&d.streamRefusal, stream)
	stream = answerWith(&d.streamPage, stream)
	mux := http.NewServeMux()
	var post http.Handler = cgihost.Handler(prog("post"), env)
	if s.postGate != nil {
		post = gated(post, s.postGate)
	}
	post = answerWith(&d.postPage, post)
	post = loseAnswer(&d.loseAnswers, post)
	post = dropWhile(&d.postDown, post)
	mux.Handle(basePath+"cgi-bin/post", post)
	mux.Handle(basePath+"cgi-bin/stream", stream)
	mux.Handle(basePath+"tail/", http.StripPrefix(basePath+"tail/", tailFiles(tails, &d.tailsHeld, &d.tailsFail)))
	mux.Handle(basePath, http.StripPrefix(basePath, http.FileServer(http.Dir(filepath.Join(repoRoot, "public")))))

	srv := httptest.NewServer(d.requests.wrap(mux))
	d.srv = srv
	t.Cleanup(func() {
		// Open streams end only when their connection goes.
		srv.CloseClientConnections()
		srv.Close()
	})
	d.URL = srv.URL + basePath
	return d
}

// linkOrCopy puts the file at from also at to: a hard link, or a copy
// where the two are on different file systems.
func linkOrCopy(from, to string) error {
	if os.Link(from, to) == nil {
		return nil
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// exec runs SQL on the deployment's database as a moderator would in the
// sqlite3 shell (a connection of its own, no wake-up for the streams) and
// returns once it is committed. The programs create the database: something
// must have been posted or streamed first.
func (d *deployment) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+d.DB+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("sqlite3 %s: %s: %v", d.DB, query, err)
	}
}

// closeIdleConnections closes the connections the browser keeps open
// between requests, as a server going down does. Otherwise, when a request
// on such a connection gets no answer, the browser sends it again at once
// on each other one it holds (up to six): tries of the network, not of the
// page.
func (d *deployment) closeIdleConnections() {
	d.srv.Config.SetKeepAlivesEnabled(false) // which closes the idle ones
	d.srv.Config.SetKeepAlivesEnabled(true)
}

// dropWhile serves h, except that while down is set it closes each new
// connection without a word: a network error, which EventSource retries.
func dropWhile(down *atomic.Bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !down.Load() {
			h.ServeHTTP(w, r)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		conn.Close()
	})
}

// plainHost is a name the browser resolves to 127.0.0.1 (startBrowser
// maps it). Unlike 127.0.0.1 and localhost, which browsers trust as if
// they were HTTPS, a page from it is an insecure context, like a page
// from a host without TLS: no Web Locks there, for example.
const plainHost = "plain-http.test"

// plainHTTP returns the deployment's URL under plainHost.
func (d *deployment) plainHTTP() string {
	return strings.Replace(d.URL, "127.0.0.1", plainHost, 1)
}

// post sends a message as another client than the page, and returns the
// stored message.
func (d *deployment) post(t *testing.T, room, nick, text string) message {
	t.Helper()
	m, err := d.send(room, nick, text)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// send is post for goroutines: it returns the error instead.
func (d *deployment) send(room, nick, text string) (message, error) {
	var m message
	status, body, err := d.postRaw(room, nick, text)
	if err != nil {
		return m, err
	}
	if status != http.StatusCreated {
		return m, fmt.Errorf("post %q to %s: status %d (%s), want 201", text, room, status, body)
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return m, fmt.Errorf("post %q: %v in %s", text, err, body)
	}
	return m, nil
}

// postRaw posts and returns the status and body, whatever they are.
func (d *deployment) postRaw(room, nick, text string) (int, []byte, error) {
	in, err := json.Marshal(map[string]string{"room": room, "nick": nick, "text": text})
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL+"cgi-bin/post", bytes.NewReader(in))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := d.client(nick).Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("post: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("post: %w", err)
	}
	return res.StatusCode, body, nil
}

// A message as post returns it and the stream sends it.
type message struct {
	ID   int64  `json:"id"`
	Room string `json:"room"`
	Nick string `json:"nick"`
	Text string `json:"text"`
	Time string `json:"time"`
}

// request is what the test server saw of one request.
type request struct {
	Path        string // below the chat's folder, e.g. "cgi-bin/stream"
	Query       url.Values
	LastEventID string // the Last-Event-ID header
	// Accept is the Accept header: EventSource sends exactly
	// "text/event-stream"; the page's fetch that reads why a stream
	// failed says it takes JSON or a page too (see tries).
	Accept string
	// IdempotencyKey is the Idempotency-Key header of a post, and Body
	// a post's body.
	IdempotencyKey string
	Body           []byte
	// IfNoneMatch is the If-None-Match header: the ETag of the copy the
	// browser has, which it asks the server to confirm.
	IfNoneMatch string
	At          time.Time
}

// resumesAfter returns the id a stream request resumes after: its
// Last-Event-ID header (an EventSource reconnecting by itself), else its
// lastEventId parameter (a new EventSource), else "".
func (r request) resumesAfter() string {
	if r.LastEventID != "" {
		return r.LastEventID
	}
	return r.Query.Get("lastEventId")
}

// requestLog records every request the test server receives.
type requestLog struct {
	mu   sync.Mutex
	list []request
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Method == http.MethodPost {
			body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<16))
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		l.mu.Lock()
		l.list = append(l.list, request{
			Path:        strings.TrimPrefix(r.URL.Path, basePath),
			Query:       r.URL.Query(),
			LastEventID: r.Header.Get("Last-Event-ID"),
			Accept:      r.Header.Get("Accept"),
			At:          time.Now(),
			// A post's key, as sent (a quoted string).
			IdempotencyKey: r.Header.Get("Idempotency-Key"),
			Body:           body,
			IfNoneMatch:    r.Header.Get("If-None-Match"),
		})
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// since returns the requests received from t0 on, oldest first, a line
// each: when (from t0), the path and query, and the ETag the browser had.
func (l *requestLog) since(t0 time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.list {
		if r.At.Before(t0) {
			continue
		}
		line := fmt.Sprintf("%6.2fs %s?%s", r.At.Sub(t0).Seconds(), r.Path, r.Query.Encode())
		if r.IfNoneMatch != "" {
			line += " If-None-Match: " + r.IfNoneMatch
		}
		out = append(out, line)
	}
	return out
}

// to returns the requests for path, oldest first.
func (l *requestLog) to(path string) []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []request
	for _, r := range l.list {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// streams returns the stream requests for room, oldest first, without
// the requests for older history (before=).
func (l *requestLog) streams(room string) []request {
	return slices.DeleteFunc(l.to("cgi-bin/stream"), func(r request) bool {
		return r.Query.Get("room") != room || r.Query.Has("before")
	})
}

// messagePosts returns the posts of messages (not actions) the page
// made, oldest first, each with its text.
func (l *requestLog) messagePosts() []postRequest {
	var out []postRequest
	for _, r := range l.to("cgi-bin/post") {
		var in struct{ Action, Room, Nick, Text string }
		if json.Unmarshal(r.Body, &in) != nil || in.Action != "" {
			continue
		}
		out = append(out, postRequest{request: r, Room: in.Room, Nick: in.Nick, Text: in.Text})
	}
	return out
}

// postRequest is a post of a message as the test server saw it.
type postRequest struct {
	request
	Room, Nick, Text string
}

// older returns the requests for older history of room, oldest first.
func (l *requestLog) older(room string) []request {
	return slices.DeleteFunc(l.to("cgi-bin/stream"), func(r request) bool {
		return r.Query.Get("room") != room || !r.Query.Has("before")
	})
}

// tries returns the stream requests for room that the page's EventSource
// made, oldest first: the page's tries to get a stream, without the
// requests that read why a try failed.
func (l *requestLog) tries(room string) []request {
	return slices.DeleteFunc(l.streams(room), func(r request) bool {
		return r.Accept != "text/event-stream"
	})
}

// loseAnswer serves h, except that while n is above 0 it takes one off
// for each post of a message with an Idempotency-Key (the page's, not its
// actions) and serves it to the program in full — the message is stored —
// but closes the connection instead of passing the answer on, as a
// connection that breaks just then does.
func loseAnswer(n *atomic.Int32, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Idempotency-Key") == "" {
			h.ServeHTTP(w, r)
			return
		}
		if n.Add(-1) < 0 {
			n.Add(1)
			h.ServeHTTP(w, r)
			return
		}
		held := &heldResponse{header: http.Header{}, ctx: r.Context()}
		h.ServeHTTP(held, r)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		conn.Close()
	})
}

// gated serves each post of a message from the page with h once it can
// receive from gate, and other requests at once.
func gated(h http.Handler, gate <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Idempotency-Key") == "" {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case <-gate:
			h.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	})
}

// holdBack serves h as a host that buffers whole responses would (mod_fcgid
// with its default FcgidOutputBufferSize, fcgiwrap, some proxies): nothing,
// not even the status line, leaves before the program has ended.
func holdBack(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held := &heldResponse{header: http.Header{}, ctx: r.Context()}
		h.ServeHTTP(held, r)
		for k, v := range held.header {
			w.Header()[k] = v
		}
		if held.status == 0 {
			held.status = http.StatusOK
		}
		w.WriteHeader(held.status)
		w.Write(held.body.Bytes())
	})
}

// heldResponse keeps a response in memory. Flush does nothing, as behind a
// buffering host; a write after the client left fails, so the CGI host
// ends the program then, as a real server does.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
	ctx    context.Context
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldResponse) Write(p []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	h.WriteHeader(http.StatusOK)
	return h.body.Write(p)
}

func (h *heldResponse) Flush() {}

// cloudLinuxPage is the page CloudLinux hosts answer with (508) when an
// account runs more requests at once than its plan's entry processes.
const cloudLinuxPage = `<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html><head>
<title>508 Resource Limit Is Reached</title>
</head><body>
<h1>Resource Limit Is Reached</h1>
The website is temporarily unable to service your request as it exceeded resource limit.
Please try again later.
</body></html>
`

// unavailableSentence and unavailableWait are what refuseWith answers a
// stream with for 503: a sentence of the chat's own, and a Retry-After.
const (
	unavailableSentence = "The chat is being updated; it is back in a minute."
	unavailableWait     = 3 // seconds
)

// refuseWith serves h, except that while status holds a status code it
// answers every stream request with that instead, as a host would: 508
// with CloudLinux's HTML page, 503 with a JSON sentence and a Retry-After.
func refuseWith(status *atomic.Int32, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := int(status.Load())
		switch code {
		case 0:
			h.ServeHTTP(w, r)
		case http.StatusServiceUnavailable:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", fmt.Sprint(unavailableWait))
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":%q}`+"\n", unavailableSentence)
		default:
			w.Header().Set("Content-Type", "text/html; charset=iso-8859-1")
			w.WriteHeader(code)
			io.WriteString(w, cloudLinuxPage)
		}
	})
}

// hostPage is an answer that does not come from the chat's programs.
type hostPage struct {
	Status int
	Type   string // Content-Type
	Body   string
}

// answerWith serves h, except that while page is set it answers every
// request with that page instead.
func answerWith(page *atomic.Pointer[hostPage], h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := page.Load()
		if p == nil {
			h.ServeHTTP(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", p.Type)
		w.WriteHeader(p.Status)
		io.WriteString(w, p.Body)
	})
}

// asPoll serves the stream program h as a server in poll mode answers: it
// passes the response on up to the end of its "ready" event, with retry:
// set to every and "ready" saying {"mode":"poll","retry":every in ms}, then
// ends it (the CGI
// host stops the program when the request's context ends).
func asPoll(h http.Handler, every time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		pw := &pollWriter{ResponseWriter: w, end: cancel, retry: every.Milliseconds()}
		h.ServeHTTP(pw, r.WithContext(ctx))
		pw.flushLines()
	})
}

// pollWriter rewrites a stream response line by line for asPoll.
type pollWriter struct {
	http.ResponseWriter
	end     context.CancelFunc
	retry   int64
	partial []byte // an unfinished line
	inReady bool   // within the "ready" event
	done    bool   // "ready" went out: the response is over
}

func (p *pollWriter) Write(b []byte) (int, error) {
	if p.done {
		return 0, io.ErrClosedPipe
	}
	p.partial = append(p.partial, b...)
	var out bytes.Buffer
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		switch {
		case strings.HasPrefix(line, "retry:"):
			line = fmt.Sprintf("retry: %d", p.retry)
		case line == "event: ready":
			p.inReady = true
		case p.inReady && strings.HasPrefix(line, "data:"):
			line = fmt.Sprintf(`data: {"mode":"poll","retry":%d}`, p.retry)
		case p.inReady && line == "":
			p.done = true
		}
		out.WriteString(line + "\n")
		if p.done {
			break
		}
	}
	if _, err := p.ResponseWriter.Write(out.Bytes()); err != nil {
		return 0, err
	}
	if p.done {
		p.end()
		return 0, io.ErrClosedPipe
	}
	return len(b), nil
}

// flushLines sends a last unfinished line, if the program ended first.
func (p *pollWriter) flushLines() {
	if !p.done && len(p.partial) > 0 {
		p.ResponseWriter.Write(p.partial)
	}
}

func (p *pollWriter) Flush() {
	if f, ok := p.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

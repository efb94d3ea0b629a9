package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/feed"
	"cgichat/internal/hosting"
	"cgichat/internal/identity"
	"cgichat/internal/store"
	"cgichat/internal/tail"
)

// Reconnection delays sent as retry:, and the longest wait of a batch
// response: below mod_fcgid's FcgidIOTimeout and nginx's
// fastcgi_read_timeout, since a buffering host forwards nothing meanwhile.
const (
	liveRetry     = time.Second
	batchRetry    = 50 * time.Millisecond
	batchLongPoll = 25 * time.Second
)

// NewStream returns the stream program's App.
func NewStream(env hosting.Env) *App { return newApp(buildStream, env) }

// streamHandler serves Server-Sent Events from the feed of one database.
type streamHandler struct {
	store *store.Store
	ids   *identity.Keeper
	feed  *feed.Feed
	log   *slog.Logger
	mode  hosting.Mode
}

func buildStream(ctx context.Context, db config.Database, env hosting.Env) (instance, error) {
	o, err := openStore(ctx, db, env)
	if err != nil {
		return nil, err
	}
	f, err := feed.Start(ctx, o.store, feed.Options{Poll: db.Poll, Heartbeat: db.HeartbeatFor(env.Mode.Concurrent()), Renew: db.Renew(), WakeDir: db.WakeDir, Log: env.Log})
	if err != nil {
		o.store.Close()
		return nil, err
	}
	if o.tails != nil { // a nil *tail.Dir would be a Tails that is not nil
		f.SetTails(o.tails, tail.Every)
	}
	return &streamHandler{store: o.store, ids: o.ids, feed: f, log: env.Log, mode: env.Mode}, nil
}

func (h *streamHandler) db() *store.Store { return h.store }

// errFileReplaced is why a stream on a replaced database file ended.
var errFileReplaced = errors.New("the database file was replaced")

func (h *streamHandler) Close() error {
	return errors.Join(h.feed.Close(), h.store.Close())
}

// parseStream reads a stream request: room, Last-Event-ID (header, else
// the lastEventId parameter), mode and the reader's nick, with the rule
// that ends the stream in that mode.
func parseStream(r *http.Request, cfg config.Config) (feed.Request, error) {
	q := r.URL.Query()
	req := feed.Request{Mode: cfg.Mode, History: cfg.History}
	var err error
	if req.Room, err = chat.ValidRoom(q.Get("room")); err != nil {
		return req, err
	}
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = q.Get("lastEventId")
	}
	if id != "" {
		req.After, err = strconv.ParseInt(id, 10, 64)
		if err != nil || req.After < 0 {
			return req, chat.Errorf(chat.EInvalid, "Last-Event-ID must be the id of a message (a whole number), not %q.", id)
		}
		req.Resume = true
	}
	switch m := q.Get("mode"); m {
	case "":
	case config.ModeLive, config.ModeBatch:
		req.Mode = m
	default:
		return req, chat.Errorf(chat.EInvalid, "mode must be %q or %q.", config.ModeLive, config.ModeBatch)
	}
	if nick := q.Get("nick"); nick != "" {
		if req.Nick, err = chat.ValidNick(nick); err != nil {
			return req, err
		}
	}
	if req.Reader, err = validReader(q.Get("reader")); err != nil {
		return req, err
	}
	req.Retry, req.Lifetime = liveRetry, cfg.Stream
	if req.Mode == config.ModeBatch {
		// A batch response ends with its first message; the browser
		// reconnects at once for the next.
		req.Retry, req.Lifetime, req.EndAfterMessages = batchRetry, min(batchLongPoll, cfg.Stream), true
	}
	return req, nil
}

// maxReaderLen bounds a reader id.
const maxReaderLen = 64

// validReader checks a reader id: the page's random id for one reader,
// up to 64 letters, digits, '-' and '_'; empty for clients that send none.
func validReader(id string) (string, error) {
	if len(id) > maxReaderLen {
		return "", chat.Errorf(chat.EInvalid, "reader must be at most %d characters.", maxReaderLen)
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return "", chat.Errorf(chat.EInvalid, "reader may only contain letters, digits, '-' and '_'.")
		}
	}
	return id, nil
}

// serve handles GET cgi-bin/stream: the reader's session, written as it
// comes until it ends or the client leaves.
//
// Under FastCGI the response outlives the handler (hosting.Detach): what
// the session has at once is written here, and the rest by a goroutine
// that runs only while there is something to write (parked), so an idle
// stream holds no goroutine and no stack. Elsewhere (CGI, the development
// server) the handler writes until the stream ends; it opens the session
// in a frame of its own (open) that is gone before the stream waits, so
// that the garbage collector can shrink the stack it grew to while
// opening (docs/performance.md).
func (h *streamHandler) serve(w http.ResponseWriter, r *http.Request, cfg config.Config) {
	ctx, sess, end := h.open(w, r, cfg)
	if sess == nil {
		return
	}
	// The response is detached after everything else, so that a stream
	// that cannot detach (CGI, the development server) undoes no more
	// than this and writes on here.
	p := &parked{h: h, sess: sess, end: end, release: holdInstance(r)}
	p.step = func() (string, bool) { return h.write(ctx, w, sess, false) }
	p.state.Store(parkRunning)
	p.stopWake = sess.Park(ctx, p.wake)
	var ok bool
	if p.finish, ok = hosting.Detach(w); ok {
		p.run()
		return
	}
	p.stopWake()
	p.release()
	defer end()
	reason, _ := h.write(ctx, w, sess, true)
	h.ended(sess, reason)
}

// States of a parked stream's writer.
const (
	parkIdle    int32 = iota // waiting for its session's wake-up, with no goroutine
	parkRunning              // a goroutine writes
	parkAgain                // a goroutine writes, and the session woke meanwhile
	parkEnded
)

// parked is a stream whose response outlives its handler (hosting.Detach):
// its session calls wake when it may have something to send, and a
// goroutine runs to write it, only then, one at a time.
type parked struct {
	h        *streamHandler
	sess     *feed.Session
	step     func() (reason string, done bool) // writes what the session has (write)
	end      func()                            // releases what the session holds
	finish   func()                            // ends the response
	release  func()                            // lets the database's handler close
	stopWake func()
	state    atomic.Int32
	closed   sync.Once
}

// wake has the stream's writer run, unless it runs already: then it runs
// once more. It never waits.
func (p *parked) wake() {
	for {
		switch p.state.Load() {
		case parkIdle:
			if p.state.CompareAndSwap(parkIdle, parkRunning) {
				go p.run()
				return
			}
		case parkRunning:
			if p.state.CompareAndSwap(parkRunning, parkAgain) {
				return
			}
		default: // parkAgain, parkEnded
			return
		}
	}
}

// run writes what the session has until it has nothing more for now,
// then lets its goroutine end; or until the stream ends, which it then
// closes. A panic ends the stream, logged, and never the process.
func (p *parked) run() {
	defer func() {
		if v := recover(); v != nil {
			p.h.log.Error("stream: panic", "panic", v, "stack", string(debug.Stack()))
			p.close("panic")
		}
	}()
	for {
		reason, done := p.step()
		if done {
			p.close(reason)
			return
		}
		if p.state.CompareAndSwap(parkRunning, parkIdle) {
			return
		}
		p.state.Store(parkRunning) // it was parkAgain
	}
}

// close ends the stream: no more wake-ups, the session's release, the
// end of the response.
func (p *parked) close(reason string) {
	p.closed.Do(func() {
		p.state.Store(parkEnded)
		defer p.release()
		defer p.finish()
		p.stopWake()
		p.h.ended(p.sess, reason)
		p.end()
	})
}

// open checks the request and opens its session, with the headers of an
// event stream sent; sess is nil when it answered otherwise. end releases
// what the session holds.
//
//go:noinline
func (h *streamHandler) open(w http.ResponseWriter, r *http.Request, cfg config.Config) (ctx context.Context, sess *feed.Session, end func()) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, h.log, "GET, HEAD")
		return
	}
	if err := checkHost(r, cfg); err != nil {
		fail(w, r, h.log, err)
		return
	}
	if r.URL.Query().Has("before") {
		h.serveHistory(w, r)
		return
	}
	req, err := parseStream(r, cfg)
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	if r.Method == http.MethodHead {
		// HEAD is safe: it opens no stream, so it neither counts against
		// the caps nor ends the reader's stream.
		streamHeaders(w)
		return
	}
	// The reader is shown under their nick only if nobody else holds it;
	// the address counts against the cap on streams.
	if req.Nick != "" {
		req.NickKey = identity.Key(req.Nick)
		req.Held = h.ids.Read(r).Held(req.NickKey)
		req.NickHold = cfg.NickHold
	}
	req.Addr, req.Cap = clientID(r, cfg), cfg.StreamsPerClient
	req.Budget = cfg.StreamBudget(h.mode.Concurrent())
	req.Started = hosting.RequestStart(h.mode)
	// A stream on a database file that was replaced ends, and its reader
	// resumes on the file at the path.
	ctx, cancel := context.WithCancelCause(r.Context())
	stop := context.AfterFunc(h.store.Replaced(), func() { cancel(errFileReplaced) })
	sess, err = h.feed.Open(ctx, req)
	if err != nil {
		stop()
		cancel(nil)
		fail(w, r, h.log, err)
		return nil, nil, nil
	}
	streamHeaders(w)
	return ctx, sess, func() {
		sess.Close()
		stop()
		cancel(nil)
	}
}

// ended logs why a stream ended.
func (h *streamHandler) ended(sess *feed.Session, reason string) {
	req := sess.Request()
	h.log.Debug("stream ended", "room", req.Room, "mode", req.Mode, "reason", reason,
		"seconds", sess.Elapsed().Seconds(), "messages", sess.Sent())
}

// streamHeaders answers 200 with the headers of an event stream.
func streamHeaders(w http.ResponseWriter) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	secure(hdr)
	w.WriteHeader(http.StatusOK)
}

// writeTimeout bounds one write to the client: a reader that reads
// nothing for this long is disconnected, and resumes from its
// Last-Event-ID when it reads again. (Under CGI the web server holds the
// connection, and the deadline cannot be set.)
const writeTimeout = 30 * time.Second

// write writes what the session gives until it ends or a write fails, and
// returns why it stopped, with done set. Unless wait is set it also
// returns, with done unset, when the session has nothing more to give
// yet (feed.ErrWait).
func (h *streamHandler) write(ctx context.Context, w http.ResponseWriter, sess *feed.Session, wait bool) (reason string, done bool) {
	f, _ := w.(http.Flusher)
	rc := http.NewResponseController(w)
	next := sess.Next
	if !wait {
		next = sess.TryNext
	}
	for {
		chunk, err := next(ctx)
		if len(chunk) > 0 {
			rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := flush(w, f, chunk); err != nil {
				return writeFailed(ctx, err), true
			}
		}
		switch {
		case errors.Is(err, feed.ErrWait):
			return "", false
		case errors.Is(err, io.EOF):
			return sess.Reason(), true
		case err != nil:
			h.log.Warn("stream: reading the database failed", "err", err)
			return sess.Reason(), true
		}
	}
}

// writeFailed says why a stream's write failed: the request's end when
// the write failed because of it (the web server closed the connection or
// aborted the request between the chunk's write and its flush, as the
// session says when it sees that first), else the client is gone.
func writeFailed(ctx context.Context, err error) string {
	cause := context.Cause(ctx)
	switch {
	case cause == nil || !errors.Is(err, cause):
		return "client gone"
	case errors.Is(cause, context.Canceled):
		return "shutdown"
	}
	return cause.Error()
}

// flush writes b and flushes it to the client. Go's CGI and FastCGI
// writers drop the error of a flush, but keep it: an empty write right
// after reports it, so a departed client is noticed at the first failed
// flush, not a heartbeat later.
func flush(w http.ResponseWriter, f http.Flusher, b []byte) error {
	if _, err := w.Write(b); err != nil {
		return err
	}
	if f != nil {
		f.Flush()
	}
	_, err := w.Write(nil)
	return err
}

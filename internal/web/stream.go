package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
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
	var dl writeDeadline
	var rest []byte // what a step that would have waited left to write
	owed := false   // rest, and a flush, are to be written first
	p.step = func(try bool) (reason string, done, blocked bool) {
		if owed {
			owed = false
			if err := flush(w, nil, rest); err != nil {
				return writeFailed(ctx, err), true, false
			}
			rest = nil
		}
		var left *[]byte
		if try {
			left = &rest
		}
		reason, done, blocked = h.write(ctx, w, sess, &dl, false, left)
		owed = blocked
		return reason, done, blocked
	}
	p.state.Store(parkRunning)
	p.stopWake = sess.Park(ctx, p.wake)
	var ok bool
	if p.finish, ok = hosting.Detach(w); ok {
		p.run(false)
		return
	}
	p.stopWake()
	p.release()
	defer end()
	reason, _, _ := h.write(ctx, w, sess, &dl, true, nil)
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
	step     func(try bool) (reason string, done, blocked bool) // writes what the session has (write)
	end      func()                                             // releases what the session holds
	finish   func()                                             // ends the response
	release  func()                                             // lets the database's handler close
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
				writers.run(p)
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
// then lets its goroutine go; or until the stream ends, which it then
// closes. With try set it runs on one of the writers, and waits for
// nothing: a write that would wait, and the stream's end (which writes
// and may wait), go on on a goroutine of the stream's own. A panic ends
// the stream, logged, and never the process.
func (p *parked) run(try bool) {
	defer func() {
		if v := recover(); v != nil {
			p.h.log.Error("stream: panic", "panic", v, "stack", string(debug.Stack()))
			if try {
				go p.close("panic")
			} else {
				p.close("panic")
			}
		}
	}()
	for {
		reason, done, blocked := p.step(try)
		switch {
		case blocked:
			go p.run(false)
			return
		case done && try:
			go p.close(reason)
			return
		case done:
			p.close(reason)
			return
		}
		if p.state.CompareAndSwap(parkRunning, parkIdle) {
			return
		}
		p.state.Store(parkRunning) // it was parkAgain
	}
}

// writerQueue bounds the streams waiting for a writer: past it, a stream
// that woke writes on a goroutine of its own.
const writerQueue = 1 << 14

// writerPool runs the writes of parked streams that woke, on a goroutine
// per processor instead of one per stream and message: a message to ten
// thousand streams started ten thousand goroutines, and starting and
// scheduling them was a quarter of the stream daemon's work
// (docs/performance.md). A stream whose write would wait (its reader
// reads slowly, or not at all) goes on on a goroutine of its own, so a
// writer never waits for one.
type writerPool struct {
	size  int // writers; GOMAXPROCS when 0
	queue int // streams that may wait for one
	once  sync.Once
	q     chan *parked
}

// writers serves every stream of the process, of every database: its
// goroutines, as many as GOMAXPROCS at the first wake-up, start then and
// live as long as the process.
var writers = writerPool{queue: writerQueue}

// run has a writer run p, or a goroutine of its own when every writer
// is far behind.
func (wp *writerPool) run(p *parked) {
	wp.once.Do(func() {
		wp.q = make(chan *parked, wp.queue)
		size := wp.size
		if size == 0 {
			size = runtime.GOMAXPROCS(0)
		}
		for range size {
			go func() {
				for p := range wp.q {
					p.run(true)
				}
			}()
		}
	})
	select {
	case wp.q <- p:
	default:
		go p.run(false)
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
// nothing for this long (less deadlineSlack at most) is disconnected, and
// resumes from its Last-Event-ID when it reads again. (Under CGI the web
// server holds the connection, and the deadline cannot be set.) A
// variable for tests.
var writeTimeout = 30 * time.Second

// deadlineSlack is how far a stream's write deadline may fall behind
// writeTimeout from now before it is set again. Setting a deadline moves
// a timer among every connection's; set at every write, in a busy room it
// was an eighth of the stream daemon's work (docs/performance.md), and one
// set a little earlier serves as well. A variable for tests.
var deadlineSlack = 5 * time.Second

// writeDeadline is the deadline a stream last set for its writes.
type writeDeadline struct{ at time.Time }

// extend sets the write deadline writeTimeout after now, unless the one
// set last is still at least writeTimeout - deadlineSlack away: every
// write then has between those two to finish.
func (d *writeDeadline) extend(rc *http.ResponseController, now time.Time) {
	if d.at.Sub(now) >= writeTimeout-deadlineSlack {
		return
	}
	d.at = now.Add(writeTimeout)
	rc.SetWriteDeadline(d.at)
}

// write writes what the session gives until it ends or a write fails, and
// returns why it stopped, with done set. Unless wait is set it also
// returns, with done unset, when the session has nothing more to give
// yet (feed.ErrWait).
//
// With left set, a chunk is written only as far as it goes without
// waiting (hosting.TryWrite): when it does not all go, write returns with
// blocked set, and what is still to be written (with a flush, by a writer
// that may wait) in *left, which stays valid until the session is called
// again. It also returns blocked, with nothing left, before a call to the
// session that would read the database (feed.Session.Reads).
func (h *streamHandler) write(ctx context.Context, w http.ResponseWriter, sess *feed.Session, dl *writeDeadline, wait bool, left *[]byte) (reason string, done, blocked bool) {
	f, _ := w.(http.Flusher)
	rc := http.NewResponseController(w)
	next := sess.Next
	if !wait {
		next = sess.TryNext
	}
	for {
		if left != nil && sess.Reads() {
			// A writer that must not wait leaves the database to the
			// stream's own goroutine.
			*left = nil
			return "", false, true
		}
		chunk, err := next(ctx)
		if len(chunk) > 0 {
			dl.extend(rc, time.Now())
			if left != nil {
				// A chunk comes without an error (Session.Reads).
				n, err := hosting.TryWrite(w, chunk)
				switch {
				case errors.Is(err, hosting.ErrWouldBlock):
					*left = chunk[n:]
					return "", false, true
				case err != nil:
					return writeFailed(ctx, err), true, false
				}
			} else if err := flush(w, f, chunk); err != nil {
				return writeFailed(ctx, err), true, false
			}
		}
		switch {
		case errors.Is(err, feed.ErrWait):
			return "", false, false
		case errors.Is(err, io.EOF):
			return sess.Reason(), true, false
		case err != nil:
			h.log.Warn("stream: reading the database failed", "err", err)
			return sess.Reason(), true, false
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

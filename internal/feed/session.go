package feed

import (
	"context"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/sse"
	"cgichat/internal/store"
)

// SSE event types a session sends besides the feed's.
const (
	// EventReady follows the backlog, so a page can tell a stream that
	// delivers from one a host is holding back. It has no id.
	EventReady = "ready"
	// EventTrimmed tells a resuming client that messages after its
	// Last-Event-ID were removed by retention: it gets what is left.
	EventTrimmed = "trimmed"
)

// openingPad follows retry: so that every response starts with more than
// a few dozen bytes. Apache's mod_deflate, when it is configured for event
// streams (SetOutputFilter DEFLATE, "compress all content" on shared
// hosts), reads the start of a CGI response before it even looks at
// no-gzip; a shorter opening (an empty room) would wait there for several
// heartbeats. 2 KiB is the customary SSE padding for buffering proxies.
var openingPad = strings.Repeat(" ", 2048)

// backlogPage bounds one read of missed messages, and chunkBytes how much
// a session puts together before it is written: a reader that does not
// read holds at most one page and one chunk, however long the backlog.
const (
	backlogPage = 100
	chunkBytes  = 64 << 10
)

// Request is what one reader's stream asks for, with the rule that ends
// it.
type Request struct {
	Room    string
	After   int64 // the Last-Event-ID, when Resume
	Resume  bool
	History int    // messages sent on first join, without Resume
	Mode    string // named in the ready event (live, batch; poll when granted so)
	// Tail, for a poll, is the URL of the room's tail file (relative to
	// the stream's), and TailEvery how often to read it; "" when the host
	// keeps none (see package tail).
	Tail      string
	TailEvery time.Duration

	// Retry is the reconnection delay sent first (retry:).
	Retry time.Duration
	// Lifetime is the longest the stream lasts.
	Lifetime time.Duration
	// EndAfterMessages ends the stream as soon as it sent a message, the
	// backlog's or a new one (batch mode: the browser reconnects).
	EndAfterMessages bool

	// Budget is how many stream requests the host may hold at once (0:
	// no budget): live streams, but for a quarter kept for polls. Past it
	// the request is answered as a poll: what is pending, ready with mode
	// poll and a retry: that keeps the pollers' requests within the
	// budget, then the end.
	Budget int
	// Started is when the request began to cost the host: for a CGI
	// program, when its process started. A poll's cost is measured from
	// it.
	Started time.Time

	// The reader, for the streams table: who (Nick; shown only when
	// NickKey is free or held, by Held, within NickHold), which reader
	// (Reader, the page's id: a newer stream of the same reader ends this
	// one) and from where (Addr, which may hold Cap open streams; 0 is no
	// cap).
	Nick     string
	NickKey  string
	Held     []int64
	NickHold time.Duration
	Reader   string
	Addr     string
	Cap      int
}

// ModePoll names, in the ready event, a request answered at once because
// the host's budget of live streams was full.
const ModePoll = "poll"

// Poll intervals. The pollers of a host together keep, on average, a
// pollShare-th of the budget's reserve for polls (store.PollReserve) busy,
// going by what their polls took from their programs' start
// (firstPollCost before any is known): the rest is for what a poll costs
// the host beyond its program (the web server's fork and relay, the
// program's exit, all of it much slower on a busy machine; see
// docs/deploy.md) and for pollers that come together. Each polls at most
// once a second and at least every 30 s, or every 60 s when it reads the
// room's tail file in between (its polls then only keep it present and
// find it a live stream). Each interval is spread by a fifth either way,
// so that pollers do not keep coming together.
const (
	pollShare     = 6
	firstPollCost = 50 * time.Millisecond
	pollMin       = time.Second
	pollMax       = 30 * time.Second
	tailPollMax   = 60 * time.Second
)

// PollWindow is how long a poll counts its reader as polling and present:
// longer than the longest poll interval.
const PollWindow = tailPollMax + 10*time.Second

// pollRetry returns the retry: for one poll among pollers whose polls take
// cost each, on a host whose budget keeps reserve requests for polls, while
// busy other polls run, at most longest. When the polls running fill the
// reserve by the programs' own measure (a slow or crowded machine stretches
// every request), the interval grows with them.
func pollRetry(pollers int, cost time.Duration, reserve, busy int, longest time.Duration) time.Duration {
	if cost <= 0 {
		cost = firstPollCost
	}
	reserve = max(reserve, 1)
	d := pollShare * time.Duration(pollers) * cost / time.Duration(reserve)
	if busy >= reserve {
		d = d * time.Duration(busy+1) / time.Duration(reserve)
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*mathrand.Float64()))
	return min(max(d, pollMin), longest)
}

// Session is one reader's stream: its row in the streams table, its
// subscription (taken before the backlog is read, so nothing falls in a
// gap), the backlog, and then the live frames, each message sent once, in
// id order. Next gives the bytes to write; Close ends it.
type Session struct {
	f    *Feed
	req  Request
	row  int64
	sub  *Sub
	poll bool // granted as a poll: ends after the backlog
	// superseded is closed when the reader opened a newer stream.
	superseded chan struct{}

	first   []chat.Message // the backlog's first page, read by Open
	trimmed int64          // the room's highest pruned id, when resuming
	// pending is the rest of a page read but not yet put in a chunk.
	pending []chat.Message

	state    sessionState
	buf      []byte
	after    int64 // highest message id sent
	sent     int   // messages sent
	reason   string
	started  time.Time
	end      *time.Timer   // the lifetime's, which closes expired
	expired  chan struct{} // closed when the lifetime is over
	catching bool          // the subscription lagged: read pages until caught up

	// notify, when set (Park), is called when there may be more to give.
	notify atomic.Pointer[func()]
}

type sessionState int

const (
	stateOpening sessionState = iota
	stateBacklog
	stateReady
	stateLive
	stateEnded
)

// Open starts a reader's session: it records the stream (refused when its
// address holds req.Cap streams), subscribes to the room, and reads the
// first page of the backlog, so that a database error can still be told
// before anything is written.
func (f *Feed) Open(ctx context.Context, req Request) (*Session, error) {
	g, err := f.store.OpenStream(ctx, store.StreamInput{
		Owner: f.owner, Room: req.Room, Nick: req.Nick, NickKey: req.NickKey, Held: req.Held,
		NickHold: req.NickHold, Reader: req.Reader, Host: f.host, Addr: req.Addr, Cap: req.Cap,
		Budget: req.Budget, Stale: f.stale, PollWindow: PollWindow,
	})
	if err != nil {
		return nil, err
	}
	if g.Superseded > 0 && f.wakeOthers != nil {
		// The reader's older streams, wherever they are, end at their
		// process's next wake-up.
		f.wakeOthers()
	}
	if req.Started.IsZero() {
		req.Started = time.Now()
	}
	s := &Session{f: f, req: req, row: g.ID, after: req.After, started: req.Started, superseded: make(chan struct{})}
	if g.Poll {
		s.poll = true
		longest := pollMax
		if f.tails != nil {
			// Without a tail the reader polls as before: nothing is lost.
			if s.req.Tail, err = f.tails.Ensure(ctx, req.Room); err != nil {
				f.tailFailed(err)
			} else if s.req.Tail != "" {
				s.req.TailEvery, longest = f.tailEvery, tailPollMax
			}
		}
		s.req.Mode, s.req.Retry = ModePoll, pollRetry(g.Pollers, g.PollCost, store.PollReserve(req.Budget), g.PollsBusy, longest)
	} else {
		f.mu.Lock()
		f.live[s.row] = s
		f.mu.Unlock()
	}
	if s.sub, err = f.Subscribe(ctx, req.Room); err != nil {
		s.Close()
		return nil, err
	}
	if req.Resume {
		s.first, err = f.store.After(ctx, req.Room, req.After, backlogPage)
		if err == nil {
			s.trimmed, err = f.store.TrimmedThrough(ctx, req.Room)
		}
	} else {
		s.first, err = f.store.Latest(ctx, req.Room, req.History)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close ends the session: it unsubscribes and marks the stream's row
// ended, also after a shutdown cancelled the request.
func (s *Session) Close() {
	if s.sub != nil {
		s.f.Unsubscribe(s.sub)
	}
	s.f.mu.Lock()
	delete(s.f.live, s.row)
	s.f.mu.Unlock()
	if s.end != nil {
		s.end.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.f.store.CloseStream(ctx, s.row, time.Since(s.req.Started)); err != nil {
		s.f.log.Warn("stream: closing its row failed", "err", err)
	}
}

// Reason says why the session ended, once Next returned io.EOF.
func (s *Session) Reason() string { return s.reason }

// Sent returns how many messages the session sent.
func (s *Session) Sent() int { return s.sent }

// Request returns what the session's reader asked for.
func (s *Session) Request() Request { return s.req }

// Elapsed returns how long the session has run.
func (s *Session) Elapsed() time.Duration { return time.Since(s.started) }

// Next returns the next bytes to write, and io.EOF once the stream has
// ended by its rule or ctx ended (Reason says which), or the error that
// ended it when the database failed.
// The bytes are valid until the next call: write them, flush, and call
// again. In order: retry: and the opening, the backlog page by page, the
// ready event with who is in the room, then live messages, deletions,
// presence changes and heartbeats as they come.
func (s *Session) Next(ctx context.Context) ([]byte, error) { return s.next(ctx, true) }

// ErrWait is TryNext's answer when the session has nothing to give yet.
var ErrWait = errors.New("feed: nothing to send yet")

// TryNext is Next without the wait: when the live stream has nothing to
// give yet it returns ErrWait, and the caller tries again once Park's
// function was called. (Reading the backlog and the database still takes
// the time it takes.)
func (s *Session) TryNext(ctx context.Context) ([]byte, error) { return s.next(ctx, false) }

// Reads reports whether the session's next TryNext reads the database
// before it returns: a page of the backlog or of the messages
// its reader fell behind by, or the presence the ready event gives. A
// writer that must not wait leaves such a call to a goroutine that may.
// TryNext reads nothing otherwise; a call that returns bytes returns no
// error, and an ended session returns its end again at every call.
func (s *Session) Reads() bool {
	if len(s.pending) > 0 {
		return false
	}
	switch s.state {
	case stateBacklog, stateReady:
		return true
	case stateLive:
		return s.catching
	}
	return false
}

// Park has fn called whenever the session may have something new for
// TryNext: a frame or heartbeat for its room, a newer stream of its
// reader, the end of its lifetime or of ctx. fn runs on the feed's
// goroutines and timers, so it must not block or call the session; it may
// be called when there is nothing new, and several calls may come for one
// thing. What happened before Park is not announced: call TryNext after
// it. stop ends the calls; call it before Close.
//
// A stream's writer can then wait without a goroutine of its own, which
// ten thousand idle streams would each hold.
func (s *Session) Park(ctx context.Context, fn func()) (stop func()) {
	s.notify.Store(&fn)
	s.sub.notify.Store(&fn)
	stopCtx := context.AfterFunc(ctx, fn)
	return func() {
		stopCtx()
		s.sub.notify.Store(nil)
		s.notify.Store(nil)
	}
}

// smallBuf is the most a stream keeps of its buffer between writes.
const smallBuf = 1024

// smallBufs lends sessions driven by TryNext their buffer while they
// write, so that one that waits holds none.
var smallBufs = sync.Pool{New: func() any { b := make([]byte, 0, smallBuf); return &b }}

// releaseBuf gives the session's buffer back to smallBufs: the bytes it
// held were written before TryNext was called again.
func (s *Session) releaseBuf() {
	if s.buf != nil && cap(s.buf) <= smallBuf {
		b := s.buf[:0]
		smallBufs.Put(&b)
	}
	s.buf = nil
}

// poke calls Park's function, if any.
func (s *Session) poke() {
	if fn := s.notify.Load(); fn != nil {
		(*fn)()
	}
}

// next is Next, waiting for the live stream's next frames when wait is
// set, and returning ErrWait otherwise.
func (s *Session) next(ctx context.Context, wait bool) ([]byte, error) {
	// An idle stream keeps no big buffer: the opening (2 KiB of padding,
	// the backlog) is not kept.
	if cap(s.buf) > smallBuf {
		s.buf = nil
	} else {
		s.buf = s.buf[:0]
	}
	if s.buf == nil && !wait {
		s.buf = (*smallBufs.Get().(*[]byte))[:0]
	}
	if len(s.pending) > 0 {
		s.emit()
		return s.buf, nil
	}
	switch s.state {
	case stateOpening:
		s.opening()
		return s.buf, nil
	case stateBacklog:
		if err := s.page(ctx); err != nil {
			return s.fail("backlog read failed", err)
		}
		if len(s.buf) > 0 || s.state == stateBacklog {
			return s.buf, nil
		}
		fallthrough
	case stateReady:
		s.ready(ctx)
		return s.buf, nil
	case stateLive:
		return s.live(ctx, wait)
	}
	return nil, io.EOF
}

// opening adds retry:, the padding, the trim notice and the first page.
func (s *Session) opening() {
	s.buf = sse.AppendRetry(s.buf, s.req.Retry.Milliseconds())
	s.buf = sse.AppendComment(s.buf, openingPad)
	if s.req.After < s.trimmed {
		// Its id moves the client's Last-Event-ID past the gap, so the
		// next resume does not say it again. %q quotes a room as JSON
		// would: rooms are plain ASCII.
		s.buf = sse.AppendEvent(s.buf, s.trimmed, EventTrimmed, fmt.Sprintf(`{"room":%q,"through":%d}`, s.req.Room, s.trimmed))
		s.after = s.trimmed
	}
	s.state = stateReady
	if s.req.Resume && len(s.first) == backlogPage {
		s.state = stateBacklog
	}
	s.pending, s.first = s.first, nil
	s.emit()
}

// page adds the next page of messages after the last one sent, and moves
// on when it was the last page.
func (s *Session) page(ctx context.Context) error {
	ms, err := s.f.store.After(ctx, s.req.Room, s.after, backlogPage)
	if err != nil {
		return err
	}
	s.pending = ms
	s.emit()
	if len(ms) < backlogPage {
		if s.state == stateBacklog {
			s.state = stateReady
		}
		s.catching = false
	}
	return nil
}

// ready adds the ready event and who is in the room, and starts the live
// part; a stream that ends after messages ends here when the backlog had
// some.
func (s *Session) ready(ctx context.Context) {
	if s.req.Tail != "" {
		s.buf = sse.AppendEvent(s.buf, 0, EventReady, fmt.Sprintf(`{"mode":%q,"retry":%d,"tail":%q,"every":%d}`,
			s.req.Mode, s.req.Retry.Milliseconds(), s.req.Tail, s.req.TailEvery.Milliseconds()))
	} else {
		s.buf = sse.AppendEvent(s.buf, 0, EventReady, fmt.Sprintf(`{"mode":%q,"retry":%d}`, s.req.Mode, s.req.Retry.Milliseconds()))
	}
	if nicks, err := s.f.store.Presence(ctx, s.req.Room, s.f.stale, PollWindow); err == nil {
		fr := EncodePresence(s.req.Room, nicks)
		s.frame(&fr)
	} else {
		s.f.log.Warn("stream: reading presence failed", "err", err)
	}
	s.state = stateLive
	if (s.poll || s.req.EndAfterMessages) && !s.req.Resume && s.sent == 0 {
		// A first request that ends (batch, poll) in a room with nothing
		// to show ends at once, as if it had sent the history: a host
		// that holds responses back would otherwise keep even the ready
		// event back for a whole long poll. An id without data sets the
		// client's Last-Event-ID without an event, so its next request
		// resumes after what was pruned, waiting for what comes next.
		through, err := s.f.store.TrimmedThrough(ctx, s.req.Room)
		if err != nil {
			s.f.log.Warn("stream: reading the trim failed", "err", err)
		}
		s.buf = fmt.Appendf(s.buf, "id: %d\n\n", through)
		s.state, s.reason = stateEnded, "empty room"
		return
	}
	switch {
	case s.poll:
		s.state, s.reason = stateEnded, "polled"
		return
	case s.req.EndAfterMessages && s.sent > 0:
		s.state, s.reason = stateEnded, "backlog sent"
		return
	}
	s.expired = make(chan struct{})
	s.end = time.AfterFunc(s.req.Lifetime, func() {
		close(s.expired)
		s.poke()
	})
}

// What a live session waits for.
type event int

const (
	eventNone       event = iota // nothing yet (TryNext)
	eventDone                    // the request's context ended
	eventSuperseded              // the reader opened a newer stream
	eventExpired                 // the lifetime is over
	eventWake                    // the subscription has frames or a heartbeat
)

// await returns what happened, waiting for it when wait is set.
func (s *Session) await(ctx context.Context, wait bool) event {
	if wait {
		select {
		case <-ctx.Done():
			return eventDone
		case <-s.superseded:
			return eventSuperseded
		case <-s.expired:
			return eventExpired
		case <-s.sub.Wake():
			return eventWake
		}
	}
	// Without a wait, each channel is looked at on its own, which takes no
	// lock while it is open and empty; a select over all four locks every
	// one, and was an eighth of the stream daemon's work in a busy room
	// (docs/performance.md). The order decides only between things that
	// happened together, as the select's chance would.
	switch {
	case ready(ctx.Done()):
		return eventDone
	case ready(s.superseded):
		return eventSuperseded
	case ready(s.expired):
		return eventExpired
	case ready(s.sub.Wake()):
		return eventWake
	}
	return eventNone
}

// ready receives from c if it can without waiting: a value, or c's close.
// A nil c is never ready.
func ready(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// live gives the next frames, heartbeats among them (Feed.beat), waiting
// for them when wait is set.
func (s *Session) live(ctx context.Context, wait bool) ([]byte, error) {
	if s.catching {
		if err := s.page(ctx); err != nil {
			return s.fail("database", err)
		}
		return s.afterMessages()
	}
	switch s.await(ctx, wait) {
	case eventNone:
		s.releaseBuf()
		return nil, ErrWait
	case eventDone:
		// The cause tells a shutdown from a web server that closed the
		// connection or aborted the request (internal/fastcgi).
		reason := "shutdown"
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			reason = c.Error()
		}
		return s.stop(reason)
	case eventSuperseded:
		return s.stop("superseded")
	case eventExpired:
		if s.req.EndAfterMessages {
			return s.stop("long poll ended")
		}
		return s.stop("lifetime")
	default: // eventWake
		lagged := s.sub.Read(func(fr *Frame) bool {
			s.frame(fr)
			return len(s.buf) < chunkBytes
		})
		if s.sub.Beat() && len(s.buf) == 0 {
			// Anything written keeps the connection alive as well.
			s.buf = sse.AppendComment(s.buf, "ping")
		}
		if lagged {
			// The reader fell behind the room's frames: read what it
			// missed from the database, page by page; without a wait,
			// from the next call on (Reads).
			s.catching = true
			if !wait {
				return s.afterMessages()
			}
			if err := s.page(ctx); err != nil {
				return s.fail("database", err)
			}
		}
		return s.afterMessages()
	}
}

// afterMessages returns what was added, ending the stream after it when
// the rule says so.
func (s *Session) afterMessages() ([]byte, error) {
	if s.req.EndAfterMessages && s.sent > 0 && !s.catching && len(s.pending) == 0 {
		s.state, s.reason = stateEnded, "message sent"
	}
	return s.buf, nil
}

// stop ends the session for reason.
func (s *Session) stop(reason string) ([]byte, error) {
	s.state, s.reason = stateEnded, reason
	return nil, io.EOF
}

// fail ends the session after a database error, which it returns.
func (s *Session) fail(what string, err error) ([]byte, error) {
	s.state, s.reason = stateEnded, what
	return nil, fmt.Errorf("stream: %s: %w", what, err)
}

// frame adds fr unless it is a message at or below one already sent.
func (s *Session) frame(fr *Frame) {
	if fr.ID == 0 {
		s.buf = append(s.buf, fr.Bytes...) // no id: state, such as presence
		return
	}
	if fr.ID <= s.after {
		return
	}
	s.buf = append(s.buf, fr.Bytes...)
	s.after = fr.ID
	s.sent++
}

// emit encodes pending messages into the chunk until it is full.
func (s *Session) emit() {
	for len(s.pending) > 0 && len(s.buf) < chunkBytes {
		fr := Encode(s.pending[0])
		s.frame(&fr)
		s.pending[0] = chat.Message{} // let its text go
		s.pending = s.pending[1:]
	}
	if len(s.pending) == 0 {
		s.pending = nil // and the page's array: a waiting stream keeps none
	}
}

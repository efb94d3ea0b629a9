package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/feed"
	"cgichat/internal/guard"
	"cgichat/internal/sse"
	"cgichat/internal/store"
	"cgichat/internal/wake"
)

// Reconnection delays sent as retry:, and the longest wait of a batch
// response (below mod_fcgid's 40 s FcgidIOTimeout and nginx's 60 s
// fastcgi_read_timeout, since a buffering host forwards nothing meanwhile).
const (
	liveRetry     = time.Second
	batchRetry    = 50 * time.Millisecond
	batchLongPoll = 25 * time.Second
)

// EventReady is sent once the backlog is written, so a page can tell a
// stream that delivers from one a host is holding back.
const EventReady = "ready"

// openingPad follows retry: so that every response starts with more than
// a few dozen bytes. Apache's mod_deflate, when it is configured for event
// streams (SetOutputFilter DEFLATE, "compress all content" on shared
// hosts), reads a CGI response until it holds about 70 bytes before it even
// looks at no-gzip; a shorter opening (an empty room) would wait there for
// several heartbeats. 2 KiB is the customary SSE padding for buffering
// proxies.
var openingPad = strings.Repeat(" ", 2048)

// EventTrimmed tells a resuming client that messages after its
// Last-Event-ID were removed by retention: it gets what is left.
const EventTrimmed = "trimmed"

// backlogPage bounds one read of missed messages.
const backlogPage = 500

// staleAfter is how long a stream's row may go unrenewed before it counts
// as gone (its process was killed), and how long a reader stays in the
// presence list after a stream ends (so reconnects do not blink).
func staleAfter(cfg config.Config) time.Duration {
	return 3*cfg.Heartbeat + 5*time.Second
}

// NewStream returns the stream program's App.
func NewStream(log *slog.Logger) *App { return newApp(buildStream, log) }

// streamHandler serves Server-Sent Events from the feed of one database.
type streamHandler struct {
	cfg     config.Config
	store   *store.Store
	feed    *feed.Feed
	log     *slog.Logger
	trusted []netip.Prefix

	wake     *wake.Listener // nil when wake-ups are unavailable
	notifier *wake.Notifier // with wake: for the feed to wake the others
	lead     *wake.Lead     // with wake: which process polls often
	stopFeed context.CancelFunc
	feedDone chan struct{}
}

func buildStream(ctx context.Context, cfg config.Config, conns int, log *slog.Logger) (instance, error) {
	st, err := store.Open(ctx, cfg.DB, conns)
	if err != nil {
		return nil, err
	}
	changes, err := st.Changes(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	h := &streamHandler{cfg: cfg, store: st, log: log, trusted: cfg.TrustedPrefixes(), feedDone: make(chan struct{})}
	var wakeC <-chan struct{}
	dir := cfg.WakeDir
	if h.wake, err = wake.Listen(dir); err != nil {
		log.Warn("wake-ups unavailable, polling only", "poll", cfg.Poll, "err", err)
	} else if h.notifier, err = wake.NewNotifier(dir); err != nil {
		log.Warn("wake-ups unavailable, polling only", "poll", cfg.Poll, "err", err)
		h.wake.Close()
		h.wake = nil
	} else {
		wakeC = h.wake.C()
	}
	h.feed = feed.New(st, changes, cfg.Poll, cfg.Heartbeat, staleAfter(cfg), wakeC, log)
	if h.wake != nil {
		h.feed.PauseWakeUps(h.wake)
		// The processes that share the database share its polling: one
		// polls every CHAT_POLL_MS and wakes the others when it finds
		// what no wake-up announced.
		h.lead = wake.NewLead(dir)
		h.feed.Share(h.lead, func() {
			if _, err := h.notifier.Notify(); err != nil {
				log.Warn("wake-up failed", "err", err)
			}
		})
	}
	ctx, h.stopFeed = context.WithCancel(ctx)
	go func() {
		defer close(h.feedDone)
		h.feed.Run(ctx)
	}()
	return h, nil
}

func (h *streamHandler) Close() error {
	h.stopFeed()
	<-h.feedDone
	var errs []error
	if h.wake != nil {
		errs = append(errs, h.wake.Close(), h.notifier.Close(), h.lead.Close())
	}
	return errors.Join(append(errs, h.store.Close())...)
}

// streamRequest is a validated stream request.
type streamRequest struct {
	room   string
	after  int64 // the Last-Event-ID, when resume is set
	resume bool
	mode   string
	nick   string // the reader, for presence; may be empty
}

// parseStreamRequest reads room, Last-Event-ID (header, else the
// lastEventId parameter) and mode from r.
func parseStreamRequest(r *http.Request, defaultMode string) (streamRequest, error) {
	q := r.URL.Query()
	req := streamRequest{mode: defaultMode}
	var err error
	if req.room, err = chat.ValidRoom(q.Get("room")); err != nil {
		return req, err
	}
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = q.Get("lastEventId")
	}
	if id != "" {
		req.after, err = strconv.ParseInt(id, 10, 64)
		if err != nil || req.after < 0 {
			return req, chat.Errorf(chat.EInvalid, "Last-Event-ID must be the id of a message (a whole number), not %q.", id)
		}
		req.resume = true
	}
	switch m := q.Get("mode"); m {
	case "":
	case config.ModeLive, config.ModeBatch:
		req.mode = m
	default:
		return req, chat.Errorf(chat.EInvalid, "mode must be %q or %q.", config.ModeLive, config.ModeBatch)
	}
	if nick := q.Get("nick"); nick != "" {
		if req.nick, err = chat.ValidNick(nick); err != nil {
			return req, err
		}
	}
	return req, nil
}

// ServeHTTP handles GET cgi-bin/stream: retry:, the backlog (history or
// everything after Last-Event-ID), a ready event, then live messages and
// heartbeats until the stream's life ends, or, in batch mode, until the
// first new message.
func (h *streamHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, h.log, "GET, HEAD")
		return
	}
	req, err := parseStreamRequest(r, h.cfg.Mode)
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	ctx := r.Context()
	var claims []guard.Claim
	if req.nick != "" {
		if _, claims, err = claimsOf(r, h.store); err != nil {
			fail(w, r, h.log, err)
			return
		}
	}
	// Count the stream against its address's cap, and show its reader
	// (under their nick only if nobody else holds it).
	id, err := h.store.OpenStream(ctx, store.StreamInput{
		Owner: h.feed.Owner(), Room: req.room, Nick: req.nick, Claims: claims, NickHold: h.cfg.NickHold,
		Addr: guard.ClientAddr(r, h.trusted), Cap: h.cfg.StreamsPerClient, Stale: staleAfter(h.cfg),
	})
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	defer func() {
		// Also after a shutdown cancelled ctx.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := h.store.CloseStream(ctx, id); err != nil {
			h.log.Warn("stream: closing its row failed", "err", err)
		}
	}()
	// Subscribe before reading the backlog: whatever commits in between
	// arrives through the subscription, so nothing falls in a gap.
	sub, err := h.feed.Subscribe(ctx, req.room)
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	defer h.feed.Unsubscribe(sub)
	out := &eventWriter{w: w, after: req.after}
	out.f, _ = w.(http.Flusher)
	// Read the first page before answering, so a database error can still
	// be a JSON error.
	var first []chat.Message
	var trimmed int64
	if req.resume {
		first, err = h.store.After(ctx, req.room, req.after, backlogPage)
		if err == nil {
			trimmed, err = h.store.TrimmedThrough(ctx, req.room)
		}
	} else {
		first, err = h.store.Latest(ctx, req.room, h.cfg.History)
	}
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	secure(hdr)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	retry := liveRetry
	if req.mode == config.ModeBatch {
		retry = batchRetry
	}
	out.buf = sse.AppendRetry(out.buf, retry.Milliseconds())
	out.buf = sse.AppendComment(out.buf, openingPad)
	if req.after < trimmed {
		// Its id moves the client's Last-Event-ID past the gap, so the
		// next resume does not say it again. %q quotes a room as JSON
		// would: rooms are plain ASCII.
		out.buf = sse.AppendEvent(out.buf, trimmed, EventTrimmed, fmt.Sprintf(`{"room":%q,"through":%d}`, req.room, trimmed))
		out.after = trimmed
	}
	out.messages(first)
	if req.resume && len(first) == backlogPage {
		if err := h.catchUp(ctx, req.room, out); err != nil {
			h.log.Warn("stream: backlog read failed", "err", err)
			return
		}
	}
	backlog := out.sent
	out.buf = sse.AppendEvent(out.buf, 0, EventReady, `{"mode":"`+req.mode+`"}`)
	if nicks, err := h.store.Presence(ctx, req.room, staleAfter(h.cfg)); err == nil {
		fr := feed.EncodePresence(req.room, nicks)
		out.frame(&fr)
	} else {
		h.log.Warn("stream: reading presence failed", "err", err)
	}
	if err := out.flush(); err != nil {
		return
	}
	start := time.Now()
	var reason string
	if req.mode == config.ModeBatch {
		reason = h.batch(ctx, sub, out, backlog > 0)
	} else {
		reason = h.live(ctx, sub, out)
	}
	h.log.Debug("stream ended", "room", req.room, "mode", req.mode, "reason", reason,
		"seconds", time.Since(start).Seconds(), "messages", out.sent)
}

// live forwards new messages and heartbeats until the stream's life ends,
// the process shuts down or a write fails. It returns why it ended.
func (h *streamHandler) live(ctx context.Context, sub *feed.Sub, out *eventWriter) string {
	end := time.NewTimer(h.cfg.Stream)
	defer end.Stop()
	beat := time.NewTicker(h.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return "shutdown"
		case <-end.C:
			return "lifetime"
		case <-beat.C:
			out.buf = sse.AppendComment(out.buf, "ping")
		case fr := <-sub.C():
			if err := h.forward(ctx, sub, fr, out); err != nil {
				return "database: " + err.Error()
			}
		}
		if err := out.flush(); err != nil {
			return "client gone"
		}
	}
}

// batch waits, when the backlog was empty, for the first new message or
// the long-poll bound, and returns; the browser reconnects after retry:.
// It writes heartbeats meanwhile: a host that buffers keeps them, one that
// does not lets a departed client be noticed.
func (h *streamHandler) batch(ctx context.Context, sub *feed.Sub, out *eventWriter, hadBacklog bool) string {
	if hadBacklog {
		return "backlog sent"
	}
	end := time.NewTimer(min(batchLongPoll, h.cfg.Stream))
	defer end.Stop()
	beat := time.NewTicker(h.cfg.Heartbeat)
	defer beat.Stop()
	for out.sent == 0 {
		select {
		case <-ctx.Done():
			return "shutdown"
		case <-end.C:
			return "long poll ended"
		case <-beat.C:
			out.buf = sse.AppendComment(out.buf, "ping")
			if err := out.flush(); err != nil {
				return "client gone"
			}
		case fr := <-sub.C():
			if err := h.forward(ctx, sub, fr, out); err != nil {
				return "database: " + err.Error()
			}
		}
	}
	out.flush()
	return "message sent"
}

// forward adds fr and whatever else is waiting to out, and catches up from
// the database when the feed dropped frames for this subscriber.
func (h *streamHandler) forward(ctx context.Context, sub *feed.Sub, fr *feed.Frame, out *eventWriter) error {
	out.frame(fr)
	for more := true; more; {
		select {
		case fr := <-sub.C():
			out.frame(fr)
		default:
			more = false
		}
	}
	if sub.Lagged() {
		return h.catchUp(ctx, sub.Room(), out)
	}
	return nil
}

// catchUp adds every message of room after the last one sent, page by page.
func (h *streamHandler) catchUp(ctx context.Context, room string, out *eventWriter) error {
	for {
		ms, err := h.store.After(ctx, room, out.after, backlogPage)
		if err != nil {
			return err
		}
		out.messages(ms)
		if len(ms) < backlogPage {
			return nil
		}
		if err := out.flush(); err != nil {
			return err
		}
	}
}

// eventWriter collects frames for one response and writes them, never
// sending a message id at or below one already sent.
type eventWriter struct {
	w     http.ResponseWriter
	f     http.Flusher
	buf   []byte
	after int64 // highest id sent
	sent  int   // messages sent
}

func (o *eventWriter) frame(fr *feed.Frame) {
	if fr.ID == 0 {
		o.buf = append(o.buf, fr.Bytes...) // no id: state, such as presence
		return
	}
	if fr.ID <= o.after {
		return
	}
	o.buf = append(o.buf, fr.Bytes...)
	o.after = fr.ID
	o.sent++
}

func (o *eventWriter) messages(ms []chat.Message) {
	for _, m := range ms {
		fr := feed.Encode(m)
		o.frame(&fr)
	}
}

// flush writes what is collected and flushes it to the client. Go's CGI
// and FastCGI writers drop the error of a flush, but keep it: an empty
// write right after reports it, so a departed client is noticed at the
// first failed flush, not a heartbeat later.
func (o *eventWriter) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	_, err := o.w.Write(o.buf)
	// An idle stream keeps no big buffer: the opening (2 KiB of padding,
	// the backlog) is not repeated.
	if cap(o.buf) > 1024 {
		o.buf = nil
	} else {
		o.buf = o.buf[:0]
	}
	if err != nil {
		return err
	}
	if o.f != nil {
		o.f.Flush()
	}
	_, err = o.w.Write(nil)
	return err
}

package fastcgi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Accept's back-off after a temporary failure, as net/http.Server's: the
// first wait, doubled after each further failure up to the last.
const (
	firstBackoff = 5 * time.Millisecond
	maxBackoff   = time.Second
)

// busyWindow bounds the life of a connection answered by Server.Busy: it
// sends its request and reads the answer within it, or is closed. A web
// server sends its request as soon as it connects.
const busyWindow = 2 * time.Second

// ErrServerClosed is what Serve returns after Shutdown.
var ErrServerClosed = errors.New("fastcgi: server closed")

// Server serves the FastCGI connections of a listener, each request with
// Handler. Its zero limits mean no limit.
type Server struct {
	// Handler serves every request.
	Handler http.Handler

	// MaxConns is the most connections served at once; 0 is no limit.
	// FCGI_GET_VALUES reports it as FCGI_MAX_CONNS and FCGI_MAX_REQS (a
	// connection carries one request at a time).
	MaxConns int
	// Busy answers the one request of each connection accepted while
	// MaxConns are open, for up to MaxBusy such connections at once; past
	// those the server accepts nothing until a connection closes, and new
	// ones wait in the listener's queue.
	Busy    http.Handler
	MaxBusy int

	// WebServerAddrs, when not empty, are the only peers served:
	// connections from any other address, or not over TCP/IP, are closed
	// at once (FCGI_WEB_SERVER_ADDRS; specification, section 3.2).
	WebServerAddrs []netip.Addr

	// BaseContext is the parent of every request's context: when it ends,
	// so do the requests (a daemon's shutdown ends its event streams at
	// once). Nil is context.Background().
	BaseContext context.Context

	// Log hears what the server itself has to say: Accept failing and
	// recovering, load shed, peers refused, handlers that panicked. Nil
	// discards it.
	Log *slog.Logger

	served atomic.Int64           // connections open under MaxConns
	poller atomic.Pointer[poller] // nil where there is none

	mu       sync.Mutex
	listener net.Listener
	conns    map[uint32]*conn // by id
	nextID   uint32
	closed   chan struct{} // closed by Shutdown
	drained  chan struct{} // closed when the last connection ends after Shutdown
	shedding int           // connections answered by Busy in the current burst
	refused  int           // connections refused for their address
}

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = make(map[uint32]*conn)
		s.closed = make(chan struct{})
		s.drained = make(chan struct{})
	}
	if s.Log == nil {
		s.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Serve accepts connections on l and serves each on its own goroutines
// until Shutdown, after which it returns ErrServerClosed. A temporary
// Accept failure (out of file descriptors or memory, a connection
// aborted) is retried after a back-off while the open connections go on
// being served; any other failure is returned.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	default:
	}
	s.listener = l
	s.mu.Unlock()
	if p, err := newPoller(); err == nil {
		s.poller.Store(p)
		go func() {
			p.run(s.resume)
			s.pollerGone(p)
		}()
	}

	var slots chan struct{} // one per connection open, served or busy
	if s.MaxConns > 0 {
		busy := 0
		if s.Busy != nil {
			busy = max(s.MaxBusy, 0)
		}
		slots = make(chan struct{}, s.MaxConns+busy)
	}
	var backoff acceptBackoff
	for {
		if slots != nil {
			select {
			case slots <- struct{}{}:
			case <-s.closed:
				return ErrServerClosed
			}
		}
		rwc, err := l.Accept()
		if err != nil {
			if slots != nil {
				<-slots
			}
			select {
			case <-s.closed:
				return ErrServerClosed
			default:
			}
			if !temporary(err) {
				return err
			}
			if !backoff.wait(s.Log, err, s.closed) {
				return ErrServerClosed
			}
			continue
		}
		backoff.reset(s.Log)
		release := func() {}
		if slots != nil {
			release = func() { <-slots }
		}
		if !s.allowed(rwc) {
			rwc.Close()
			release()
			continue
		}
		c := &conn{srv: s, rwc: rwc, h: s.Handler, refs: 1}
		if sc, ok := rwc.(syscall.Conn); ok {
			c.raw, _ = sc.SyscallConn()
		}
		if s.MaxConns > 0 && s.served.Load() >= int64(s.MaxConns) {
			c.h, c.busy = s.Busy, true
			s.shed()
			rwc.SetDeadline(time.Now().Add(busyWindow))
		} else {
			s.served.Add(1)
			s.serving()
			free := release
			release = func() { s.served.Add(-1); free() }
		}
		c.release = release
		if !s.track(c) {
			c.rwc.Close()
			release()
			return ErrServerClosed
		}
		go c.serve(false)
	}
}

// resume starts the reader of connection id again, which the poller
// found with something to read.
func (s *Server) resume(id uint32) {
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	if c != nil && c.unpark() {
		go c.serve(true)
	}
}

// pollerGone takes every parked reader back from a poller that stopped
// for a reason of its own: they read on, each on its goroutine.
func (s *Server) pollerGone(p *poller) {
	if !s.poller.CompareAndSwap(p, nil) {
		return
	}
	s.mu.Lock()
	ids := make([]uint32, 0, len(s.conns))
	for id := range s.conns {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.resume(id)
	}
}

// shed counts a connection answered by Busy, telling the log at the first
// of a burst.
func (s *Server) shed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shedding == 0 {
		s.Log.Warn("fastcgi: connections are at their limit; new ones are answered 503 until some close",
			"max_conns", s.MaxConns)
	}
	s.shedding++
}

// serving ends a burst of shed load, telling the log.
func (s *Server) serving() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shedding > 0 {
		s.Log.Info("fastcgi: serving new connections again", "answered_503", s.shedding)
		s.shedding = 0
	}
}

// allowed reports whether the peer of c may be served, by
// WebServerAddrs.
func (s *Server) allowed(c net.Conn) bool {
	if len(s.WebServerAddrs) == 0 {
		return true
	}
	var peer netip.Addr
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		peer = tcp.AddrPort().Addr().Unmap().WithZone("")
	}
	if peer.IsValid() && slices.Contains(s.WebServerAddrs, peer) {
		return true
	}
	s.mu.Lock()
	s.refused++
	first := s.refused == 1
	s.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	s.Log.Log(context.Background(), level, "fastcgi: connection refused: its peer is not in FCGI_WEB_SERVER_ADDRS",
		"peer", c.RemoteAddr().String(), "network", c.RemoteAddr().Network())
	return false
}

// track adds c to the open connections, with an id of its own, unless
// the server is shut down.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return false
	default:
	}
	for {
		s.nextID++
		if _, taken := s.conns[s.nextID]; s.nextID != 0 && !taken {
			break
		}
	}
	c.id = s.nextID
	s.conns[c.id] = c
	return true
}

// untrack removes c, which has closed.
func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c.id)
	select {
	case <-s.closed:
		if len(s.conns) == 0 {
			s.drain()
		}
	default:
	}
}

// drain marks the end of a shutdown: no connection is left. s.mu is held.
func (s *Server) drain() {
	select {
	case <-s.drained:
	default:
		close(s.drained)
		if p := s.poller.Swap(nil); p != nil {
			p.close()
		}
	}
}

// shuttingDown reports whether Shutdown was called.
func (s *Server) shuttingDown() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// Shutdown stops accepting, closes the connections that carry no request,
// and waits until the others have ended their request and closed, or ctx
// ends. It does not end requests: the handler's own context does that.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	if s.listener != nil {
		s.listener.Close()
	}
	open := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		open = append(open, c)
	}
	if len(s.conns) == 0 {
		s.drain()
	}
	s.mu.Unlock()
	for _, c := range open {
		c.closeIfIdle()
	}
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// value returns the value of an FCGI_GET_VALUES variable this server
// knows (specification, section 4.1).
func (s *Server) value(name string) (string, bool) {
	switch name {
	case "FCGI_MAX_CONNS", "FCGI_MAX_REQS":
		if s.MaxConns > 0 {
			return strconv.Itoa(s.MaxConns), true
		}
	case "FCGI_MPXS_CONNS":
		return "0", true
	}
	return "", false
}

// temporary reports whether an Accept error is one of the moment, worth
// retrying: out of descriptors or memory, or one connection's failure.
func temporary(err error) bool {
	for _, e := range []syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN,
		// Linux's accept(2) says to retry these, a failure of the network
		// a connection came from.
		syscall.EPROTO, syscall.EPERM, syscall.ENETDOWN, syscall.ENOPROTOOPT,
		syscall.EHOSTDOWN, syscall.EHOSTUNREACH, syscall.EOPNOTSUPP, syscall.ENETUNREACH,
		syscall.ETIMEDOUT,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// acceptBackoff is the wait between Accept failures of one burst, which it
// logs once when it starts and once when it ends.
type acceptBackoff struct {
	delay  time.Duration
	errors int
	since  time.Time
}

// wait sleeps after a failure, or until quit; it reports false for quit.
func (b *acceptBackoff) wait(log *slog.Logger, err error, quit <-chan struct{}) bool {
	if b.errors == 0 {
		b.delay, b.since = firstBackoff, time.Now()
		log.Warn("fastcgi: cannot accept connections; retrying, serving those open", "err", err)
	} else {
		b.delay = min(2*b.delay, maxBackoff)
	}
	b.errors++
	t := time.NewTimer(b.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-quit:
		return false
	}
}

// reset ends a burst of failures.
func (b *acceptBackoff) reset(log *slog.Logger) {
	if b.errors > 0 {
		log.Info("fastcgi: accepting connections again", "failures", b.errors,
			"seconds", time.Since(b.since).Round(time.Millisecond).Seconds())
		*b = acceptBackoff{}
	}
}

// ParseWebServerAddrs parses FCGI_WEB_SERVER_ADDRS: IP addresses separated
// by commas (the specification writes IPv4 ones; IPv6 ones are taken too).
// An empty value is no list, as libfcgi takes it.
func ParseWebServerAddrs(v string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("FCGI_WEB_SERVER_ADDRS: %q is not an IP address", f)
		}
		addrs = append(addrs, a.Unmap())
	}
	return addrs, nil
}

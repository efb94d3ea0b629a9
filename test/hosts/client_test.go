package hosts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/sse"
	"cgichat/test/hostkit"
)

// message is what post answers and what a stream's message events carry.
type message struct {
	ID   int64  `json:"id"`
	Room string `json:"room"`
	Nick string `json:"nick"`
	Text string `json:"text"`
	Time string `json:"time"`
}

// client talks to one deployed chat the way a browser does, keeping the
// cookies post sets (the claims on the nicks it used).
type client struct {
	base string // http://127.0.0.1:PORT
	http *http.Client
	h2c  bool // speaks HTTP/2 without TLS only, and checks every answer came so
}

func newClient(base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{base: base, http: &http.Client{Transport: &http.Transport{}, Jar: jar}}
}

// newH2CClient returns a client that speaks only HTTP/2 without TLS, with
// prior knowledge (no upgrade from HTTP/1.1), as a front end or a client
// that knows the server does.
func newH2CClient(base string) *client {
	c := newClient(base)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c.http.Transport = &http.Transport{Protocols: &p}
	c.h2c = true
	return c
}

// clientFor returns the client a setup's tests use.
func clientFor(h *hostkit.Host) *client {
	if h.Setup.H2C {
		return newH2CClient(h.URL)
	}
	return newClient(h.URL)
}

// checkProto returns an error when an h2c client got an answer over
// anything but HTTP/2.
func (c *client) checkProto(resp *http.Response) error {
	if c.h2c && resp.ProtoMajor != 2 {
		return fmt.Errorf("%s %s: got %s, want HTTP/2", resp.Request.Method, resp.Request.URL.Path, resp.Proto)
	}
	return nil
}

// get fetches path and returns the response with its whole body.
func (c *client) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := c.checkProto(resp); err != nil {
		t.Error(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp, string(body)
}

// post sends one message as a form and returns the stored message and
// when its 201 had been read in full.
func (c *client) post(t *testing.T, room, nick, text string) (message, time.Time) {
	t.Helper()
	m, at, err := c.tryPost(room, nick, text)
	if err != nil {
		t.Fatal(err)
	}
	return m, at
}

// tryPost is post for goroutines, which may not fail the test themselves.
func (c *client) tryPost(room, nick, text string) (message, time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	form := url.Values{"room": {room}, "nick": {nick}, "text": {text}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/cgi-bin/post", strings.NewReader(form.Encode()))
	if err != nil {
		return message{}, time.Time{}, fmt.Errorf("post: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return message{}, time.Time{}, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	if err := c.checkProto(resp); err != nil {
		return message{}, time.Time{}, err
	}
	body, err := io.ReadAll(resp.Body)
	at := time.Now()
	if err != nil {
		return message{}, at, fmt.Errorf("post: reading the answer: %w", err)
	}
	if g, e := resp.StatusCode, http.StatusCreated; g != e {
		return message{}, at, fmt.Errorf("post: got status %d, want %d; body %q", g, e, body)
	}
	var m message
	if err := json.Unmarshal(body, &m); err != nil || m.ID == 0 {
		return message{}, at, fmt.Errorf("post: got body %q, want a stored message (%v)", body, err)
	}
	return m, at, nil
}

// timedEvent is an event or comment and when the client parsed it.
type timedEvent struct {
	sse.Event
	at time.Time
}

// stream is one open GET cgi-bin/stream, read in the background so that a
// host which holds the whole response back cannot block the test.
type stream struct {
	cancel   context.CancelFunc
	hdrReady chan struct{}   // closed once the response header is in hdr
	events   chan timedEvent // closed when the stream ends
	done     chan struct{}   // closed when the stream ends

	mu  sync.Mutex
	hdr http.Header
	err error // why it ended: io.EOF after a clean end
}

// openStream requests the room's stream; lastID, when set, is sent as
// Last-Event-ID. Accept-Encoding asks for gzip, as browsers do, so a
// compressing server would show itself.
func (c *client) openStream(room, lastID string) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{
		cancel:   cancel,
		hdrReady: make(chan struct{}),
		events:   make(chan timedEvent, 4096),
		done:     make(chan struct{}),
	}
	go s.read(ctx, c, room, lastID)
	return s
}

func (s *stream) read(ctx context.Context, c *client, room, lastID string) {
	defer close(s.done)
	defer close(s.events)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/cgi-bin/stream?room="+url.QueryEscape(room), nil)
	if err != nil {
		s.end(err)
		return
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Accept-Encoding", "gzip")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		s.end(err)
		return
	}
	defer resp.Body.Close()
	if err := c.checkProto(resp); err != nil {
		s.end(err)
		return
	}
	s.mu.Lock()
	s.hdr = resp.Header
	s.mu.Unlock()
	close(s.hdrReady)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		s.end(fmt.Errorf("status %d, body %q", resp.StatusCode, body))
		return
	}
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			s.end(err)
			return
		}
		s.events <- timedEvent{Event: ev, at: time.Now()}
	}
}

func (s *stream) end(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// close drops the connection, as a browser tab that goes away does.
func (s *stream) close() {
	s.cancel()
	<-s.done
}

// result returns why the stream ended (io.EOF for a clean end), waiting up
// to timeout for it to end.
func (s *stream) result(timeout time.Duration) error {
	select {
	case <-s.done:
	case <-time.After(timeout):
		return errors.New("the stream did not end")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// headers waits up to timeout for the response header.
func (s *stream) headers(t *testing.T, timeout time.Duration) http.Header {
	t.Helper()
	select {
	case <-s.hdrReady:
	case <-time.After(timeout):
		t.Fatalf("no response header within %v (the stream ended with %v)", timeout, s.result(0))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hdr
}

// next returns the next event of type typ, skipping comments and other
// types, waiting at most timeout; ok is false when none came.
func (s *stream) next(typ string, timeout time.Duration) (ev timedEvent, ok bool) {
	deadline := time.After(timeout)
	for {
		select {
		case ev, open := <-s.events:
			if !open {
				return ev, false
			}
			if ev.Comment == "" && ev.Type == typ {
				return ev, true
			}
		case <-deadline:
			return ev, false
		}
	}
}

// decode returns the message an event carries.
func decode(t *testing.T, ev timedEvent) message {
	t.Helper()
	var m message
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		t.Fatalf("event data %q is not a message: %v", ev.Data, err)
	}
	return m
}

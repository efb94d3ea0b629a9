package fastcgi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"cgichat/internal/fastcgi/record"
)

// detached writes "started", detaches the response and returns; its owner
// then waits for release or the request's context, writes "after" when
// released, and finishes the response (twice: the second does nothing).
type detached struct {
	returned chan struct{} // the handler is returning
	release  chan struct{}
	ended    chan error // the context's cause, or nil when released
	panics   bool       // the handler panics after detaching
	// env has, for each request, whether ProcessEnv answered before and
	// after Detach.
	env chan [2]bool
}

func newDetached() *detached {
	return &detached{returned: make(chan struct{}, 10), release: make(chan struct{}), ended: make(chan error, 10), env: make(chan [2]bool, 10)}
}

func (h *detached) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "started")
	http.NewResponseController(w).Flush()
	before := ProcessEnv(r) != nil
	finish, ok := Detach(w)
	if !ok {
		panic("the response cannot be detached")
	}
	h.env <- [2]bool{before, ProcessEnv(r) != nil}
	ctx := r.Context()
	go func() {
		select {
		case <-ctx.Done():
			h.ended <- context.Cause(ctx)
		case <-h.release:
			io.WriteString(w, "after")
			h.ended <- nil
		}
		finish()
		finish()
	}()
	h.returned <- struct{}{}
	if h.panics {
		panic("after detaching")
	}
}

// TestDetach checks that a detached response goes on after its handler
// returned, until its owner finishes it: written to, aborted by the web
// server, ended by the server's BaseContext; and that the connection then
// serves the next request.
func TestDetach(t *testing.T) {
	tests := []struct {
		name     string
		end      func(t *testing.T, h *detached, c net.Conn, base context.CancelFunc)
		wantBody string
		wantErr  error
		body     bool // the request has a body, never read: the web server sends a part and waits
	}{
		{"Released", func(t *testing.T, h *detached, c net.Conn, base context.CancelFunc) { close(h.release) }, "after", nil, false},
		{"Aborted", func(t *testing.T, h *detached, c net.Conn, base context.CancelFunc) {
			send(t, c, record.Append(nil, record.AbortRequest, 1, nil))
		}, "", ErrRequestAborted, false},
		{"BaseEnded", func(t *testing.T, h *detached, c net.Conn, base context.CancelFunc) { base() }, "", context.Canceled, false},
		{"ConnClosedWithBodyUnread", func(t *testing.T, h *detached, c net.Conn, base context.CancelFunc) {
			c.(*net.UnixConn).CloseWrite()
		}, "", ErrConnClosed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newDetached()
			base, cancel := context.WithCancel(context.Background())
			defer cancel()
			sock := serveWith(t, &Server{Handler: h, BaseContext: base})
			c, r := dialRaw(t, "unix", sock)
			if tt.body {
				send(t, c, record.Append(nil, record.BeginRequest, 1, begin(true)), record.AppendStream(nil, record.Params, 1, getParams("/", "")),
					record.Append(nil, record.Stdin, 1, []byte("part of a body")), record.Append(nil, record.Stdin, 1, []byte("and more")))
				readRaw(t, r) // "started"
			} else {
				start(t, c, r, 1)
			}
			wait(t, h.returned, "return of the handler")
			if env := <-h.env; env != [2]bool{true, false} {
				t.Errorf("ProcessEnv answered before and after Detach: %v, want [true false] (a detached response keeps no parameters)", env)
			}
			// The handler has returned; the request goes on.
			select {
			case err := <-h.ended:
				t.Fatalf("the request ended (%v) when its handler returned", err)
			case <-time.After(50 * time.Millisecond):
			}
			tt.end(t, h, c, cancel)
			if err := wait(t, h.ended, "end of the detached response"); !errors.Is(err, tt.wantErr) {
				t.Errorf("the owner saw %v, want %v", err, tt.wantErr)
			}
			if body, status := answer(t, r, 1); body != tt.wantBody || status != record.StatusRequestComplete {
				t.Errorf("got %q, protocol status %d; want %q, FCGI_REQUEST_COMPLETE", body, status, tt.wantBody)
			}
			if tt.wantErr == context.Canceled || tt.wantErr == ErrConnClosed {
				return // the server's requests all ended with its base, or the connection
			}
			// FCGI_KEEP_CONN: the connection serves the next request.
			h.release = make(chan struct{})
			start(t, c, r, 2)
			wait(t, h.returned, "return of the second handler")
			close(h.release)
			if body, status := answer(t, r, 2); body != "after" || status != record.StatusRequestComplete {
				t.Errorf("the next request: got %q, status %d", body, status)
			}
		})
	}
}

// TestDetachShutdown checks that Shutdown waits for a detached response
// to be finished.
func TestDetachShutdown(t *testing.T) {
	l := newChanListener(t)
	h := newDetached()
	s := &Server{Handler: h}
	go s.Serve(l)
	c, r := l.dial(t)
	start(t, c, r, 1)
	wait(t, h.returned, "return of the handler")
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a detached response was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(h.release)
	if body, status := answer(t, r, 1); body != "after" || status != record.StatusRequestComplete {
		t.Errorf("the detached response: got %q, status %d", body, status)
	}
	if err := wait(t, shut, "end of Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestDetachPanic checks that a handler that panics after detaching ends
// its request there, logged, and that the owner's finish then does
// nothing.
func TestDetachPanic(t *testing.T) {
	var log logBuffer
	h := newDetached()
	h.panics = true
	sock := serveWith(t, &Server{Handler: h, Log: log.logger()})
	c, r := dialRaw(t, "unix", sock)
	start(t, c, r, 1)
	if body, status := answer(t, r, 1); body != "" || status != record.StatusRequestComplete {
		t.Errorf("after the panic: got more output %q, protocol status %d", body, status)
	}
	if err := wait(t, h.ended, "end of the owner"); err == nil {
		t.Error("the owner's context did not end with the request")
	}
	if log.count("the handler panicked") != 1 {
		t.Errorf("the panic was not logged once:\n%s", log.String())
	}
}

// unwrapper is a ResponseWriter wrapped as middleware wraps one.
type unwrapper struct{ http.ResponseWriter }

func (u unwrapper) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// TestDetachOther checks that only this package's responses detach,
// also when wrapped.
func TestDetachOther(t *testing.T) {
	if _, ok := Detach(httptest.NewRecorder()); ok {
		t.Error("Detach of an httptest.ResponseRecorder reported true")
	}
	if _, ok := Detach(unwrapper{httptest.NewRecorder()}); ok {
		t.Error("Detach of a wrapped httptest.ResponseRecorder reported true")
	}
	h := newDetached()
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(unwrapper{w}, r) }))
	c, r := dialRaw(t, "unix", sock)
	start(t, c, r, 1)
	wait(t, h.returned, "return of the handler")
	close(h.release)
	if body, _ := answer(t, r, 1); body != "after" {
		t.Errorf("a wrapped response: got %q, want %q", body, "after")
	}
}

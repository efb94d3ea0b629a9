package fastcgi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"cgichat/internal/fastcgi/record"
)

// endTimeout bounds the writes that end a request whose handler set a
// write deadline (the answer's last bytes, FCGI_END_REQUEST): a web server
// that reads none of them for this long has its connection closed instead.
var endTimeout = 5 * time.Second

// DrainWindow bounds the wait, after the handler returned, for the rest
// of a body it left unread: a client that sends it slower than this holds
// no program for it.
const DrainWindow = 10 * time.Second

// request is one request, from its FCGI_BEGIN_REQUEST to its
// FCGI_END_REQUEST.
type request struct {
	id   uint16
	keep bool // FCGI_KEEP_CONN: the connection outlives the request

	// The reader's alone: the parameters as they arrive, the body's state.
	raw        []byte
	params     map[string]string
	paramsDone bool
	started    bool // the handler runs
	stdinEnded bool
	bodyClosed bool // by the handler: the rest is dropped
	dropped    int
	pw         *io.PipeWriter // the body, nil when it is empty

	// Set before the handler starts.
	ctx       context.Context
	cancel    context.CancelCauseFunc
	stdinDone chan struct{} // closed when the body ended, or never will
}

// stop ends a running request for cause: its context, and its body.
func (r *request) stop(cause error) {
	r.cancel(cause)
	r.endBody(cause)
}

// endBody ends the body the handler reads: at its end (err nil), or with
// err.
func (r *request) endBody(err error) {
	if r.stdinEnded {
		return
	}
	r.stdinEnded = true
	if err == nil {
		r.pw.Close()
	} else {
		r.pw.CloseWithError(err)
	}
	close(r.stdinDone)
}

// run serves req with the handler and ends it, unless the handler
// detached the response (Detach): then finish ends it later.
func (c *conn) run(req *request, body io.ReadCloser) {
	w := &response{c: c, req: req, header: http.Header{}, body: body}
	broken := c.serveHTTP(w, req, body)
	if w.detached && !broken {
		return
	}
	w.finishOnce.Do(func() { c.finish(w, broken) })
}

// finish ends the request w answers, once its handler returned or, for a
// detached response, its owner is done: the end of the answer, of the
// body, and of the request.
func (c *conn) finish(w *response, broken bool) {
	req, body := w.req, w.body
	// A Write cut short by the handler's deadline, or any failed write,
	// may have sent half a record to a web server that reads nothing: the
	// connection ends, with nothing more written (which could wait for
	// ever). What TryWrite left to send goes first, under the handler's
	// bound, which cuts it too when the web server reads nothing. Then
	// the end of the request is sent under endTimeout instead of that
	// bound, if the handler set one, and without a bound otherwise.
	cut := errors.Is(w.err, os.ErrDeadlineExceeded) || c.flushPending() != nil
	if w.deadline && !cut {
		// A bound of its own for the end: the handler's may have passed,
		// and a web server that reads nothing would hold it for ever.
		c.rwc.SetWriteDeadline(time.Now().Add(endTimeout))
	}
	// Something is always answered, even when the handler wrote nothing.
	if !cut {
		w.Write(nil)
	}
	req.cancel(nil)
	// Wait for what is left of the body, which the reader drops, so that
	// the web server is not still writing when the connection closes
	// (which would reset it).
	body.Close()
	select {
	case <-req.stdinDone:
	default:
		t := time.NewTimer(DrainWindow)
		select {
		case <-req.stdinDone:
		case <-t.C:
			broken = true
		}
		t.Stop()
	}
	c.mu.Lock()
	c.req = nil
	closeConn := broken || cut || !req.keep || c.closing
	c.mu.Unlock()
	// The empty record that ends FCGI_STDOUT, and the end of the request,
	// after which the web server may begin another (section 3.3).
	if !cut {
		end := [8]byte{4: record.StatusRequestComplete}
		b := record.Append(getBuf(), record.Stdout, req.id, nil)
		b = record.Append(b, record.EndRequest, req.id, end[:])
		if err := c.write(b); err != nil {
			closeConn = true
		}
		putBuf(b)
		if w.deadline && !closeConn {
			c.rwc.SetWriteDeadline(time.Time{}) // for the next request
		}
	}
	if closeConn {
		c.shut()
	}
	c.unref()
}

// serveHTTP calls the handler with the request req describes. A panic is
// logged and answered with a 500 when nothing was sent yet; broken says
// the connection is not to be trusted further.
func (c *conn) serveHTTP(w *response, req *request, body io.ReadCloser) (broken bool) {
	defer func() {
		if v := recover(); v != nil {
			c.srv.Log.Error("fastcgi: the handler panicked", "panic", v, "stack", string(debug.Stack()))
			if !w.sentHeader {
				w.header, w.wroteHeader = http.Header{}, false
				w.WriteHeader(http.StatusInternalServerError)
			}
			broken = true
		}
	}()
	params := req.params
	req.params = nil
	r, err := cgi.RequestFromMap(params)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		b := record.Append(getBuf(), record.Stderr, req.id, []byte(err.Error()))
		b = record.Append(b, record.Stderr, req.id, nil)
		c.write(b)
		putBuf(b)
		return false
	}
	env := make(map[string]string)
	for k, v := range params {
		if !inRequest(k) {
			env[k] = v
		}
	}
	r.Body = body
	w.env = new(processEnv)
	w.env.m.Store(&env)
	r = r.WithContext(context.WithValue(req.ctx, paramsKey{}, w.env))
	c.h.ServeHTTP(w, r)
	return false
}

// response is the http.ResponseWriter of one request. Every Write is sent
// at once, as FCGI_STDOUT records around the caller's bytes, which are not
// copied (writeStdout); the CGI header goes with the first. Like
// net/http/fcgi's, Flush reports no error, but the next Write does. Once
// the request's context ended (an abort, the connection gone), Write fails
// with the cause.
type response struct {
	c           *conn
	req         *request
	header      http.Header
	code        int
	wroteHeader bool // WriteHeader was called
	sentHeader  bool // the CGI header was sent
	deadline    bool // SetWriteDeadline was called
	err         error

	body io.ReadCloser // the request's, closed by finish
	env  *processEnv   // ProcessEnv's
	// Set by Detach: the response outlives the handler, and finish ends
	// it, once.
	detached   bool
	finishOnce sync.Once
}

// Detach lets the response w outlive its handler: when ServeHTTP returns,
// the request stays open, and the caller goes on writing to w (from one
// goroutine at a time) until it calls finish, which ends the request as a
// return from ServeHTTP would have. finish is called once; w is not used
// after. The request's context still ends when the web server aborts the
// request or closes the connection, or the server shuts down
// (Server.Shutdown waits for finish). Detach closes the request's body,
// which the caller no longer reads (what the web server still sends of it
// is dropped, so that its abort or its closing the connection is heard
// meanwhile), and ProcessEnv no longer answers, so that a long response
// does not keep the parameters. A handler that detached returns soon; if
// it panics instead, the request ends there and finish does nothing.
//
// ok is false, and nothing changes, when w is not a response of this
// package (unwrapped as http.ResponseController does).
//
// A long response then waits without a goroutine of its own: an event
// stream's owner writes when it has something to send.
func Detach(w http.ResponseWriter) (finish func(), ok bool) {
	v := unwrap(w)
	if v == nil {
		return nil, false
	}
	v.detached = true
	v.body.Close()
	if v.env != nil {
		v.env.m.Store(nil) // what ProcessEnv returns was read by now
	}
	return func() { v.finishOnce.Do(func() { v.c.finish(v, false) }) }, true
}

// Header returns the header to send; once it is sent, a fresh map that
// nothing reads, so that a long response (an event stream) does not keep
// the one it sent.
func (w *response) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader, w.code = true, code
	if code == http.StatusNotModified {
		w.header.Del("Content-Type")
		w.header.Del("Content-Length")
		w.header.Del("Transfer-Encoding")
	}
	if w.header.Get("Date") == "" {
		w.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
}

func (w *response) Write(p []byte) (int, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	if len(p) == 0 && w.sentHeader {
		if err := w.c.flushPending(); err != nil {
			w.err = err
			return 0, err
		}
		return 0, nil
	}
	var head []byte
	if !w.sentHeader {
		w.sentHeader = true
		head = w.cgiHeader(p)
		w.header = nil
	}
	if err := w.c.writeStdout(w.req.id, head, p); err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

// check returns the error that ends the response's writes, if any: one
// of them failed, or the request ended. It sets the status first, as a
// write does.
func (w *response) check() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil && w.req.ctx.Err() != nil {
		w.err = context.Cause(w.req.ctx)
	}
	return w.err
}

// ErrWouldBlock is TryWrite's answer when it could not send all it was
// given without waiting for the web server to read.
var ErrWouldBlock = errors.New("fastcgi: the write would wait for the web server")

// TryWrite writes p to w as Write does, if it can without waiting for the
// web server to read (Linux only), and returns how much of p it took: all
// of it or none. With the error ErrWouldBlock, what it took is not all
// sent yet, or it took none: Write(p[n:]) and Flush then send the rest,
// waiting as they must, before anything else is sent (the end of the
// request sends it too, under the write deadline, if nothing else does).
// A long p (over 16 KiB), the CGI header (the response's first write) and
// a w that is not a response of this package (unwrapped as
// http.ResponseController does) are always left to Write (0,
// ErrWouldBlock). Any other error is the response's, as from Write. It is
// called from the one goroutine that writes to w.
//
// A writer of many responses can then send to every one that is reading
// from one goroutine, and leave only those that are not to goroutines of
// their own.
func TryWrite(w http.ResponseWriter, p []byte) (n int, err error) {
	r := unwrap(w)
	if r == nil {
		return 0, ErrWouldBlock
	}
	if err := r.check(); err != nil {
		return 0, err
	}
	if !r.sentHeader || len(p) == 0 {
		return 0, ErrWouldBlock
	}
	took, sentAll, err := r.c.tryWriteStdout(r.req.id, p)
	switch {
	case err != nil:
		r.err = err
		return 0, err
	case !took:
		return 0, ErrWouldBlock
	case !sentAll:
		return len(p), ErrWouldBlock
	}
	return len(p), nil
}

// unwrap returns the response of this package that w is or wraps (as
// http.ResponseController unwraps), or nil.
func unwrap(w http.ResponseWriter) *response {
	for {
		switch v := w.(type) {
		case *response:
			return v
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

// cgiHeader returns the CGI header of the response, whose body starts with
// p.
func (w *response) cgiHeader(p []byte) []byte {
	if _, ok := w.header["Content-Type"]; !ok && w.code != http.StatusNotModified {
		w.header.Set("Content-Type", http.DetectContentType(p))
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "Status: %d %s\r\n", w.code, http.StatusText(w.code))
	w.header.Write(&head)
	head.WriteString("\r\n")
	return head.Bytes()
}

// Flush sends the CGI header if nothing was written yet; writes are never
// held back.
func (w *response) Flush() { w.Write(nil) }

// SetWriteDeadline bounds the Writes that follow (through
// http.ResponseController): one that cannot send by t fails, and the
// connection is closed once the request ends, since a record may be cut.
// The zero time removes the bound.
func (w *response) SetWriteDeadline(t time.Time) error {
	w.deadline = true
	return w.c.rwc.SetWriteDeadline(t)
}

// Package fastcgi serves an http.Handler to a FastCGI web server (nginx
// fastcgi_pass, Apache mod_proxy_fcgi, mod_fcgid), in the responder role.
//
// It does what net/http/fcgi does for cgichat, at a fraction of the memory
// per open request: net/http/fcgi holds a 64 KiB record buffer per
// connection and a 64 KiB output buffer per request, two goroutines and a
// pipe, which a daemon holding a thousand event streams pays a thousand
// times (docs/performance.md). Here a request is served on
// its connection's goroutine, its head is read through a pooled buffer,
// and every Write goes out at once as one record, through a pooled buffer
// too: an idle stream holds little more than its goroutine.
//
// Web servers send one request at a time per connection; this server does
// not multiplex (it says so to FCGI_GET_VALUES and refuses a second
// request on a busy connection).
package fastcgi

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"strings"
	"sync"
	"time"

	"cgichat/internal/fastcgi/record"
)

// Bounds on what a web server may send.
const (
	maxParams   = 1 << 20   // all of a request's parameters
	maxDrain    = 100 << 20 // body left unread by the handler, read and dropped
	drainWindow = 10 * time.Second
)

// ErrRequestAborted is returned by a body Read after the web server
// aborted the request (FCGI_ABORT_REQUEST).
var ErrRequestAborted = errors.New("fastcgi: request aborted by the web server")

// Serve accepts connections on l and serves each on its own goroutine,
// one request after another, with h. It returns Accept's error.
func Serve(l net.Listener, h http.Handler) error {
	for {
		rwc, err := l.Accept()
		if err != nil {
			return err
		}
		go serveConn(rwc, h)
	}
}

// paramsKey is the context key of a request's FastCGI parameters.
type paramsKey struct{}

// ProcessEnv returns the FastCGI parameters of r that the request does not
// carry otherwise (no HTTP_* record.Header, no standard CGI variable): those a web
// server sets for the program, such as nginx's fastcgi_param or
// mod_fcgid's SetEnv values. Outside FastCGI it returns nil.
func ProcessEnv(r *http.Request) map[string]string {
	env, _ := r.Context().Value(paramsKey{}).(map[string]string)
	return env
}

// inRequest reports whether the request carries the parameter itself, as
// net/http/fcgi decides it.
func inRequest(name string) bool {
	switch name {
	case "CONTENT_LENGTH", "CONTENT_TYPE", "HTTPS", "PATH_INFO", "QUERY_STRING",
		"REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "REQUEST_METHOD",
		"REQUEST_URI", "SCRIPT_NAME", "SERVER_PROTOCOL":
		return true
	}
	return strings.HasPrefix(name, "HTTP_")
}

// readers lends connections a buffer for reading records; a connection
// whose request is read gives it back, so an open stream holds none.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// conn is one connection from the web server.
type conn struct {
	rwc net.Conn
	r   *bufio.Reader // nil while no request is being read
}

// serveConn serves the requests of one connection until it closes or a
// request without FCGI_KEEP_CONN ends.
func serveConn(rwc net.Conn, h http.Handler) {
	c := &conn{rwc: rwc}
	defer func() {
		c.release()
		rwc.Close()
	}()
	for {
		keep, err := c.serveRequest(h)
		if err != nil || !keep {
			return
		}
	}
}

// reader returns the connection's read buffer, borrowing one if needed.
func (c *conn) reader() *bufio.Reader {
	if c.r == nil {
		c.r = readers.Get().(*bufio.Reader)
		c.r.Reset(c.rwc)
	}
	return c.r
}

// release gives the read buffer back when it holds nothing unread.
func (c *conn) release() {
	if c.r != nil && c.r.Buffered() == 0 {
		c.r.Reset(nil)
		readers.Put(c.r)
		c.r = nil
	}
}

// readHeader reads the next record's header.
func (c *conn) readHeader() (record.Header, error) { return record.ReadHeader(c.reader()) }

// readContent reads a record's content into b (which it grows) and skips
// its padding.
func (c *conn) readContent(h record.Header, b []byte) ([]byte, error) {
	r := c.reader()
	start := len(b)
	b = append(b, make([]byte, h.Length)...)
	if _, err := io.ReadFull(r, b[start:]); err != nil {
		return nil, err
	}
	if _, err := r.Discard(h.Padding); err != nil {
		return nil, err
	}
	return b, nil
}

// skip discards a record's content and padding.
func (c *conn) skip(h record.Header) error {
	_, err := c.reader().Discard(h.Length + h.Padding)
	return err
}

// serveRequest reads one request, serves it and ends it; keep says the
// connection may carry another.
func (c *conn) serveRequest(h http.Handler) (keep bool, err error) {
	id, keep, err := c.readBegin()
	if err != nil {
		return false, err
	}
	params, err := c.readParams(id)
	if err != nil {
		return false, err
	}
	// Like net/http/fcgi, wait for the body's first record before the
	// handler runs. Most requests (every stream) have an empty body: then
	// the read buffer goes back at once, for the whole life of the stream.
	body := &stdin{c: c, id: id}
	body.next()
	switch {
	case body.aborted:
		return false, c.endRequest(id, record.StatusRequestComplete)
	case body.err != nil:
		return false, body.err
	case body.done:
		c.release()
	}
	w := &response{c: c, id: id, header: http.Header{}}
	req, err := cgi.RequestFromMap(params)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		c.writeRecord(record.Stderr, id, []byte(err.Error()))
	} else {
		env := make(map[string]string)
		for k, v := range params {
			if !inRequest(k) {
				env[k] = v
			}
		}
		req.Body = body
		req = req.WithContext(context.WithValue(req.Context(), paramsKey{}, env))
		h.ServeHTTP(w, req)
	}
	// Something is always answered, even when the handler wrote nothing.
	w.Write(nil)
	// Read what is left of the body, so the server is not still writing
	// when the connection closes (which would reset it).
	if body.drain() != nil {
		keep = false
	}
	c.release()
	if err := c.endRequest(id, record.StatusRequestComplete); err != nil {
		return false, err
	}
	return keep && !body.aborted, nil
}

// readBegin reads records until a request begins, answering management
// records and refusing roles other than responder.
func (c *conn) readBegin() (id uint16, keep bool, err error) {
	for {
		h, err := c.readHeader()
		if err != nil {
			return 0, false, err
		}
		switch {
		case h.Type == record.BeginRequest:
			b, err := c.readContent(h, nil)
			if err != nil {
				return 0, false, err
			}
			if len(b) < 3 {
				return 0, false, errors.New("fastcgi: short FCGI_BEGIN_REQUEST")
			}
			if role := binary.BigEndian.Uint16(b); role != record.RoleResponder {
				if err := c.endRequest(h.ID, record.StatusUnknownRole); err != nil {
					return 0, false, err
				}
				continue
			}
			return h.ID, b[2]&record.FlagKeepConn != 0, nil
		case h.Type == record.GetValues:
			if err := c.skip(h); err != nil {
				return 0, false, err
			}
			if err := c.writeRecord(record.GetValuesResult, 0, record.AppendPairs(nil, "FCGI_MPXS_CONNS", "0")); err != nil {
				return 0, false, err
			}
		case h.ID == 0:
			if err := c.skip(h); err != nil {
				return 0, false, err
			}
			if err := c.writeRecord(record.UnknownType, 0, []byte{h.Type, 0, 0, 0, 0, 0, 0, 0}); err != nil {
				return 0, false, err
			}
		default:
			// Records of a request that is not (or no longer) open.
			if err := c.skip(h); err != nil {
				return 0, false, err
			}
		}
	}
}

// readParams reads the request's FCGI_PARAMS stream to its empty record.
func (c *conn) readParams(id uint16) (map[string]string, error) {
	var raw []byte
	for {
		h, err := c.readHeader()
		if err != nil {
			return nil, err
		}
		if ok, err := c.other(h, id); ok || err != nil {
			if err != nil {
				return nil, err
			}
			continue
		}
		if h.Type != record.Params {
			return nil, fmt.Errorf("fastcgi: record type %d before the parameters ended", h.Type)
		}
		if h.Length == 0 {
			return record.ParsePairs(raw)
		}
		if len(raw)+h.Length > maxParams {
			return nil, fmt.Errorf("fastcgi: parameters over %d bytes", maxParams)
		}
		if raw, err = c.readContent(h, raw); err != nil {
			return nil, err
		}
	}
}

// other handles a record that does not belong to request id: a second
// request is refused (no multiplexing), anything else skipped. It reports
// whether h was such a record.
func (c *conn) other(h record.Header, id uint16) (bool, error) {
	if h.ID == id {
		return false, nil
	}
	if err := c.skip(h); err != nil {
		return true, err
	}
	if h.Type == record.BeginRequest {
		return true, c.endRequest(h.ID, record.StatusCantMultiplex)
	}
	return true, nil
}

// endRequest ends the request's output and the request.
func (c *conn) endRequest(id uint16, protocolStatus byte) error {
	end := [8]byte{0, 0, 0, 0, protocolStatus}
	b := record.Append(getBuf(), record.Stdout, id, nil)
	b = record.Append(b, record.EndRequest, id, end[:])
	_, err := c.rwc.Write(b)
	putBuf(b)
	return err
}

// writeRecord sends one record of content up to record.MaxContent bytes.
func (c *conn) writeRecord(typ byte, id uint16, content []byte) error {
	b := record.Append(getBuf(), typ, id, content)
	_, err := c.rwc.Write(b)
	putBuf(b)
	return err
}

// bufs lends Write the space to put records together, so that each write
// is one system call and an idle request holds no buffer.
var bufs = sync.Pool{New: func() any { return new([]byte) }}

func getBuf() []byte { return (*bufs.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if cap(b) <= 256<<10 {
		bufs.Put(&b)
	}
}

// stdin is a request's body: its FCGI_STDIN stream, read from the
// connection when the handler reads.
type stdin struct {
	c       *conn
	id      uint16
	left    int  // content of the current record not yet read
	pad     int  // its padding
	done    bool // the empty record (or an abort) ended the stream
	aborted bool
	err     error
}

func (s *stdin) Read(p []byte) (int, error) {
	for s.left == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.done {
			return 0, io.EOF
		}
		s.next()
	}
	n, err := s.c.reader().Read(p[:min(len(p), s.left)])
	s.left -= n
	if err != nil {
		s.err = err
	}
	if s.left == 0 && s.err == nil {
		if _, err := s.c.reader().Discard(s.pad); err != nil {
			s.err = err
		}
	}
	return n, nil
}

// next reads the header of the stream's next record.
func (s *stdin) next() {
	for {
		h, err := s.c.readHeader()
		if err != nil {
			s.err = err
			return
		}
		if ok, err := s.c.other(h, s.id); ok || err != nil {
			if err != nil {
				s.err = err
				return
			}
			continue
		}
		switch h.Type {
		case record.Stdin:
			if h.Length == 0 {
				s.done = true
				s.err = s.c.skip(h)
				return
			}
			s.left, s.pad = h.Length, h.Padding
			return
		case record.AbortRequest:
			s.done, s.aborted, s.err = true, true, ErrRequestAborted
			s.c.skip(h)
			return
		default:
			if err := s.c.skip(h); err != nil {
				s.err = err
				return
			}
		}
	}
}

// Close does nothing: drain reads what the handler left.
func (s *stdin) Close() error { return nil }

// drain reads and drops the rest of the body, within bounds.
func (s *stdin) drain() error {
	if s.done && s.left == 0 {
		return nil
	}
	s.c.rwc.SetReadDeadline(time.Now().Add(drainWindow))
	defer s.c.rwc.SetReadDeadline(time.Time{})
	n, err := io.CopyN(io.Discard, s, maxDrain)
	switch {
	case s.aborted:
		return nil
	case err == io.EOF:
		return nil
	case err == nil && n == maxDrain:
		return errors.New("fastcgi: body left unread is too long")
	}
	return err
}

// response is the http.ResponseWriter of one request. Every Write is sent
// at once, as FCGI_STDOUT records; the CGI header goes with the first.
// Like net/http/fcgi's, Flush reports no error, but the next Write does.
type response struct {
	c           *conn
	id          uint16
	header      http.Header
	code        int
	wroteHeader bool // WriteHeader was called
	sentHeader  bool // the CGI header was sent
	err         error
}

func (w *response) Header() http.Header { return w.header }

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
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 && w.sentHeader {
		return 0, nil
	}
	b := getBuf()
	defer func() { putBuf(b) }()
	content := p
	if !w.sentHeader {
		w.sentHeader = true
		if _, ok := w.header["Content-Type"]; !ok && w.code != http.StatusNotModified {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
		var head strings.Builder
		fmt.Fprintf(&head, "Status: %d %s\r\n", w.code, http.StatusText(w.code))
		w.header.Write(&head)
		head.WriteString("\r\n")
		content = append([]byte(head.String()), p...)
	}
	for len(content) > 0 {
		n := min(len(content), record.MaxContent)
		b = record.Append(b, record.Stdout, w.id, content[:n])
		content = content[n:]
	}
	if _, err := w.c.rwc.Write(b); err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

// Flush sends the CGI header if nothing was written yet; writes are never
// held back.
func (w *response) Flush() { w.Write(nil) }

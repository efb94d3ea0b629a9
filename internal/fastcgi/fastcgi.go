// Package fastcgi serves an http.Handler to a FastCGI web server (nginx
// fastcgi_pass, Apache mod_proxy_fcgi, mod_fcgid), in the responder role.
//
// It does what net/http/fcgi does for cgichat, at a fraction of the memory
// per open request: net/http/fcgi holds a 64 KiB record buffer per
// connection and a 64 KiB output buffer per request, two goroutines and a
// pipe, which a daemon holding a thousand event streams pays a thousand
// times (measured with the benchmark: about 50 KiB resident per stream,
// growing towards 130 KiB as memory is reused). Here a request is served on
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
)

// Record types, roles, flags and protocol statuses (FastCGI specification
// 1.0).
const (
	typeBeginRequest    = 1
	typeAbortRequest    = 2
	typeEndRequest      = 3
	typeParams          = 4
	typeStdin           = 5
	typeStdout          = 6
	typeStderr          = 7
	typeGetValues       = 9
	typeGetValuesResult = 10
	typeUnknownType     = 11

	roleResponder = 1
	flagKeepConn  = 1

	statusRequestComplete = 0
	statusCantMultiplex   = 1
	statusUnknownRole     = 3

	headerLen  = 8
	maxContent = 65535
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
// carry otherwise (no HTTP_* header, no standard CGI variable): those a web
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
	hdr [headerLen]byte
}

// header is a record's header.
type header struct {
	typ     byte
	id      uint16
	length  int
	padding int
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
func (c *conn) readHeader() (header, error) {
	if _, err := io.ReadFull(c.reader(), c.hdr[:]); err != nil {
		return header{}, err
	}
	if c.hdr[0] != 1 {
		return header{}, fmt.Errorf("fastcgi: record version %d, want 1", c.hdr[0])
	}
	return header{
		typ:     c.hdr[1],
		id:      binary.BigEndian.Uint16(c.hdr[2:4]),
		length:  int(binary.BigEndian.Uint16(c.hdr[4:6])),
		padding: int(c.hdr[6]),
	}, nil
}

// readContent reads a record's content into b (which it grows) and skips
// its padding.
func (c *conn) readContent(h header, b []byte) ([]byte, error) {
	r := c.reader()
	start := len(b)
	b = append(b, make([]byte, h.length)...)
	if _, err := io.ReadFull(r, b[start:]); err != nil {
		return nil, err
	}
	if _, err := r.Discard(h.padding); err != nil {
		return nil, err
	}
	return b, nil
}

// skip discards a record's content and padding.
func (c *conn) skip(h header) error {
	_, err := c.reader().Discard(h.length + h.padding)
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
		return false, c.endRequest(id, statusRequestComplete)
	case body.err != nil:
		return false, body.err
	case body.done:
		c.release()
	}
	w := &response{c: c, id: id, header: http.Header{}}
	req, err := cgi.RequestFromMap(params)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		c.writeRecord(typeStderr, id, []byte(err.Error()))
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
	if err := c.endRequest(id, statusRequestComplete); err != nil {
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
		case h.typ == typeBeginRequest:
			b, err := c.readContent(h, nil)
			if err != nil {
				return 0, false, err
			}
			if len(b) < 3 {
				return 0, false, errors.New("fastcgi: short FCGI_BEGIN_REQUEST")
			}
			if role := binary.BigEndian.Uint16(b); role != roleResponder {
				if err := c.endRequest(h.id, statusUnknownRole); err != nil {
					return 0, false, err
				}
				continue
			}
			return h.id, b[2]&flagKeepConn != 0, nil
		case h.typ == typeGetValues:
			if err := c.skip(h); err != nil {
				return 0, false, err
			}
			if err := c.writeRecord(typeGetValuesResult, 0, pairs("FCGI_MPXS_CONNS", "0")); err != nil {
				return 0, false, err
			}
		case h.id == 0:
			if err := c.skip(h); err != nil {
				return 0, false, err
			}
			if err := c.writeRecord(typeUnknownType, 0, []byte{h.typ, 0, 0, 0, 0, 0, 0, 0}); err != nil {
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
		if h.typ != typeParams {
			return nil, fmt.Errorf("fastcgi: record type %d before the parameters ended", h.typ)
		}
		if h.length == 0 {
			return parsePairs(raw)
		}
		if len(raw)+h.length > maxParams {
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
func (c *conn) other(h header, id uint16) (bool, error) {
	if h.id == id {
		return false, nil
	}
	if err := c.skip(h); err != nil {
		return true, err
	}
	if h.typ == typeBeginRequest {
		return true, c.endRequest(h.id, statusCantMultiplex)
	}
	return true, nil
}

// endRequest ends the request's output and the request.
func (c *conn) endRequest(id uint16, protocolStatus byte) error {
	end := [8]byte{0, 0, 0, 0, protocolStatus}
	b := appendRecord(getBuf(), typeStdout, id, nil)
	b = appendRecord(b, typeEndRequest, id, end[:])
	_, err := c.rwc.Write(b)
	putBuf(b)
	return err
}

// writeRecord sends one record of content up to maxContent bytes.
func (c *conn) writeRecord(typ byte, id uint16, content []byte) error {
	b := appendRecord(getBuf(), typ, id, content)
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

// appendRecord appends a record (header, content, padding to a multiple of
// 8) of at most maxContent bytes of content.
func appendRecord(b []byte, typ byte, id uint16, content []byte) []byte {
	pad := -len(content) & 7
	b = append(b, 1, typ, byte(id>>8), byte(id), byte(len(content)>>8), byte(len(content)), byte(pad), 0)
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

// pairs encodes name-value pairs of short names and values.
func pairs(kv ...string) []byte {
	var b []byte
	for i := 0; i+1 < len(kv); i += 2 {
		b = appendSize(b, len(kv[i]))
		b = appendSize(b, len(kv[i+1]))
		b = append(b, kv[i]...)
		b = append(b, kv[i+1]...)
	}
	return b
}

func appendSize(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

// parsePairs decodes FCGI_PARAMS content.
func parsePairs(b []byte) (map[string]string, error) {
	params := make(map[string]string)
	for len(b) > 0 {
		nameLen, n := readSize(b)
		if n == 0 {
			return nil, errors.New("fastcgi: malformed parameters")
		}
		b = b[n:]
		valueLen, n := readSize(b)
		if n == 0 || nameLen+valueLen > len(b)-n {
			return nil, errors.New("fastcgi: malformed parameters")
		}
		b = b[n:]
		params[string(b[:nameLen])] = string(b[nameLen : nameLen+valueLen])
		b = b[nameLen+valueLen:]
	}
	return params, nil
}

// readSize decodes a pair's length: one byte below 128, else four with
// the high bit set. n is 0 when b is too short.
func readSize(b []byte) (size, n int) {
	switch {
	case len(b) == 0:
		return 0, 0
	case b[0] < 128:
		return int(b[0]), 1
	case len(b) < 4:
		return 0, 0
	}
	return int(binary.BigEndian.Uint32(b) &^ (1 << 31)), 4
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
		switch h.typ {
		case typeStdin:
			if h.length == 0 {
				s.done = true
				s.err = s.c.skip(h)
				return
			}
			s.left, s.pad = h.length, h.padding
			return
		case typeAbortRequest:
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
		n := min(len(content), maxContent)
		b = appendRecord(b, typeStdout, w.id, content[:n])
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

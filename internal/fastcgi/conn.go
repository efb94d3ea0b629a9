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
	"sync"
	"syscall"

	"cgichat/internal/fastcgi/record"
)

// maxParams bounds all of a request's parameters (bytes).
const maxParams = 1 << 20

// MaxDrain bounds how much of a body left unread by the handler is read
// and dropped (bytes), so that the web server, still sending it, is not
// reset before it has read the answer.
const MaxDrain = 100 << 20

// Reasons the reader stops without a failure of the connection.
var (
	errNotKept = errors.New("fastcgi: request ended without FCGI_KEEP_CONN")
	errClosing = errors.New("fastcgi: server shutting down")
	errParked  = errors.New("fastcgi: the reader is parked")
)

// readers lends connections a buffer for reading records; a connection
// gives it back as soon as it holds nothing unread, so that one waiting
// for its next record (an idle stream's) holds none.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// conn is one connection from the web server. Its reader (serve) reads
// every record as it comes and answers management records, aborts and
// refused requests itself; a request's handler runs on a goroutine of its
// own (run). The connection closes when both are done.
type conn struct {
	srv     *Server
	id      uint32
	rwc     net.Conn
	raw     syscall.RawConn // nil when rwc has no descriptor to park
	h       http.Handler
	busy    bool   // answered by Server.Busy: one request, then closed
	release func() // frees the connection's place in the server's limits

	// The reader's alone, whichever goroutine plays it.
	r     *bufio.Reader // borrowed while records are read, nil between them
	hdr   [record.HeaderLen]byte
	armed bool // known to the poller

	wmu sync.Mutex // one write of records at a time
	// Under wmu: what TryWrite took and could not send at once, the rest
	// of its record, sent before anything else; and the first write that
	// failed, which may have cut a record, after which nothing is sent.
	pending []byte
	werr    error

	mu      sync.Mutex
	req     *request // the active request (specification, section 3.3)
	closing bool     // no request after the active one: shutdown
	parked  bool     // the reader waits in the poller, with no goroutine
	refs    int      // the reader, and the handler while it runs
}

// serve reads the connection's records until it closes or fails, or a
// request without FCGI_KEEP_CONN ends, or it parks its reader with the
// poller, which calls serve again (ready) when there is something to read.
func (c *conn) serve(ready bool) {
	if c.read(ready) == errParked {
		return
	}
	// Whatever stopped the reader, the web server sends this request
	// nothing more: it ends now (section 5.4: a web server that does not
	// multiplex aborts a request by closing its connection).
	c.mu.Lock()
	req := c.req
	c.mu.Unlock()
	if req != nil && req.started {
		req.stop(ErrConnClosed)
	}
	c.unref()
}

// read handles records until one fails, or the reader parks (errParked).
// ready says the connection has something to read.
func (c *conn) read(ready bool) error {
	for ; ; ready = false {
		if c.r == nil && !ready && c.park() {
			return errParked
		}
		h, err := c.readHeader()
		if err != nil {
			return err
		}
		if err := c.record(h); err != nil {
			return err
		}
		// "The protocol allows senders to pad the records they send, and
		// requires receivers to interpret the paddingLength and skip the
		// paddingData" (section 3.3): every record, of every type, empty
		// or not, is skipped past here.
		if err := c.discard(h.Padding); err != nil {
			return err
		}
		c.putReader()
	}
}

// readHeader reads the next record's header: from the read buffer when it
// holds more, otherwise straight from the connection into the
// connection's own array, so that waiting for a record holds no buffer.
func (c *conn) readHeader() (record.Header, error) {
	var err error
	if c.r != nil {
		_, err = io.ReadFull(c.r, c.hdr[:])
	} else {
		_, err = io.ReadFull(c.rwc, c.hdr[:])
	}
	if err != nil {
		return record.Header{}, err
	}
	return record.ParseHeader(c.hdr)
}

// reader returns the read buffer, borrowing one if needed.
func (c *conn) reader() *bufio.Reader {
	if c.r == nil {
		c.r = readers.Get().(*bufio.Reader)
		c.r.Reset(c.rwc)
	}
	return c.r
}

// putReader gives the read buffer back when it holds nothing unread.
func (c *conn) putReader() {
	if c.r != nil && c.r.Buffered() == 0 {
		c.r.Reset(nil)
		readers.Put(c.r)
		c.r = nil
	}
}

// content reads a record's content.
func (c *conn) content(h record.Header) ([]byte, error) {
	b := make([]byte, h.Length)
	if _, err := io.ReadFull(c.reader(), b); err != nil {
		return nil, err
	}
	return b, nil
}

// discard reads and drops n bytes.
func (c *conn) discard(n int) error {
	if n == 0 {
		return nil
	}
	_, err := c.reader().Discard(n)
	return err
}

// record handles one record, reading exactly its content.
func (c *conn) record(h record.Header) error {
	if h.ID == 0 {
		return c.management(h)
	}
	c.mu.Lock()
	req := c.req
	c.mu.Unlock()
	if h.Type == record.BeginRequest {
		return c.begin(h, req)
	}
	if req == nil || h.ID != req.id {
		// "While a request ID R is inactive, the application ignores
		// records with requestId == R, except for FCGI_BEGIN_REQUEST
		// records" (section 3.3).
		return c.discard(h.Length)
	}
	switch h.Type {
	case record.Params:
		return c.params(h, req)
	case record.Stdin:
		return c.stdin(h, req)
	case record.AbortRequest:
		if err := c.discard(h.Length); err != nil {
			return err
		}
		return c.abort(req)
	}
	// FCGI_DATA belongs to the filter role, the rest are not the web
	// server's to send.
	return c.discard(h.Length)
}

// knownValues are the FCGI_GET_VALUES variables of section 4.1, in its
// order.
var knownValues = []string{"FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"}

// management answers a management record, at once, whatever the request
// in progress: "An application may receive a FCGI_GET_VALUES record at any
// time" (section 4.1).
func (c *conn) management(h record.Header) error {
	b, err := c.content(h)
	if err != nil {
		return err
	}
	if h.Type != record.GetValues {
		// "When an application receives a management record whose type T
		// it does not understand, the application responds with
		// {FCGI_UNKNOWN_TYPE, 0, {T}}" (section 4.2).
		return c.writeRecord(record.UnknownType, 0, []byte{h.Type, 0, 0, 0, 0, 0, 0, 0})
	}
	// "If the application doesn't understand a variable name that was
	// included in the query, it omits that name from the response"; and
	// names not asked are not answered. A malformed query asks nothing.
	asked, _ := record.ParsePairs(b)
	var out []byte
	for _, name := range knownValues {
		if _, ok := asked[name]; !ok {
			continue
		}
		if v, ok := c.srv.value(name); ok {
			out = record.AppendPairs(out, name, v)
		}
	}
	return c.writeRecord(record.GetValuesResult, 0, out)
}

// begin handles FCGI_BEGIN_REQUEST: a new request, or a refusal.
func (c *conn) begin(h record.Header, active *request) error {
	b, err := c.content(h)
	if err != nil {
		return err
	}
	switch {
	case active != nil && active.id == h.ID:
		// Already active: there is nothing to begin.
		return nil
	case active != nil:
		// "FCGI_CANT_MPX_CONN: rejecting a new request. This happens when
		// a Web server sends concurrent requests over one connection to
		// an application that is designed to process one request at a
		// time per connection" (section 5.5). At once, not after the
		// request that runs.
		return c.end(h.ID, record.StatusCantMultiplex)
	case len(b) < 3:
		return errors.New("fastcgi: short FCGI_BEGIN_REQUEST")
	}
	keep := b[2]&record.FlagKeepConn != 0
	if role := binary.BigEndian.Uint16(b); role != record.RoleResponder {
		if err := c.end(h.ID, record.StatusUnknownRole); err != nil {
			return err
		}
		if !keep {
			return errNotKept
		}
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return errClosing
	}
	c.req = &request{id: h.ID, keep: keep && !c.busy}
	return nil
}

// params reads the request's FCGI_PARAMS stream, to its empty record.
func (c *conn) params(h record.Header, req *request) error {
	switch {
	case req.paramsDone:
		return c.discard(h.Length)
	case h.Length == 0:
		params, err := record.ParsePairs(req.raw)
		if err != nil {
			return err
		}
		req.raw, req.params, req.paramsDone = nil, params, true
		return nil
	case len(req.raw)+h.Length > maxParams:
		return fmt.Errorf("fastcgi: parameters over %d bytes", maxParams)
	}
	b, err := c.content(h)
	if err != nil {
		return err
	}
	req.raw = append(req.raw, b...)
	return nil
}

// stdin handles a record of the request's body: the first starts the
// handler, the others go to it as it reads.
func (c *conn) stdin(h record.Header, req *request) error {
	if !req.paramsDone {
		return errors.New("fastcgi: FCGI_STDIN before the parameters ended")
	}
	if !req.started {
		// Wait for the body's first record, as net/http/fcgi does: most
		// requests (every stream) have an empty body, and then need no
		// pipe.
		c.start(req, h.Length > 0)
	}
	switch {
	case req.stdinEnded:
		return c.discard(h.Length)
	case h.Length == 0:
		req.endBody(nil)
		return nil
	}
	return c.pipe(req, h.Length)
}

// pipe hands n bytes of body to the handler as it reads them, straight
// from the read buffer. Once the handler has closed the body (or
// returned), the rest is read and dropped, up to MaxDrain. While the
// handler leaves the body unread, the connection is read no further.
func (c *conn) pipe(req *request, n int) error {
	r := c.reader()
	for n > 0 {
		if r.Buffered() == 0 {
			if _, err := r.Peek(1); err != nil {
				return err
			}
		}
		chunk, _ := r.Peek(min(n, r.Buffered()))
		if !req.bodyClosed {
			if _, err := req.pw.Write(chunk); err != nil {
				req.bodyClosed = true
			}
		}
		if req.bodyClosed {
			if req.dropped += len(chunk); req.dropped > MaxDrain {
				return errors.New("fastcgi: body left unread is too long")
			}
		}
		r.Discard(len(chunk))
		n -= len(chunk)
	}
	return nil
}

// abort handles FCGI_ABORT_REQUEST: "After receiving {FCGI_ABORT_REQUEST,
// R}, the application responds as soon as possible with
// {FCGI_END_REQUEST, R, {FCGI_REQUEST_COMPLETE, appStatus}}" (section
// 5.4). A running handler sees its context end and ends the request; one
// that has not started never does.
func (c *conn) abort(req *request) error {
	if req.started {
		req.stop(ErrRequestAborted)
		return nil
	}
	c.mu.Lock()
	c.req = nil
	c.mu.Unlock()
	if err := c.end(req.id, record.StatusRequestComplete); err != nil {
		return err
	}
	if !req.keep {
		return errNotKept
	}
	return nil
}

// park hands the wait for the next record to the server's poller and
// reports true if the reader's goroutine is to end: the poller starts
// another when there is something to read. Connections answered busy are
// not parked: their deadline works only on a goroutine that reads.
func (c *conn) park() bool {
	p := c.srv.poller.Load()
	if p == nil || c.raw == nil || c.busy {
		return false
	}
	c.mu.Lock()
	c.parked = true
	c.mu.Unlock()
	// Once armed, the connection may wake at once, and its next reader
	// start: nothing of the reader's is touched after.
	add := !c.armed
	c.armed = true
	var armErr error
	err := c.raw.Control(func(fd uintptr) { armErr = p.arm(int(fd), c.id, add) })
	if err == nil && armErr == nil {
		return true
	}
	// Closed, or the poller cannot take it: the reader reads on, unless
	// whoever closed the connection took over its part meanwhile (shut).
	if !c.unpark() {
		return true
	}
	c.armed = !add
	return false
}

// unpark takes the reader's part back from the poller, if it was parked
// there, and reports whether it was.
func (c *conn) unpark() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	parked := c.parked
	c.parked = false
	return parked
}

// shut closes the connection; a reader parked with the poller ends here.
func (c *conn) shut() {
	parked := c.unpark()
	c.rwc.Close()
	if parked {
		c.unref()
	}
}

// closeIfIdle closes the connection if no request is active, and has it
// close after the active one otherwise.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	c.closing = true
	idle := c.req == nil
	c.mu.Unlock()
	if idle {
		c.shut()
	}
}

// unref lets go of the reader's or the handler's hold on the connection;
// the last closes it.
func (c *conn) unref() {
	c.mu.Lock()
	c.refs--
	last := c.refs == 0
	c.mu.Unlock()
	if !last {
		return
	}
	c.rwc.Close()
	// The reader has returned: its buffer is free, whatever it holds.
	if c.r != nil {
		c.r.Reset(nil)
		readers.Put(c.r)
		c.r = nil
	}
	c.release()
	c.srv.untrack(c)
}

// end sends FCGI_END_REQUEST, which makes the request inactive.
func (c *conn) end(id uint16, protocolStatus byte) error {
	body := [8]byte{4: protocolStatus}
	return c.writeRecord(record.EndRequest, id, body[:])
}

// writeRecord sends one record of content up to record.MaxContent bytes.
func (c *conn) writeRecord(typ byte, id uint16, content []byte) error {
	b := record.Append(getBuf(), typ, id, content)
	err := c.write(b)
	putBuf(b)
	return err
}

// write sends b, records put together, in one write: the reader and the
// handler both write.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.sendPending(); err != nil {
		return err
	}
	return c.sent(c.rwc.Write(b))
}

// sent keeps err, a write's, as the connection's first failed write, and
// returns it. The caller holds wmu.
func (c *conn) sent(_ int, err error) error {
	if err != nil && c.werr == nil {
		c.werr = err
	}
	return err
}

// sendPending sends what TryWrite left to send, waiting as a write does,
// after returning the failure of an earlier write if there was one. The
// caller holds wmu.
func (c *conn) sendPending() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.pending) == 0 {
		return nil
	}
	p := c.pending
	c.pending = nil
	return c.sent(c.rwc.Write(p))
}

// tryBytes bounds what TryWrite takes: a longer write (a backlog's chunk)
// is left to Write, which sends it without a copy.
const tryBytes = 16 << 10

// flushPending sends what TryWrite left to send, if anything, waiting as a
// write does.
func (c *conn) flushPending() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.sendPending()
}

// tryWriteStdout sends body, not empty, as one of the request's
// FCGI_STDOUT records if it can without waiting for the web server, and
// reports whether it took it, and whether it sent all of it (else the
// rest is pending). It takes nothing when another write is under way,
// something is pending already, the record would be longer than
// tryBytes, or the socket takes none of it now.
func (c *conn) tryWriteStdout(id uint16, body []byte) (took, sentAll bool, err error) {
	n := len(body)
	if !canTryWrite || c.raw == nil || n == 0 || n > tryBytes || !c.wmu.TryLock() {
		return false, false, nil
	}
	defer c.wmu.Unlock()
	if c.werr != nil {
		return false, false, c.werr
	}
	if len(c.pending) > 0 {
		return false, false, nil
	}
	// One record: tryBytes is less than record.MaxContent.
	b := record.Append(getBuf(), record.Stdout, id, body)
	defer putBuf(b)
	sent, err := c.tryWrite(b)
	switch {
	case err != nil:
		return false, false, c.sent(0, err)
	case sent == 0:
		return false, false, nil
	case sent < len(b):
		c.pending = append([]byte(nil), b[sent:]...)
		return true, false, nil
	}
	return true, true, nil
}

// stdoutBatch bounds the records one writev sends: 16 of the largest make
// 1 MiB, and a longer Write takes several.
const stdoutBatch = 16

// stdoutVec is what writeStdout puts together for one writev: the records'
// headers, and the list of slices (header, content, padding) to send.
type stdoutVec struct {
	hdrs [stdoutBatch][record.HeaderLen]byte
	vec  net.Buffers // per record: header, head's part, body's part, padding
}

// vecs lends writeStdout its lists, so that an idle request holds none.
var vecs = sync.Pool{New: func() any { return &stdoutVec{vec: make(net.Buffers, 0, 4*stdoutBatch)} }}

// zeros pads records to a multiple of 8 bytes.
var zeros [7]byte

// writeStdout sends head followed by body as the request's FCGI_STDOUT
// records, in as few writev calls as their number allows (one for up to
// 1 MiB): the records' headers and padding are put around the caller's
// bytes, which are neither copied nor kept. An event stream's message to a
// thousand readers is then a thousand system calls and no copy.
func (c *conn) writeStdout(id uint16, head, body []byte) error {
	v := vecs.Get().(*stdoutVec)
	defer func() {
		clear(v.vec[:cap(v.vec)])
		v.vec = v.vec[:0]
		vecs.Put(v)
	}()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.sendPending(); err != nil {
		return err
	}
	for len(head)+len(body) > 0 {
		v.vec = v.vec[:0]
		for i := 0; i < stdoutBatch && len(head)+len(body) > 0; i++ {
			n := min(len(head)+len(body), record.MaxContent)
			pad := -n & 7
			v.hdrs[i] = record.Header{Type: record.Stdout, ID: id, Length: n, Padding: pad}.Bytes()
			v.vec = append(v.vec, v.hdrs[i][:])
			if h := min(n, len(head)); h > 0 {
				v.vec = append(v.vec, head[:h])
				head, n = head[h:], n-h
			}
			if n > 0 {
				v.vec = append(v.vec, body[:n])
				body = body[n:]
			}
			if pad > 0 {
				v.vec = append(v.vec, zeros[:pad])
			}
		}
		// WriteTo consumes its list; v.vec keeps the slices to clear.
		vec := v.vec
		if _, err := vec.WriteTo(c.rwc); err != nil {
			return c.sent(0, err)
		}
	}
	return nil
}

// bufs lends writes the space to put records together, so that each write
// is one system call and an idle request holds no buffer.
var bufs = sync.Pool{New: func() any { return new([]byte) }}

func getBuf() []byte { return (*bufs.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if cap(b) <= 256<<10 {
		bufs.Put(&b)
	}
}

// closedChan is a body's end when it had none.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// start starts the handler of req on a goroutine of its own.
func (c *conn) start(req *request, hasBody bool) {
	req.started = true
	base := c.srv.BaseContext
	if base == nil {
		base = context.Background()
	}
	req.ctx, req.cancel = context.WithCancelCause(base)
	var body io.ReadCloser = http.NoBody
	if hasBody {
		pr, pw := io.Pipe()
		body, req.pw, req.stdinDone = pr, pw, make(chan struct{})
	} else {
		req.stdinEnded, req.stdinDone = true, closedChan
	}
	c.mu.Lock()
	c.refs++
	c.mu.Unlock()
	go c.run(req, body)
}

// Package fcgiclient is a small FastCGI client in the shape of an
// http.Handler: it forwards each request to a FastCGI server and streams
// the answer back, flushing as records arrive, as nginx's fastcgi_pass
// does with buffering off. Tests use it to reach the programs' FastCGI
// modes without a web server.
package fcgiclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"cgichat/internal/fastcgi/record"
)

// Handler forwards requests to the FastCGI server at Network/Address.
type Handler struct {
	Network string            // "unix" or "tcp"
	Address string            // socket path or host:port
	Params  map[string]string // extra parameters, like nginx's fastcgi_param
	// Stderr receives the server's FCGI_STDERR output; nil discards it.
	Stderr io.Writer
}

// ServeHTTP sends r as one FastCGI request and relays the response. When
// the client goes away the connection to the server is closed, which is
// all a FastCGI application can notice.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := net.Dial(h.Network, h.Address)
	if err != nil {
		http.Error(w, "fcgiclient: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-r.Context().Done():
			conn.Close()
		case <-stop:
		}
	}()
	if err := h.send(conn, r); err != nil {
		http.Error(w, "fcgiclient: "+err.Error(), http.StatusBadGateway)
		return
	}
	h.relay(w, conn)
}

// send writes the request, as request id 1: begin, parameters, body.
func (h *Handler) send(conn net.Conn, r *http.Request) error {
	const id = 1
	b := record.Append(nil, record.BeginRequest, id, []byte{0, record.RoleResponder, 0, 0, 0, 0, 0, 0})
	var params []byte
	for k, v := range h.params(r) {
		params = record.AppendPairs(params, k, v)
	}
	b = record.AppendStream(b, record.Params, id, params)
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return err
		}
	}
	b = record.AppendStream(b, record.Stdin, id, body)
	_, err := conn.Write(b)
	return err
}

// params returns the CGI variables for r plus h.Params.
func (h *Handler) params(r *http.Request) map[string]string {
	host, port, _ := net.SplitHostPort(r.Host)
	raddr, rport, _ := net.SplitHostPort(r.RemoteAddr)
	p := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"REQUEST_METHOD":    r.Method,
		"REQUEST_URI":       r.URL.RequestURI(),
		"SCRIPT_NAME":       r.URL.Path,
		"QUERY_STRING":      r.URL.RawQuery,
		"SERVER_PROTOCOL":   r.Proto,
		"SERVER_NAME":       host,
		"SERVER_PORT":       port,
		"HTTP_HOST":         r.Host,
		"REMOTE_ADDR":       raddr,
		"REMOTE_PORT":       rport,
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		p["CONTENT_TYPE"] = ct
	}
	if r.ContentLength >= 0 {
		p["CONTENT_LENGTH"] = strconv.FormatInt(r.ContentLength, 10)
	}
	for k, vs := range r.Header {
		if k == "Content-Type" || k == "Content-Length" {
			continue
		}
		p["HTTP_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_"))] = strings.Join(vs, ", ")
	}
	for k, v := range h.Params {
		p[k] = v
	}
	return p
}

// relay reads the response records: the CGI header block, then the body,
// flushed record by record.
func (h *Handler) relay(w http.ResponseWriter, conn net.Conn) {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(h.readRecords(conn, pw))
	}()
	defer pr.Close()
	br := bufio.NewReader(pr)
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		http.Error(w, "fcgiclient: bad response header: "+err.Error(), http.StatusBadGateway)
		return
	}
	status := http.StatusOK
	if s := hdr.Get("Status"); s != "" {
		if status, err = strconv.Atoi(strings.Fields(s)[0]); err != nil {
			http.Error(w, "fcgiclient: bad Status: "+s, http.StatusBadGateway)
			return
		}
		hdr.Del("Status")
	}
	for k, vs := range hdr {
		w.Header()[k] = vs
	}
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if br.Buffered() == 0 {
				rc.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// readRecords copies FCGI_STDOUT content to out until FCGI_END_REQUEST.
func (h *Handler) readRecords(conn net.Conn, out io.Writer) error {
	br := bufio.NewReader(conn)
	for {
		head, err := record.ReadHeader(br)
		if err != nil {
			return fmt.Errorf("fcgiclient: read record: %w", err)
		}
		content := make([]byte, head.Length+head.Padding)
		if _, err := io.ReadFull(br, content); err != nil {
			return fmt.Errorf("fcgiclient: read record: %w", err)
		}
		content = content[:head.Length]
		switch head.Type {
		case record.Stdout:
			if _, err := out.Write(content); err != nil {
				return err
			}
		case record.Stderr:
			if h.Stderr != nil {
				h.Stderr.Write(content)
			}
		case record.EndRequest:
			return io.EOF
		default:
			return errors.New("fcgiclient: unexpected record type " + strconv.Itoa(int(head.Type)))
		}
	}
}

// Conn is a raw FastCGI connection for tests that hold many requests open
// or speak the protocol record by record, without an HTTP front.
type Conn struct {
	net.Conn
	br *bufio.Reader
}

// Dial connects to the FastCGI server at network/address.
func Dial(network, address string) (*Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c, br: bufio.NewReaderSize(c, 512)}, nil
}

// Send writes one whole request (Request).
func (c *Conn) Send(id uint16, keep bool, params map[string]string, body []byte) error {
	_, err := c.Write(Request(id, keep, params, body))
	return err
}

// Request returns the records of one whole request as request id:
// FCGI_BEGIN_REQUEST (with FCGI_KEEP_CONN when keep), the parameters, and
// body as FCGI_STDIN.
func Request(id uint16, keep bool, params map[string]string, body []byte) []byte {
	var flags byte
	if keep {
		flags = record.FlagKeepConn
	}
	b := record.Append(nil, record.BeginRequest, id, []byte{0, record.RoleResponder, flags, 0, 0, 0, 0, 0})
	var p []byte
	for k, v := range params {
		p = record.AppendPairs(p, k, v)
	}
	b = record.AppendStream(b, record.Params, id, p)
	return record.AppendStream(b, record.Stdin, id, body)
}

// Next reads the next record, its padding skipped.
func (c *Conn) Next() (record.Header, []byte, error) {
	h, err := record.ReadHeader(c.br)
	if err != nil {
		return h, nil, err
	}
	b := make([]byte, h.Length+h.Padding)
	if _, err := io.ReadFull(c.br, b); err != nil {
		return h, nil, err
	}
	return h, b[:h.Length], nil
}

// ReadUntil reads FCGI_STDOUT records of request id until their content,
// from the first, contains s; it returns the content, and io.EOF if the
// request ended first.
func (c *Conn) ReadUntil(id uint16, s string) (string, error) {
	return c.read(id, func(out string) bool { return strings.Contains(out, s) })
}

// ReadResponse reads request id's response to its FCGI_END_REQUEST and
// parses it: the status, the header and the body.
func (c *Conn) ReadResponse(id uint16) (*http.Response, error) {
	out, err := c.read(id, func(string) bool { return false })
	if err != io.EOF {
		return nil, err
	}
	return ParseResponse(out)
}

// read collects request id's FCGI_STDOUT content until done says so or the
// request ends (io.EOF); records of other requests are skipped.
func (c *Conn) read(id uint16, done func(string) bool) (string, error) {
	var out strings.Builder
	for !done(out.String()) {
		h, b, err := c.Next()
		switch {
		case err != nil:
			return out.String(), err
		case h.ID != id:
		case h.Type == record.Stdout:
			out.Write(b)
		case h.Type == record.EndRequest:
			return out.String(), io.EOF
		}
	}
	return out.String(), nil
}

// ParseResponse parses a CGI response (a header block, then the body).
func ParseResponse(out string) (*http.Response, error) {
	br := bufio.NewReader(strings.NewReader(out))
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("fcgiclient: bad response header: %w", err)
	}
	res := &http.Response{StatusCode: http.StatusOK, Header: http.Header(hdr)}
	if s := hdr.Get("Status"); s != "" {
		if res.StatusCode, err = strconv.Atoi(strings.Fields(s)[0]); err != nil {
			return nil, fmt.Errorf("fcgiclient: bad Status %q", s)
		}
	}
	body, _ := io.ReadAll(br)
	res.Body = io.NopCloser(strings.NewReader(string(body)))
	return res, nil
}

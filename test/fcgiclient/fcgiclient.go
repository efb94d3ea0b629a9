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

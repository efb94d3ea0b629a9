// Package fcgiclient is a small FastCGI client in the shape of an
// http.Handler: it forwards each request to a FastCGI server and streams
// the answer back, flushing as records arrive, as nginx's fastcgi_pass
// does with buffering off. Tests use it to reach the programs' FastCGI
// modes without a web server.
package fcgiclient

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// FastCGI record types and the responder role (FastCGI specification 1.0).
const (
	typeBeginRequest = 1
	typeEndRequest   = 3
	typeParams       = 4
	typeStdin        = 5
	typeStdout       = 6
	typeStderr       = 7
	roleResponder    = 1
	maxContent       = 65535
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

// send writes the request: begin, parameters, body.
func (h *Handler) send(conn net.Conn, r *http.Request) error {
	bw := bufio.NewWriter(conn)
	begin := []byte{0, roleResponder, 0, 0, 0, 0, 0, 0}
	writeRecord(bw, typeBeginRequest, begin)
	var params []byte
	for k, v := range h.params(r) {
		params = appendPair(params, k, v)
	}
	writeStream(bw, typeParams, params)
	if r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		writeStream(bw, typeStdin, body)
	} else {
		writeStream(bw, typeStdin, nil)
	}
	return bw.Flush()
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
	var head [8]byte
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			return fmt.Errorf("fcgiclient: read record: %w", err)
		}
		n := int(binary.BigEndian.Uint16(head[4:6]))
		content := make([]byte, n+int(head[6]))
		if _, err := io.ReadFull(br, content); err != nil {
			return fmt.Errorf("fcgiclient: read record: %w", err)
		}
		content = content[:n]
		switch head[1] {
		case typeStdout:
			if _, err := out.Write(content); err != nil {
				return err
			}
		case typeStderr:
			if h.Stderr != nil {
				h.Stderr.Write(content)
			}
		case typeEndRequest:
			return io.EOF
		default:
			return errors.New("fcgiclient: unexpected record type " + strconv.Itoa(int(head[1])))
		}
	}
}

// writeStream writes content as records of type t, then the empty record
// that ends the stream.
func writeStream(w io.Writer, t byte, content []byte) {
	for len(content) > 0 {
		n := min(len(content), maxContent)
		writeRecord(w, t, content[:n])
		content = content[n:]
	}
	writeRecord(w, t, nil)
}

// writeRecord writes one record of request id 1.
func writeRecord(w io.Writer, t byte, content []byte) {
	head := []byte{1, t, 0, 1, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(head[4:6], uint16(len(content)))
	w.Write(head)
	w.Write(content)
}

// appendPair appends one name-value pair in FastCGI's length encoding.
func appendPair(b []byte, k, v string) []byte {
	b = appendLen(b, len(k))
	b = appendLen(b, len(v))
	return append(append(b, k...), v...)
}

func appendLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

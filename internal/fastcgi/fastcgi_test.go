package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"cgichat/internal/fastcgi/record"
	"cgichat/test/fcgiclient"
)

// serve serves h on a fresh Unix socket and returns its path.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	return serveWith(t, &Server{Handler: h})
}

// front returns an HTTP server that forwards to h over FastCGI, as a web
// server does, passing params as its fastcgi_param.
func front(t *testing.T, h http.Handler, params map[string]string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(&fcgiclient.Handler{Network: "unix", Address: serve(t, h), Params: params})
	t.Cleanup(s.Close)
	return s
}

func TestRequests(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 12<<10) // 192 KiB: several records
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/env":
			env := ProcessEnv(r)
			fmt.Fprintf(w, "CHAT_X=%s HTTP_ACCEPT=%q QUERY_STRING=%q query=%s", env["CHAT_X"], env["HTTP_ACCEPT"], env["QUERY_STRING"], r.URL.Query().Get("a"))
		case "/echo":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(b)
		case "/big":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, big)
		case "/nothing":
		case "/teapot":
			w.WriteHeader(http.StatusTeapot)
		case "/unread":
			io.WriteString(w, "did not read the body")
		}
	})
	s := front(t, h, map[string]string{"CHAT_X": "1"})
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string
		contentType              string
	}{
		{"Env", "GET", "/env?a=b", "", 200, `CHAT_X=1 HTTP_ACCEPT="" QUERY_STRING="" query=b`, "text/plain; charset=utf-8"},
		{"PostBody", "POST", "/echo", big, 200, big, "application/octet-stream"},
		{"BigResponse", "GET", "/big", "", 200, big, "text/plain"},
		{"Nothing", "GET", "/nothing", "", 200, "", "text/plain; charset=utf-8"},
		{"Status", "GET", "/teapot", "", http.StatusTeapot, "", "text/plain; charset=utf-8"},
		{"UnreadBody", "POST", "/unread", big, 200, "did not read the body", "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, s.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Accept", "text/plain")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if g, e := resp.StatusCode, tt.status; g != e {
				t.Errorf("status: got %d, want %d", g, e)
			}
			if string(got) != tt.want {
				t.Errorf("body: got %d bytes %.80q, want %d bytes %.80q", len(got), got, len(tt.want), tt.want)
			}
			if g, e := resp.Header.Get("Content-Type"), tt.contentType; g != e {
				t.Errorf("Content-Type: got %q, want %q", g, e)
			}
			if resp.Header.Get("Date") == "" {
				t.Errorf("no Date header")
			}
		})
	}
}

// TestWritesAreNotHeld checks that each Write reaches the client while the
// handler is still running: event streams depend on it.
func TestWritesAreNotHeld(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	})
	s := front(t, h, nil)
	resp, err := http.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("got %q, %v; want the first line while the handler waits", line, err)
	}
	close(release)
	line, err = br.ReadString('\n')
	if err != nil || line != "second\n" {
		t.Fatalf("got %q, %v; want the second line", line, err)
	}
}

// TestWriteFailsWhenServerLeaves checks that a handler learns from a Write
// that the web server closed the connection, as a stream's heartbeat does.
func TestWriteFailsWhenServerLeaves(t *testing.T) {
	failed := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 500 {
			if _, err := io.WriteString(w, "ping\n"); err != nil {
				failed <- err
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
		failed <- nil
	})
	s := front(t, h, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bufio.NewReader(resp.Body).ReadString('\n')
	cancel()
	resp.Body.Close()
	select {
	case err := <-failed:
		if err == nil {
			t.Fatal("every write succeeded after the connection closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes 10 s after the connection closed")
	}
}

// raw is one FastCGI record as a raw test client reads it.
type raw struct {
	typ     byte
	id      uint16
	content []byte
}

func writeRaw(t *testing.T, c net.Conn, typ byte, id uint16, content []byte) {
	t.Helper()
	if _, err := c.Write(record.Append(nil, typ, id, content)); err != nil {
		t.Fatal(err)
	}
}

func readRaw(t *testing.T, r *bufio.Reader) raw {
	t.Helper()
	h, err := record.ReadHeader(r)
	if err != nil {
		t.Fatalf("reading a record: %v", err)
	}
	b := make([]byte, h.Length+h.Padding)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("reading a record: %v", err)
	}
	return raw{h.Type, h.ID, b[:h.Length]}
}

// TestProtocol speaks FastCGI by hand: management records, a refused role,
// a refused second request, and two requests on one kept connection.
func TestProtocol(t *testing.T) {
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Query().Get("n"))
	}))
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)

	writeRaw(t, c, record.GetValues, 0, record.AppendPairs(nil, "FCGI_MPXS_CONNS", ""))
	if rec := readRaw(t, r); rec.typ != record.GetValuesResult || !bytes.Equal(rec.content, record.AppendPairs(nil, "FCGI_MPXS_CONNS", "0")) {
		t.Errorf("FCGI_GET_VALUES: got type %d %q, want FCGI_MPXS_CONNS=0", rec.typ, rec.content)
	}
	writeRaw(t, c, 42, 0, nil)
	if rec := readRaw(t, r); rec.typ != record.UnknownType || rec.content[0] != 42 {
		t.Errorf("an unknown management record: got type %d %v, want FCGI_UNKNOWN_TYPE for 42", rec.typ, rec.content)
	}
	writeRaw(t, c, record.BeginRequest, 7, []byte{0, 2, record.FlagKeepConn, 0, 0, 0, 0, 0}) // authorizer
	if rec := readEnd(t, r, 7); rec.content[4] != record.StatusUnknownRole {
		t.Errorf("authorizer role: got protocol status %d, want %d", rec.content[4], record.StatusUnknownRole)
	}

	for _, n := range []string{"1", "2"} {
		id := uint16(10 + len(n))
		writeRaw(t, c, record.BeginRequest, id, []byte{0, record.RoleResponder, record.FlagKeepConn, 0, 0, 0, 0, 0})
		writeRaw(t, c, record.Params, id, record.AppendPairs(nil, "REQUEST_METHOD", "GET", "SERVER_PROTOCOL", "HTTP/1.1", "QUERY_STRING", "n="+n, "REQUEST_URI", "/?n="+n))
		writeRaw(t, c, record.Params, id, nil)
		if n == "2" {
			// A second request while one is open: refused.
			writeRaw(t, c, record.BeginRequest, 99, []byte{0, record.RoleResponder, record.FlagKeepConn, 0, 0, 0, 0, 0})
			if rec := readEnd(t, r, 99); rec.content[4] != record.StatusCantMultiplex {
				t.Errorf("second request: got protocol status %d, want %d", rec.content[4], record.StatusCantMultiplex)
			}
		}
		writeRaw(t, c, record.Stdin, id, nil)
		var out []byte
		for {
			rec := readRaw(t, r)
			if rec.typ == record.EndRequest {
				if rec.id != id || rec.content[4] != record.StatusRequestComplete {
					t.Errorf("request %s: got end of request %d status %d", n, rec.id, rec.content[4])
				}
				break
			}
			if rec.typ != record.Stdout || rec.id != id {
				t.Fatalf("request %s: got record type %d of request %d", n, rec.typ, rec.id)
			}
			out = append(out, rec.content...)
		}
		if !bytes.HasPrefix(out, []byte("Status: 200 OK\r\n")) || !bytes.HasSuffix(out, []byte("\r\n\r\n"+n)) {
			t.Errorf("request %s: got %q", n, out)
		}
	}
}

// readEnd reads until request id's FCGI_END_REQUEST.
func readEnd(t *testing.T, r *bufio.Reader, id uint16) raw {
	t.Helper()
	for range 100 {
		if rec := readRaw(t, r); rec.typ == record.EndRequest && rec.id == id {
			return rec
		}
	}
	t.Fatal("no FCGI_END_REQUEST")
	return raw{}
}

// beginGet sends a GET request with query q as request id, on a kept
// connection.
func beginGet(t *testing.T, c net.Conn, id uint16, q string) {
	t.Helper()
	writeRaw(t, c, record.BeginRequest, id, []byte{0, record.RoleResponder, record.FlagKeepConn, 0, 0, 0, 0, 0})
	writeRaw(t, c, record.Params, id, record.AppendPairs(nil, "REQUEST_METHOD", "GET", "SERVER_PROTOCOL", "HTTP/1.1", "QUERY_STRING", q, "REQUEST_URI", "/?"+q))
	writeRaw(t, c, record.Params, id, nil)
	writeRaw(t, c, record.Stdin, id, nil)
}

// TestStdoutRecords checks the records a Write becomes, byte for byte:
// the CGI header and the content share records of at most 65,535 bytes,
// each padded to a multiple of 8, and the content is the caller's bytes.
func TestStdoutRecords(t *testing.T) {
	sizes := map[string]int{"empty": 0, "small": 5, "one record": record.MaxContent, "several": 3*record.MaxContent + 11, "over a batch": (stdoutBatch+2)*record.MaxContent + 3}
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := sizes[r.URL.Query().Get("size")]
		w.Header().Set("Content-Type", "text/plain")
		w.Write(bytes.Repeat([]byte{'x'}, n))
		w.Write([]byte("end"))
	}))
	for name, n := range sizes {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			beginGet(t, c, 1, "size="+url.QueryEscape(name))
			var out []byte
			for {
				h, err := record.ReadHeader(r)
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, h.Length+h.Padding)
				if _, err := io.ReadFull(r, b); err != nil {
					t.Fatal(err)
				}
				if h.Type == record.EndRequest {
					break
				}
				if h.Type != record.Stdout || h.ID != 1 || h.Length > record.MaxContent || (h.Length+h.Padding)%8 != 0 || h.Padding > 7 {
					t.Fatalf("record %+v: want FCGI_STDOUT of request 1, at most %d bytes, padded to a multiple of 8 and no further", h, record.MaxContent)
				}
				out = append(out, b[:h.Length]...)
			}
			_, body, ok := bytes.Cut(out, []byte("\r\n\r\n"))
			if want := append(bytes.Repeat([]byte{'x'}, n), "end"...); !ok || !bytes.HasPrefix(out, []byte("Status: 200 OK\r\n")) || !bytes.Equal(body, want) {
				t.Errorf("got %d bytes starting %.80q; want the header and %d bytes of body", len(out), out, len(want))
			}
		})
	}
}

// TestWriteDeadline checks that a Write to a web server that reads nothing
// fails once the deadline set through http.ResponseController passes (as
// a stream's does for a reader who stopped reading), and that the
// connection, which may hold a cut record, is then closed.
func TestWriteDeadline(t *testing.T) {
	failed := make(chan error, 1)
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		chunk := bytes.Repeat([]byte{'x'}, 64<<10)
		for range 1000 { // 64 MiB: far more than the socket's buffers
			if err := rc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
				failed <- err
				return
			}
			if _, err := w.Write(chunk); err != nil {
				failed <- err
				return
			}
		}
		failed <- nil
	})}
	c, err := net.Dial("unix", serveWith(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	beginGet(t, c, 1, "")
	select {
	case err := <-failed:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the handler's Write failed with %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes 10 s after its client stopped reading")
	}
	// The server lets the connection go without waiting for this client
	// to read; what was sent can still be read, then its end.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		srv.mu.Lock()
		open := len(srv.conns)
		srv.mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server still holds the connection 10 s after the write failed, waiting for a client that reads nothing")
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("reading to the end of the connection: %v, want its close", err)
	}
}

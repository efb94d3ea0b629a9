package fastcgi

// The responder held to the FastCGI 1.0 specification, record by record:
// each test names the sentence it checks.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cgichat/internal/fastcgi/record"
)

// padded returns one record with pad bytes of padding, which are not
// zeros: a receiver that does not skip them reads garbage as the next
// header.
func padded(typ byte, id uint16, content []byte, pad int) []byte {
	b := []byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, bytes.Repeat([]byte{0xAA}, pad)...)
}

// begin is the content of FCGI_BEGIN_REQUEST for a responder.
func begin(keep bool) []byte {
	var flags byte
	if keep {
		flags = record.FlagKeepConn
	}
	return []byte{0, record.RoleResponder, flags, 0, 0, 0, 0, 0}
}

// getParams are the parameters of GET /path?query.
func getParams(path, query string) []byte {
	return record.AppendPairs(nil, "REQUEST_METHOD", "GET", "SERVER_PROTOCOL", "HTTP/1.1",
		"SCRIPT_NAME", path, "REQUEST_URI", path+"?"+query, "QUERY_STRING", query)
}

// dialRaw connects to sock with a deadline that ends a test that waits
// for an answer that never comes.
func dialRaw(t *testing.T, network, address string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// send writes records.
func send(t *testing.T, c net.Conn, records ...[]byte) {
	t.Helper()
	if _, err := c.Write(slices.Concat(records...)); err != nil {
		t.Fatal(err)
	}
}

// answer reads request id's FCGI_STDOUT to its FCGI_END_REQUEST and
// returns the body (after the CGI header, if this output has it) and the
// protocol status.
func answer(t *testing.T, r *bufio.Reader, id uint16) (body string, status byte) {
	t.Helper()
	var out []byte
	for {
		rec := readRaw(t, r)
		switch {
		case rec.id != id:
			t.Fatalf("a record of type %d for request %d while request %d runs", rec.typ, rec.id, id)
		case rec.typ == record.Stdout:
			out = append(out, rec.content...)
		case rec.typ == record.EndRequest:
			if _, b, ok := strings.Cut(string(out), "\r\n\r\n"); ok {
				return b, rec.content[4]
			}
			return string(out), rec.content[4]
		}
	}
}

// echo answers with the query's n and the body.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	io.WriteString(w, r.URL.Query().Get("n")+":"+string(b))
})

// TestPaddingSkipped sends each record type with padding, empty records
// included: "The protocol allows senders to pad the records they send,
// and requires receivers to interpret the paddingLength and skip the
// paddingData" (section 3.3). Each request must be answered in full, and
// the connection must carry the next.
func TestPaddingSkipped(t *testing.T) {
	sock := serve(t, echo)
	const id = 1
	plain := func(typ byte, content []byte) []byte { return record.Append(nil, typ, id, content) }
	tests := []struct {
		name    string
		records [][]byte
		want    string
	}{
		{"BeginRequest", [][]byte{padded(record.BeginRequest, id, begin(true), 3), plain(record.Params, getParams("/", "n=1")), plain(record.Params, nil), plain(record.Stdin, nil)}, "1:"},
		{"Params", [][]byte{plain(record.BeginRequest, begin(true)), padded(record.Params, id, getParams("/", "n=2"), 5), plain(record.Params, nil), plain(record.Stdin, nil)}, "2:"},
		{"EmptyParams", [][]byte{plain(record.BeginRequest, begin(true)), plain(record.Params, getParams("/", "n=3")), padded(record.Params, id, nil, 8), plain(record.Stdin, nil)}, "3:"},
		{"EmptyParamsMostPadding", [][]byte{plain(record.BeginRequest, begin(true)), plain(record.Params, getParams("/", "n=4")), padded(record.Params, id, nil, 255), plain(record.Stdin, nil)}, "4:"},
		{"Stdin", [][]byte{plain(record.BeginRequest, begin(true)), plain(record.Params, getParams("/", "n=5")), plain(record.Params, nil), padded(record.Stdin, id, []byte("body"), 4), plain(record.Stdin, nil)}, "5:body"},
		{"EmptyStdin", [][]byte{plain(record.BeginRequest, begin(true)), plain(record.Params, getParams("/", "n=6")), plain(record.Params, nil), padded(record.Stdin, id, nil, 7)}, "6:"},
		{"EmptyStdinAfterBody", [][]byte{plain(record.BeginRequest, begin(true)), plain(record.Params, getParams("/", "n=7")), plain(record.Params, nil), plain(record.Stdin, []byte("x")), padded(record.Stdin, id, nil, 1)}, "7:x"},
		{"Data", [][]byte{plain(record.BeginRequest, begin(true)), plain(record.Params, getParams("/", "n=8")), plain(record.Params, nil), padded(record.Data, id, []byte("filter data"), 6), plain(record.Stdin, nil)}, "8:"},
		{"InactiveRequest", [][]byte{padded(record.Stdin, 9, []byte("stray"), 2), padded(record.AbortRequest, 9, nil, 4), plain(record.BeginRequest, begin(true)), plain(record.Params, getParams("/", "n=9")), plain(record.Params, nil), plain(record.Stdin, nil)}, "9:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, r := dialRaw(t, "unix", sock)
			send(t, c, tt.records...)
			if body, status := answer(t, r, id); body != tt.want || status != record.StatusRequestComplete {
				t.Errorf("got %q, protocol status %d; want %q, %d", body, status, tt.want, record.StatusRequestComplete)
			}
			// The connection is still in step: the next request is answered.
			send(t, c, plain(record.BeginRequest, begin(false)), plain(record.Params, getParams("/", "n=next")), plain(record.Params, nil), plain(record.Stdin, nil))
			if body, _ := answer(t, r, id); body != "next:" {
				t.Errorf("the next request: got %q, want %q", body, "next:")
			}
		})
	}

	// Management records are discrete: padded too.
	t.Run("Management", func(t *testing.T) {
		t.Parallel()
		c, r := dialRaw(t, "unix", sock)
		send(t, c, padded(record.GetValues, 0, record.AppendPairs(nil, "FCGI_MPXS_CONNS", ""), 6), padded(42, 0, []byte("x"), 7))
		if rec := readRaw(t, r); rec.typ != record.GetValuesResult {
			t.Errorf("got record type %d, want FCGI_GET_VALUES_RESULT", rec.typ)
		}
		if rec := readRaw(t, r); rec.typ != record.UnknownType || rec.content[0] != 42 {
			t.Errorf("got record type %d %v, want FCGI_UNKNOWN_TYPE for 42", rec.typ, rec.content)
		}
		send(t, c, record.Append(nil, record.BeginRequest, 1, begin(false)), record.AppendStream(nil, record.Params, 1, getParams("/", "n=m")), record.Append(nil, record.Stdin, 1, nil))
		if body, _ := answer(t, r, 1); body != "m:" {
			t.Errorf("the request after them: got %q, want %q", body, "m:")
		}
	})
}

// waiting is a handler that writes "started", then waits for its context
// or release, then tries to write "after"; it reports how it ended.
type waiting struct {
	release chan struct{}
	ended   chan error // the context's cause, or nil when released
	wrote   chan error // the error of the write after
}

func newWaiting() *waiting {
	return &waiting{release: make(chan struct{}), ended: make(chan error, 10), wrote: make(chan error, 10)}
}

func (h *waiting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "started")
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
		h.ended <- context.Cause(r.Context())
	case <-h.release:
		h.ended <- nil
	}
	_, err := io.WriteString(w, "after")
	h.wrote <- err
}

// wait returns what c delivers within 10 s, or fails the test.
func wait[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s after 10 s", what)
	}
	var zero T
	return zero
}

// start sends a kept GET request id and reads its "started".
func start(t *testing.T, c net.Conn, r *bufio.Reader, id uint16) {
	t.Helper()
	send(t, c, record.Append(nil, record.BeginRequest, id, begin(true)), record.AppendStream(nil, record.Params, id, getParams("/", "")), record.Append(nil, record.Stdin, id, nil))
	var out []byte
	for !bytes.HasSuffix(out, []byte("started")) {
		rec := readRaw(t, r)
		if rec.typ != record.Stdout || rec.id != id {
			t.Fatalf("got record type %d of request %d before the handler's first write", rec.typ, rec.id)
		}
		out = append(out, rec.content...)
	}
}

// TestAbort checks section 5.4: "After receiving {FCGI_ABORT_REQUEST, R},
// the application responds as soon as possible with {FCGI_END_REQUEST, R,
// {FCGI_REQUEST_COMPLETE, appStatus}}". The handler of a running request
// (an event stream) sees its context end at once, with
// ErrRequestAborted; nothing it writes afterwards is sent; the kept
// connection serves the next request.
func TestAbort(t *testing.T) {
	h := newWaiting()
	sock := serve(t, h)
	c, r := dialRaw(t, "unix", sock)
	start(t, c, r, 1)
	send(t, c, record.Append(nil, record.AbortRequest, 1, nil))
	if err := wait(t, h.ended, "end of the handler's context"); !errors.Is(err, ErrRequestAborted) {
		t.Errorf("the context ended with %v, want ErrRequestAborted", err)
	}
	if err := wait(t, h.wrote, "write after the abort"); !errors.Is(err, ErrRequestAborted) {
		t.Errorf("a write after the abort: got %v, want ErrRequestAborted", err)
	}
	if body, status := answer(t, r, 1); body != "" || status != record.StatusRequestComplete {
		t.Errorf("after the abort: got more output %q and protocol status %d, want none and FCGI_REQUEST_COMPLETE", body, status)
	}
	// FCGI_KEEP_CONN: the connection serves the next request.
	start(t, c, r, 2)
	close(h.release)
	if err := wait(t, h.ended, "end of the second request"); err != nil {
		t.Errorf("the second request's context ended with %v", err)
	}
	if body, status := answer(t, r, 2); body != "after" || status != record.StatusRequestComplete {
		t.Errorf("the second request: got %q, status %d; want %q, FCGI_REQUEST_COMPLETE", body, status, "after")
	}
}

// TestAbortBeforeHandler aborts requests whose handler never started:
// during the parameters, and while the body is being read. The first ends
// at once without the handler; in the second, the handler's body read
// fails with ErrRequestAborted.
func TestAbortBeforeHandler(t *testing.T) {
	reads := make(chan error, 1)
	ran := make(chan struct{}, 1)
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran <- struct{}{}
		_, err := io.ReadAll(r.Body)
		reads <- err
	}))
	c, r := dialRaw(t, "unix", sock)
	send(t, c, record.Append(nil, record.BeginRequest, 1, begin(true)), record.Append(nil, record.Params, 1, getParams("/", "")), record.Append(nil, record.AbortRequest, 1, nil))
	if body, status := answer(t, r, 1); body != "" || status != record.StatusRequestComplete {
		t.Errorf("aborted during its parameters: got %q, status %d", body, status)
	}
	select {
	case <-ran:
		t.Error("the handler ran for a request aborted during its parameters")
	default:
	}
	send(t, c, record.Append(nil, record.BeginRequest, 2, begin(true)), record.AppendStream(nil, record.Params, 2, getParams("/", "")), record.Append(nil, record.Stdin, 2, []byte("part of a body")))
	wait(t, ran, "handler")
	send(t, c, record.Append(nil, record.AbortRequest, 2, nil))
	if err := wait(t, reads, "end of the body read"); !errors.Is(err, ErrRequestAborted) {
		t.Errorf("reading an aborted body: got %v, want ErrRequestAborted", err)
	}
	if _, status := answer(t, r, 2); status != record.StatusRequestComplete {
		t.Errorf("aborted during its body: protocol status %d", status)
	}
}

// TestAnsweredWhileRequestRuns sends, while a handler runs and before it
// is let go, a second FCGI_BEGIN_REQUEST, FCGI_GET_VALUES and an unknown
// management type: each is answered at once (sections 5.5, 4.1 and 4.2:
// "An application may receive a FCGI_GET_VALUES record at any time"), not
// after the request.
func TestAnsweredWhileRequestRuns(t *testing.T) {
	h := newWaiting()
	sock := serve(t, h)
	c, r := dialRaw(t, "unix", sock)
	start(t, c, r, 1)
	tests := []struct {
		name string
		send []byte
		typ  byte
		id   uint16
		want []byte
	}{
		{"SecondRequest", record.Append(nil, record.BeginRequest, 2, begin(true)), record.EndRequest, 2, []byte{0, 0, 0, 0, record.StatusCantMultiplex, 0, 0, 0}},
		{"SecondRequestWithoutKeepConn", record.Append(nil, record.BeginRequest, 3, begin(false)), record.EndRequest, 3, []byte{0, 0, 0, 0, record.StatusCantMultiplex, 0, 0, 0}},
		{"GetValues", record.Append(nil, record.GetValues, 0, record.AppendPairs(nil, "FCGI_MPXS_CONNS", "")), record.GetValuesResult, 0, record.AppendPairs(nil, "FCGI_MPXS_CONNS", "0")},
		{"UnknownType", record.Append(nil, 200, 0, []byte("?")), record.UnknownType, 0, []byte{200, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		send(t, c, tt.send)
		rec := readRaw(t, r)
		if rec.typ != tt.typ || rec.id != tt.id || !bytes.Equal(rec.content, tt.want) {
			t.Errorf("%s: got type %d, request %d, %v; want type %d, request %d, %v", tt.name, rec.typ, rec.id, rec.content, tt.typ, tt.id, tt.want)
		}
	}
	select {
	case err := <-h.ended:
		t.Fatalf("the handler ended (%v) before it was let go", err)
	default:
	}
	close(h.release)
	if body, status := answer(t, r, 1); body != "after" || status != record.StatusRequestComplete {
		t.Errorf("the running request: got %q, status %d; want %q", body, status, "after")
	}
}

// TestGetValues checks what FCGI_GET_VALUES answers (section 4.1): "The
// application responds by sending a record {FCGI_GET_VALUES_RESULT, 0,
// ...} with the values supplied. If the application doesn't understand a
// variable name that was included in the query, it omits that name from
// the response." Names not asked are not answered.
func TestGetValues(t *testing.T) {
	limited := &Server{Handler: echo, MaxConns: 50}
	unlimited := &Server{Handler: echo}
	tests := []struct {
		name string
		srv  *Server
		ask  []byte
		want []byte
	}{
		{"Multiplexing", limited, record.AppendPairs(nil, "FCGI_MPXS_CONNS", ""), record.AppendPairs(nil, "FCGI_MPXS_CONNS", "0")},
		{"MaxConns", limited, record.AppendPairs(nil, "FCGI_MAX_CONNS", ""), record.AppendPairs(nil, "FCGI_MAX_CONNS", "50")},
		{"MaxReqs", limited, record.AppendPairs(nil, "FCGI_MAX_REQS", ""), record.AppendPairs(nil, "FCGI_MAX_REQS", "50")},
		{"AllThree", limited, record.AppendPairs(nil, "FCGI_MPXS_CONNS", "", "FCGI_MAX_REQS", "", "FCGI_MAX_CONNS", ""),
			record.AppendPairs(nil, "FCGI_MAX_CONNS", "50", "FCGI_MAX_REQS", "50", "FCGI_MPXS_CONNS", "0")},
		{"UnknownNameLeftOut", limited, record.AppendPairs(nil, "FCGI_WHATEVER", "", "FCGI_MPXS_CONNS", ""), record.AppendPairs(nil, "FCGI_MPXS_CONNS", "0")},
		{"OnlyUnknown", limited, record.AppendPairs(nil, "PHP_VALUE", ""), nil},
		{"NothingAsked", limited, nil, nil},
		{"Malformed", limited, []byte{0x80}, nil},
		{"NoLimitNoMaxConns", unlimited, record.AppendPairs(nil, "FCGI_MAX_CONNS", "", "FCGI_MPXS_CONNS", ""), record.AppendPairs(nil, "FCGI_MPXS_CONNS", "0")},
	}
	socks := map[*Server]string{limited: serveWith(t, limited), unlimited: serveWith(t, unlimited)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := dialRaw(t, "unix", socks[tt.srv])
			send(t, c, record.Append(nil, record.GetValues, 0, tt.ask))
			if rec := readRaw(t, r); rec.typ != record.GetValuesResult || rec.id != 0 || !bytes.Equal(rec.content, tt.want) {
				t.Errorf("got type %d, request %d, %q; want FCGI_GET_VALUES_RESULT, 0, %q", rec.typ, rec.id, rec.content, tt.want)
			}
		})
	}
}

// serveWith runs s on a fresh Unix socket and returns its path.
func serveWith(t *testing.T, s *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fcgi.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return sock
}

// TestConnClosedEndsRequest closes the connection while a handler waits,
// having written nothing more: its context must end by the read side, with
// ErrConnClosed, not at its next write ("When a Web server is not
// multiplexing requests over a transport connection, the Web server can
// abort a request by closing the request's transport connection", section
// 5.4). nginx does so when the browser leaves.
func TestConnClosedEndsRequest(t *testing.T) {
	h := newWaiting()
	sock := serve(t, h)
	c, r := dialRaw(t, "unix", sock)
	start(t, c, r, 1)
	c.Close()
	if err := wait(t, h.ended, "end of the handler's context"); !errors.Is(err, ErrConnClosed) {
		t.Errorf("the context ended with %v, want ErrConnClosed", err)
	}
	if err := wait(t, h.wrote, "write after the close"); err == nil {
		t.Error("a write after the connection closed succeeded")
	}
}

// TestWebServerAddrs checks section 3.2: with FCGI_WEB_SERVER_ADDRS bound,
// "the application checks the peer IP address of the new connection for
// membership in the list. If the check fails (including the possibility
// that the connection didn't use TCP/IP transport), the application
// responds by closing the connection."
func TestWebServerAddrs(t *testing.T) {
	tests := []struct {
		name    string
		addrs   string
		network string // the listener's
		from    string // the client's address, for tcp
		served  bool
	}{
		{"Unbound", "", "tcp", "127.0.0.1", true},
		{"Listed", "127.0.0.1", "tcp", "127.0.0.1", true},
		{"ListedAmongOthers", "199.170.183.28, 127.0.0.3,199.170.183.71", "tcp", "127.0.0.3", true},
		{"NotListed", "199.170.183.28,199.170.183.71", "tcp", "127.0.0.1", false},
		{"AnotherLoopback", "127.0.0.2", "tcp", "127.0.0.1", false},
		{"NotTCP", "127.0.0.1", "unix", "", false},
		{"UnboundUnix", "", "unix", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addrs, err := ParseWebServerAddrs(tt.addrs)
			if err != nil {
				t.Fatal(err)
			}
			var l net.Listener
			if tt.network == "unix" {
				l, err = net.Listen("unix", filepath.Join(t.TempDir(), "fcgi.sock"))
			} else {
				l, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				t.Fatal(err)
			}
			s := &Server{Handler: echo, WebServerAddrs: addrs}
			go s.Serve(l)
			defer s.Shutdown(context.Background())
			d := net.Dialer{Timeout: 10 * time.Second}
			if tt.from != "" {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(tt.from)}
			}
			c, err := d.Dial(l.Addr().Network(), l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			req := slices.Concat(record.Append(nil, record.BeginRequest, 1, begin(false)), record.AppendStream(nil, record.Params, 1, getParams("/", "n=1")), record.Append(nil, record.Stdin, 1, nil))
			if _, err := c.Write(req); err != nil {
				// A refused peer's connection may close before the
				// request is written whole (EPIPE): nothing was served.
				if tt.served {
					t.Fatalf("sending the request: %v", err)
				}
				return
			}
			got, err := io.ReadAll(c)
			if served := len(got) > 0; served != tt.served {
				t.Errorf("got %d bytes (%v), want served %v", len(got), err, tt.served)
			}
		})
	}
}

func TestParseWebServerAddrs(t *testing.T) {
	tests := []struct {
		in      string
		want    []netip.Addr
		wantErr bool
	}{
		{"", nil, false},
		{"199.170.183.28,199.170.183.71", []netip.Addr{netip.MustParseAddr("199.170.183.28"), netip.MustParseAddr("199.170.183.71")}, false},
		{" 10.0.0.1 , ", []netip.Addr{netip.MustParseAddr("10.0.0.1")}, false},
		{"::1,::ffff:127.0.0.1", []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1")}, false},
		{"localhost", nil, true},
		{"10.0.0.0/8", nil, true},
		{"10.0.0.1;10.0.0.2", nil, true},
		{"fe80::1%eth0", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseWebServerAddrs(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseWebServerAddrs(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

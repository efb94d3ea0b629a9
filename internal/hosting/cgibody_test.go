package hosting

import (
	"context"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLengthlessBody serves requests built as Go's CGI code builds them
// from the variables web servers set, with a body on stdin, and checks
// what the handler reads.
func TestLengthlessBody(t *testing.T) {
	const body = `{"nick":"ada","text":"hi"}`
	chunked := map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"}
	tests := []struct {
		name    string
		vars    map[string]string
		hungUp  bool // the web server closed the connection: the client left
		want    string
		wantErr error
	}{
		{"Length given", map[string]string{"CONTENT_LENGTH": "26", "HTTP_TRANSFER_ENCODING": "chunked"}, false, body, nil},
		{"Chunked, no length (mod_cgid, HTTP/1.1)", chunked, false, body, nil},
		{"Chunked among codings", map[string]string{"HTTP_TRANSFER_ENCODING": "gzip, Chunked"}, false, body, nil},
		{"HTTP/2 without content-length", map[string]string{"SERVER_PROTOCOL": "HTTP/2.0"}, false, body, nil},
		{"HTTP/2 with chunked as mod_http2 adds it", map[string]string{"SERVER_PROTOCOL": "HTTP/2.0", "HTTP_TRANSFER_ENCODING": "chunked"}, false, body, nil},
		{"HTTP/1.1 without a body", nil, false, "", nil},
		{"HTTP/1.1 identity", map[string]string{"HTTP_TRANSFER_ENCODING": "identity"}, false, "", nil},
		{"Chunked, cut short: the web server hung up", chunked, true, body, io.ErrUnexpectedEOF},
		{"Length given, the web server hung up after it", map[string]string{"CONTENT_LENGTH": "26"}, true, body, nil},
	}
	for _, tt := range tests {
		stdin := strings.NewReader(body)
		r, getenv := cgiRequest(t, tt.vars, stdin)
		var got string
		var readErr error
		h := withCGIBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var b []byte
			b, readErr = io.ReadAll(r.Body)
			got = string(b)
		}), stdin, getenv, func() bool { return tt.hungUp })
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != tt.want || readErr != tt.wantErr {
			t.Errorf("%s: the handler read %q, %v; want %q, %v", tt.name, got, readErr, tt.want, tt.wantErr)
		}
	}
}

// cgiRequest builds a POST from the variables a web server sets (vars,
// over a few every request has) as net/http/cgi does: its body is stdin,
// and only for a positive CONTENT_LENGTH. getenv reads the same variables.
func cgiRequest(t *testing.T, vars map[string]string, stdin io.Reader) (r *http.Request, getenv func(string) string) {
	t.Helper()
	all := map[string]string{"REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "chat.example", "REQUEST_URI": "/cgi-bin/post"}
	for k, v := range vars {
		all[k] = v
	}
	r, err := cgi.RequestFromMap(all)
	if err != nil {
		t.Fatal(err)
	}
	r.Body = http.NoBody
	if r.ContentLength > 0 {
		r.Body = io.NopCloser(io.LimitReader(stdin, r.ContentLength))
	}
	return r, func(k string) string { return all[k] }
}

// TestCGIBodyDrained serves requests whose handler reads nothing, as a
// post refused before its body is read, and checks that stdin is read to
// its end before the answer goes out.
func TestCGIBodyDrained(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		body int // bytes on stdin
	}{
		{"Length given", map[string]string{"CONTENT_LENGTH": "5000"}, 5000},
		{"Chunked, no length", map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"}, 5000},
		{"HTTP/2 without content-length", map[string]string{"SERVER_PROTOCOL": "HTTP/2.0"}, 5000},
		{"Longer than the post's limit", map[string]string{"CONTENT_LENGTH": "2000000"}, 2_000_000},
		{"No body", nil, 0},
	}
	for _, tt := range tests {
		stdin := strings.NewReader(strings.Repeat("x", tt.body))
		r, getenv := cgiRequest(t, tt.vars, stdin)
		h := withCGIBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
		}), stdin, getenv, func() bool { return false })
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if left := stdin.Len(); left != 0 || rec.Code != http.StatusForbidden {
			t.Errorf("%s: answered %d with %d bytes of stdin unread, want %d with none", tt.name, rec.Code, left, http.StatusForbidden)
		}
	}
}

// TestDrainBounds checks that draining stops at its byte bound, at its
// time bound when the body trickles or never ends, and when the request's
// context ends (SIGTERM).
func TestDrainBounds(t *testing.T) {
	blocked, _ := io.Pipe() // a body whose sender sends nothing more
	t.Cleanup(func() { blocked.Close() })
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		body     io.Reader
		window   time.Duration
		wantLeft int // of a strings.Reader body
		maxWait  time.Duration
	}{
		{"Read to its end", context.Background(), strings.NewReader(strings.Repeat("x", 500)), time.Minute, 0, 10 * time.Second},
		{"Past the byte bound", context.Background(), strings.NewReader(strings.Repeat("x", 1010)), time.Minute, 10, 10 * time.Second},
		{"A body that never ends: the time bound", context.Background(), blocked, 50 * time.Millisecond, -1, 10 * time.Second},
		{"A body that never ends: SIGTERM", ended, blocked, time.Minute, -1, 10 * time.Second},
	}
	for _, tt := range tests {
		start := time.Now()
		drain(tt.ctx, tt.body, 1000, tt.window)
		if took := time.Since(start); took > tt.maxWait {
			t.Errorf("%s: drain took %s, want at most %s", tt.name, took, tt.maxWait)
		}
		if sr, ok := tt.body.(*strings.Reader); ok && sr.Len() != tt.wantLeft {
			t.Errorf("%s: %d bytes left unread, want %d", tt.name, sr.Len(), tt.wantLeft)
		}
	}
}

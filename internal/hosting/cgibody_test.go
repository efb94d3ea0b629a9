package hosting

import (
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"strings"
	"testing"
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
		vars := map[string]string{"REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "chat.example", "REQUEST_URI": "/cgi-bin/post"}
		for k, v := range tt.vars {
			vars[k] = v
		}
		r, err := cgi.RequestFromMap(vars)
		if err != nil {
			t.Fatal(err)
		}
		// As cgi.Request does: stdin only for a positive length.
		r.Body = http.NoBody
		if r.ContentLength > 0 {
			r.Body = io.NopCloser(io.LimitReader(strings.NewReader(body), r.ContentLength))
		}
		var got string
		var readErr error
		h := withCGIBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var b []byte
			b, readErr = io.ReadAll(r.Body)
			got = string(b)
		}), strings.NewReader(body), func(k string) string { return vars[k] }, func() bool { return tt.hungUp })
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != tt.want || readErr != tt.wantErr {
			t.Errorf("%s: the handler read %q, %v; want %q, %v", tt.name, got, readErr, tt.want, tt.wantErr)
		}
	}
}

// TestCGIBodyDrained serves requests whose handler reads nothing, as a
// post refused before its body is read, and checks how much of stdin is
// left when the answer goes out.
func TestCGIBodyDrained(t *testing.T) {
	tests := []struct {
		name     string
		vars     map[string]string
		body     int // bytes on stdin
		wantLeft int
	}{
		{"Length given", map[string]string{"CONTENT_LENGTH": "5000"}, 5000, 0},
		{"Chunked, no length", map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"}, 5000, 0},
		{"HTTP/2 without content-length", map[string]string{"SERVER_PROTOCOL": "HTTP/2.0"}, 5000, 0},
		{"No body", nil, 0, 0},
		{"Longer than what is drained", map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"}, maxDrain + 10, 10},
	}
	for _, tt := range tests {
		vars := map[string]string{"REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "chat.example", "REQUEST_URI": "/cgi-bin/post"}
		for k, v := range tt.vars {
			vars[k] = v
		}
		r, err := cgi.RequestFromMap(vars)
		if err != nil {
			t.Fatal(err)
		}
		stdin := strings.NewReader(strings.Repeat("x", tt.body))
		r.Body = http.NoBody
		if r.ContentLength > 0 {
			r.Body = io.NopCloser(io.LimitReader(stdin, r.ContentLength))
		}
		h := withCGIBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
		}), stdin, func(k string) string { return vars[k] }, func() bool { return false })
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		left := stdin.Len()
		if left != tt.wantLeft || rec.Code != http.StatusForbidden {
			t.Errorf("%s: answered %d with %d bytes of stdin unread, want %d with %d", tt.name, rec.Code, left, http.StatusForbidden, tt.wantLeft)
		}
	}
}

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
	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"Length given", map[string]string{"CONTENT_LENGTH": "26", "HTTP_TRANSFER_ENCODING": "chunked"}, body},
		{"Chunked, no length (mod_cgid, HTTP/1.1)", map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"}, body},
		{"Chunked among codings", map[string]string{"HTTP_TRANSFER_ENCODING": "gzip, Chunked"}, body},
		{"HTTP/2 without content-length", map[string]string{"SERVER_PROTOCOL": "HTTP/2.0"}, body},
		{"HTTP/2 with chunked as mod_http2 adds it", map[string]string{"SERVER_PROTOCOL": "HTTP/2.0", "HTTP_TRANSFER_ENCODING": "chunked"}, body},
		{"HTTP/1.1 without a body", nil, ""},
		{"HTTP/1.1 identity", map[string]string{"HTTP_TRANSFER_ENCODING": "identity"}, ""},
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
		h := withLengthlessBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got = string(b)
		}), strings.NewReader(body), func(k string) string { return vars[k] })
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != tt.want {
			t.Errorf("%s: the handler read %q, want %q", tt.name, got, tt.want)
		}
	}
}

package hosting

import (
	"io"
	"net/http"
	"strings"
)

// withLengthlessBody gives a CGI request its body when the web server
// passed one without CONTENT_LENGTH. A chunked upload (curl -T -, many
// HTTP libraries) and an HTTP/2 request without content-length reach a CGI
// program under Apache mod_cgid that way: the body on stdin,
// HTTP_TRANSFER_ENCODING=chunked or SERVER_PROTOCOL=HTTP/2.0, no length.
// Go's net/http/cgi reads stdin only for a positive CONTENT_LENGTH, so the
// handler would see an empty body. The body is then stdin up to its end,
// of unknown length (-1); the handler reads at most what it accepts.
func withLengthlessBody(h http.Handler, stdin io.Reader, getenv func(string) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lengthlessBody(getenv) {
			r.Body = io.NopCloser(stdin)
			r.ContentLength = -1
		}
		h.ServeHTTP(w, r)
	})
}

// lengthlessBody reports whether the CGI variables announce a body without
// giving its length.
func lengthlessBody(getenv func(string) string) bool {
	if getenv("CONTENT_LENGTH") != "" {
		return false
	}
	for _, te := range strings.Split(getenv("HTTP_TRANSFER_ENCODING"), ",") {
		if strings.EqualFold(strings.TrimSpace(te), "chunked") {
			return true
		}
	}
	return strings.HasPrefix(getenv("SERVER_PROTOCOL"), "HTTP/2") || strings.HasPrefix(getenv("SERVER_PROTOCOL"), "HTTP/3")
}

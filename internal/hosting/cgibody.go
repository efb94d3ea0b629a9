package hosting

import (
	"io"
	"net/http"
	"strings"
)

// withCGIBody gives a CGI request its body when the web server
// passed one without CONTENT_LENGTH. A chunked upload (curl -T -, many
// HTTP libraries) and an HTTP/2 request without content-length reach a CGI
// program under Apache mod_cgid that way: the body on stdin,
// HTTP_TRANSFER_ENCODING=chunked or SERVER_PROTOCOL=HTTP/2.0, no length.
// Go's net/http/cgi reads stdin only for a positive CONTENT_LENGTH, so the
// handler would see an empty body. The body is then stdin up to its end,
// of unknown length (-1); the handler reads at most what it accepts.
//
// Without a length, only the web server can tell a body's end from a
// client that left in the middle of it, and Apache does so only by how it
// ends stdin: at the end of a body mod_cgid shuts its side for writing
// and goes on reading the answer; when the client went it closes the
// connection outright. hungUp reports the latter, which makes the body's
// end an error (io.ErrUnexpectedEOF), so that no half a message is stored.
//
// What the handler leaves of a body is then read and dropped, up to
// maxDrain bytes, before the answer goes out: a CGI program that exits
// with input unread makes the web server's next read of its socket fail
// (ECONNRESET, Apache's AH00574), and the answer is lost. Under Apache
// mod_cgid over HTTP/2 a post refused before its body was read then
// ended in a 500, or in a 403 whose stream never ended.
func withCGIBody(h http.Handler, stdin io.Reader, getenv func(string) string, hungUp func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lengthlessBody(getenv) {
			r.Body = io.NopCloser(wholeBody{stdin, hungUp})
			r.ContentLength = -1
		}
		h.ServeHTTP(w, r)
		if r.Body != nil {
			io.CopyN(io.Discard, r.Body, maxDrain)
		}
	})
}

// maxDrain bounds how much of a body left unread by the handler is read
// and dropped (bytes); a body longer still is cut off by the exit.
const maxDrain = 1 << 20

// wholeBody reads a body without a length to its end, which it reports as
// io.ErrUnexpectedEOF when the web server hung up: the body was cut short.
type wholeBody struct {
	r      io.Reader
	hungUp func() bool
}

func (b wholeBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.hungUp() {
		err = io.ErrUnexpectedEOF
	}
	return n, err
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

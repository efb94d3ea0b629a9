package hosting

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"cgichat/internal/fastcgi"
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
// What the handler leaves of a body is then read and dropped, with the
// FastCGI server's bounds (fastcgi.MaxDrain bytes, fastcgi.DrainWindow),
// before net/http/cgi sends the answer it holds until the handler returns:
// a CGI program that exits with input unread makes the web server's next
// read of its socket fail (ECONNRESET, Apache's AH00574), and the answer
// is lost. Under Apache mod_cgid a post refused before its body was read
// arrived cut short, or over HTTP/2 as a 500 or a 403 whose stream never
// ended. The wait also ends with the request's context (SIGTERM), so that
// a client trickling a body holds no process for it; such a client, or a
// longer body, may then lose the answer.
func withCGIBody(h http.Handler, stdin io.Reader, getenv func(string) string, hungUp func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lengthlessBody(getenv) {
			r.Body = io.NopCloser(wholeBody{stdin, hungUp})
			r.ContentLength = -1
		}
		h.ServeHTTP(w, r)
		if r.Body != nil && r.Body != http.NoBody {
			drain(r.Context(), r.Body, fastcgi.MaxDrain, fastcgi.DrainWindow)
		}
	})
}

// drain reads and drops body up to max bytes, for at most window or until
// ctx ends. A read still blocked then is left to the process's exit.
func drain(ctx context.Context, body io.Reader, max int64, window time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.CopyN(io.Discard, body, max)
	}()
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

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

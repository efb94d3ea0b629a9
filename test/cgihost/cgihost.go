// Package cgihost runs CGI programs from a Go HTTP server with Go's own
// net/http/cgi host, made to behave as Apache's mod_cgid: that host copies
// the program's output without ever flushing, so each write is flushed
// here instead, and it refuses a request body sent without a length, which
// mod_cgid hands to the program on stdin.
package cgihost

import (
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"path/filepath"
	"slices"
)

// Handler returns a handler running the CGI program at path for every
// request, with env added to its environment and its stderr on ours.
func Handler(path string, env []string) http.Handler {
	return Emulated("", path, env)
}

// Emulated returns a handler like Handler's that runs the program under
// emulator, such as qemu-aarch64-static for a program built for another
// architecture: each request executes the emulator with the program's
// path as its argument, so no binfmt registration is needed. SCRIPT_FILENAME
// then names the emulator (cgichat's programs do not read it). An empty
// emulator runs the program itself.
func Emulated(emulator, path string, env []string) http.Handler {
	h := &cgi.Handler{
		Path:   path,
		Dir:    filepath.Dir(path),
		Env:    env,
		Stderr: os.Stderr,
		Logger: log.New(os.Stderr, "cgihost: ", log.LstdFlags),
	}
	if emulator != "" {
		h.Path, h.Args = emulator, []string{path}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(flushingWriter{w}, chunkedAsApache(r))
	})
}

// chunkedAsApache makes a request body sent without a length (chunked)
// reach the program as Apache mod_cgid hands it over: on stdin, with
// HTTP_TRANSFER_ENCODING=chunked and no CONTENT_LENGTH. Go's CGI host
// would refuse it with a 400 of its own.
func chunkedAsApache(r *http.Request) *http.Request {
	if !slices.Contains(r.TransferEncoding, "chunked") {
		return r
	}
	r = r.Clone(r.Context())
	r.TransferEncoding = nil
	r.ContentLength = -1
	r.Header.Set("Transfer-Encoding", "chunked")
	return r
}

// flushingWriter flushes after every write, so a stream's events leave at
// once; a failed write to a departed client makes the host kill the child.
type flushingWriter struct {
	http.ResponseWriter
}

func (w flushingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if err == nil {
		err = http.NewResponseController(w.ResponseWriter).Flush()
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w flushingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

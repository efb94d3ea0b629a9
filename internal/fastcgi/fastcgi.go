// Package fastcgi serves an http.Handler to a FastCGI web server (nginx
// fastcgi_pass, Apache mod_proxy_fcgi, mod_fcgid), in the responder role,
// to the FastCGI 1.0 specification.
//
// It does what net/http/fcgi does for cgichat, at a fraction of the memory
// per open request: net/http/fcgi holds a 64 KiB record buffer per
// connection and a 64 KiB output buffer per request, which a daemon
// holding a thousand event streams pays a thousand times
// (docs/performance.md). Here records are read through a pooled buffer
// that a connection holds only while a record is being read, a request
// body travels through a pipe only when there is one, and every Write goes
// out at once in one writev: the records' headers and padding around the
// handler's own bytes, which are not copied. A handler may bound its
// writes with http.ResponseController's SetWriteDeadline.
//
// Each connection is read all the time, also while its request runs, so
// that the request's context ends the moment the web server aborts it
// (FCGI_ABORT_REQUEST) or closes the connection (as nginx does when the
// browser left), and management records and a second request are
// answered at once. Waiting for a record costs no goroutine on Linux: a
// connection with nothing to read is watched by one epoll instance for
// the whole server (poller). An idle stream holds no buffer, and no
// goroutine either once its handler detached the response (Detach) and
// returned.
//
// Web servers send one request at a time per connection; this server does
// not multiplex (it says so to FCGI_GET_VALUES and refuses a second
// request on a busy connection with FCGI_CANT_MPX_CONN).
package fastcgi

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// ErrRequestAborted is the cause of a request's context, and the error of
// its body's Read and of its response's Write, after the web server
// aborted the request (FCGI_ABORT_REQUEST).
var ErrRequestAborted = errors.New("fastcgi: request aborted by the web server")

// ErrConnClosed is the cause of a request's context, and the error of its
// body's Read and of its response's Write, once the web server closed the
// connection (or it failed) while the request ran.
var ErrConnClosed = errors.New("fastcgi: the web server closed the connection")

// Serve accepts connections on l and serves their requests with h, with no
// limit on connections. It returns Accept's first lasting error.
func Serve(l net.Listener, h http.Handler) error {
	return (&Server{Handler: h}).Serve(l)
}

// paramsKey is the context key of a request's FastCGI parameters, a
// *processEnv.
type paramsKey struct{}

// processEnv holds what ProcessEnv returns; Detach lets it go, so that a
// long response does not keep it.
type processEnv struct {
	m atomic.Pointer[map[string]string]
}

// ProcessEnv returns the FastCGI parameters of r that the request does not
// carry otherwise (no HTTP_* header, no standard CGI variable): those a web
// server sets for the program, such as nginx's fastcgi_param or
// mod_fcgid's SetEnv values. Outside FastCGI, and once the response was
// detached (Detach), it returns nil.
func ProcessEnv(r *http.Request) map[string]string {
	if env, _ := r.Context().Value(paramsKey{}).(*processEnv); env != nil {
		if m := env.m.Load(); m != nil {
			return *m
		}
	}
	return nil
}

// inRequest reports whether the request carries the parameter itself, as
// net/http/fcgi decides it.
func inRequest(name string) bool {
	switch name {
	case "CONTENT_LENGTH", "CONTENT_TYPE", "HTTPS", "PATH_INFO", "QUERY_STRING",
		"REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "REQUEST_METHOD",
		"REQUEST_URI", "SCRIPT_NAME", "SERVER_PROTOCOL":
		return true
	}
	return strings.HasPrefix(name, "HTTP_")
}

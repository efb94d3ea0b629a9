// Package hosting runs an http.Handler the way the web server started the
// program: as a CGI program, as a FastCGI program handed a listening socket
// on stdin, or as a FastCGI daemon on a socket of its own. The handler does
// not know which.
package hosting

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cgichat/internal/config"
	"cgichat/internal/fastcgi"
)

// Handler is what a program serves: an http.Handler that releases what it
// opened on Close.
type Handler interface {
	http.Handler
	io.Closer
}

// Mode is how the web server runs a program, decided once at start.
type Mode int

// The hosting modes.
const (
	// CGI: one request per process (Apache mod_cgi or mod_cgid, nginx
	// with fcgiwrap); the request's variables are the environment.
	CGI Mode = iota + 1
	// FastCGIStdin: FastCGI on a listening socket handed over as stdin
	// (Apache mod_fcgid, spawn-fcgi); requests come one at a time.
	FastCGIStdin
	// Daemon: FastCGI on a socket of the program's own (-listen), for
	// nginx fastcgi_pass or Apache mod_proxy_fcgi; many requests at once.
	Daemon
)

// String names the mode as the usage text does.
func (m Mode) String() string {
	switch m {
	case CGI:
		return "CGI"
	case FastCGIStdin:
		return "FastCGI on stdin"
	case Daemon:
		return "FastCGI daemon"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Concurrent reports whether the process serves many requests at once.
// Otherwise it serves one at a time, and needs one database connection.
func (m Mode) Concurrent() bool { return m == Daemon }

// Env is what a program's handler is built with: how the program is hosted
// and how it logs.
type Env struct {
	Mode Mode
	Log  *slog.Logger
	// Level is the logger's level, which each request's CHAT_LOG_LEVEL may
	// set: under FastCGI settings arrive with the request.
	Level *slog.LevelVar
	// Dir is the program's folder (cgi-bin), which holds its settings
	// file; the chat's page is in the folder above.
	Dir string
}

// Detach lets a response outlive its handler where the hosting mode
// allows it (FastCGI: fastcgi.Detach), and reports false otherwise (CGI,
// plain HTTP), where the handler must write the whole response before it
// returns. After a true answer, the handler returns at once, the caller
// writes on to w from one goroutine at a time, and calls finish once when
// the response is complete.
func Detach(w http.ResponseWriter) (finish func(), ok bool) { return fastcgi.Detach(w) }

// ErrWouldBlock is TryWrite's answer when it could not send all of what it
// was given without waiting.
var ErrWouldBlock = fastcgi.ErrWouldBlock

// TryWrite writes p to a detached response as far as it can without
// waiting for the web server to read (fastcgi.TryWrite), and returns how
// much of p it took. With ErrWouldBlock, Write(p[n:]) and a Flush, which
// may wait, send the rest; a response of any other mode always answers
// (0, ErrWouldBlock).
func TryWrite(w http.ResponseWriter, p []byte) (n int, err error) { return fastcgi.TryWrite(w, p) }

// Vars returns the lookup of r's variables beyond its headers: those the
// web server set for this request (nginx fastcgi_param, mod_fcgid's SetEnv,
// and CGI's own such as SERVER_PORT), then env, the process environment
// (nil means os.Getenv). Under CGI the environment is the request's.
func Vars(r *http.Request, env func(string) string) func(string) string {
	params := fastcgi.ProcessEnv(r)
	if env == nil {
		env = os.Getenv
	}
	return func(key string) string {
		if v, ok := params[key]; ok {
			return v
		}
		return env(key)
	}
}

// oneAtATime sets the process up for serving one request at a time, as
// under CGI and mod_fcgid: one processor for Go code, and a soft memory
// limit of oneRequestMemory. With more processors, every timer and every
// SQLite call of an idle stream may wake other threads that find nothing
// to do, which hundreds of stream processes pay for; without the limit, a
// stream writing a long backlog to a reader that stalls let its heap grow
// to twice what it held before the collector ran, in every such process
// (docs/performance.md). A GOMEMLIMIT in the environment still decides.
func oneAtATime() {
	runtime.GOMAXPROCS(1)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(oneRequestMemory)
	}
}

// oneRequestMemory is the soft limit (bytes, runtime/debug.SetMemoryLimit)
// on what the Go runtime holds in a process that serves one request at a
// time: the collector works harder near it, and never spends more than
// about half the process's CPU on it.
const oneRequestMemory = 8 << 20

// Program is one of cgichat's programs: its name and summary for the usage
// text, and how its handler is built once the mode is known.
type Program struct {
	Name    string // post or stream
	Summary string // one line: what it answers
	Build   func(Env) Handler
	// Commands are the tasks a person may run the program for by hand.
	Commands []Command
}

// shutdownGrace bounds how long a stopping daemon waits for requests in
// flight; streams end at once when asked, posts take milliseconds.
const shutdownGrace = 10 * time.Second

// Main runs program p in the mode its start-up reveals and returns the
// exit status: 0 after serving, 1 on failure, 2 for usage errors.
func Main(p Program, args []string) int {
	// Writes to a departed client must fail with EPIPE, not kill the
	// process before it can clean up.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	log, level := NewLogger(p.Name)
	env := Env{Log: log, Level: level}

	// A CGI request may carry arguments of its own (an ISINDEX query), so
	// the environment decides before any flag is read.
	if os.Getenv("REQUEST_METHOD") != "" {
		env.Mode = CGI
		oneAtATime()
		h := p.Build(env)
		defer h.Close()
		err := cgi.Serve(withBase(ctx, withCGIBody(h, os.Stdin, os.Getenv, func() bool { return hungUp(os.Stdout) })))
		switch {
		case err == nil, errors.Is(err, syscall.EPIPE):
			// EPIPE: the web server hung up, as when the client left.
			return 0
		default:
			log.Error("cgi: cannot serve the request", "err", err)
			return 1
		}
	}
	fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "", "")
	sockMode := fs.Uint("socket-mode", 0o660, "")
	command := commandFlags(p, fs)
	check := fs.Bool("check", false, "")
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(os.Stdout, Usage(p))
		return 0
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %v\n\n%s", p.Name, err, Usage(p))
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n\n%s", p.Name, fs.Arg(0), Usage(p))
		return 2
	case *check:
		return Check(p, *listen, os.Stdout)
	}
	if code, ran := command(ctx); ran {
		return code
	}
	var l net.Listener
	var err error
	switch {
	case *listen != "":
		env.Mode = Daemon
		l, err = Listen(*listen, os.FileMode(*sockMode))
		if err != nil {
			log.Error("cannot listen", "listen", *listen, "err", err)
			return 1
		}
		log.Info("serving FastCGI", "listen", *listen)
	case stdinIsListener():
		env.Mode = FastCGIStdin
		oneAtATime()
		l, err = net.FileListener(os.Stdin)
		if err != nil {
			log.Error("fastcgi: cannot use stdin as a listener", "err", err)
			return 1
		}
	default:
		fmt.Fprint(os.Stderr, Usage(p))
		return 2
	}
	h := p.Build(env)
	defer h.Close()
	if err := serveFastCGI(ctx, l, h, env); err != nil {
		log.Error("fastcgi: serving failed", "err", err)
		return 1
	}
	return 0
}

// Usage returns the help text of p.
func Usage(p Program) string {
	return fmt.Sprintf(`%[1]s: %[2]s

%[1]s is one of cgichat's two web programs (post and stream). A web server
runs it; on its own it does nothing. It chooses how to serve when it starts:

  CGI             when REQUEST_METHOD is set: one request per run
                  (Apache mod_cgi or mod_cgid, nginx with fcgiwrap).
  FastCGI (stdin) when stdin is a listening socket: many requests, one at
                  a time (Apache mod_fcgid, spawn-fcgi).
  FastCGI daemon  with -listen: many requests at once, for nginx
                  fastcgi_pass or Apache mod_proxy_fcgi; SIGTERM stops it
                  cleanly after the requests in flight.

Usage:
  %[1]s -listen unix:/run/cgichat/%[1]s.sock [-socket-mode 0660]
  %[1]s -listen tcp:127.0.0.1:9000
  %[1]s -check [-listen ADDR]
  %[1]s -h

Flags:
  -listen ADDR       serve FastCGI on ADDR: unix:PATH or tcp:HOST:PORT
  -socket-mode MODE  permissions of a unix socket (default 0660): the web
                     server's user must be able to connect
  -check             print the settings in effect, where each comes from
                     (cgichat.conf, environment, default) and the hosting
                     mode, then exit: 0 when they are valid, 1 when not

%[3]s%[4]s
Logs go to stderr; stdout carries only HTTP responses.
Documentation: README.md and docs/ in the cgichat source.
`, p.Name, p.Summary, config.Help, commandUsage(p))
}

// withBase returns h with every request's context also ended when base
// ends, so streams finish cleanly on SIGTERM: Go's cgi package never ends
// a request's context (internal/fastcgi's Server takes base as its
// BaseContext).
func withBase(base context.Context, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(base, cancel)()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// serveFastCGI serves l until ctx ends, then waits up to shutdownGrace for
// the requests in flight and for their connections to close. It raises
// the open-file limit and serves as many connections as the limit leaves
// room for, answering those past it 503 (connLimits), and honours
// FCGI_WEB_SERVER_ADDRS.
func serveFastCGI(ctx context.Context, l net.Listener, h http.Handler, env Env) error {
	addrs, err := fastcgi.ParseWebServerAddrs(os.Getenv("FCGI_WEB_SERVER_ADDRS"))
	if err != nil {
		return err
	}
	if len(addrs) > 0 && l.Addr().Network() == "unix" {
		env.Log.Warn("FCGI_WEB_SERVER_ADDRS is set, but the socket is a Unix socket: every connection will be closed, as the FastCGI specification says (section 3.2); unset it")
	}
	files, err := raiseFileLimit()
	if err != nil {
		env.Log.Warn("cannot raise the open-file limit", "err", err)
	}
	serve, busyConns := connLimits(files)
	level := slog.LevelInfo
	if !env.Mode.Concurrent() {
		// mod_fcgid starts many such processes: their error log need not
		// hear it from each.
		level = slog.LevelDebug
	}
	env.Log.Log(ctx, level, "connection limit", "open_files", files, "max_conns", serve, "busy_conns", busyConns)
	srv := &fastcgi.Server{
		Handler:        h,
		BaseContext:    ctx,
		MaxConns:       serve,
		Busy:           http.HandlerFunc(busy),
		MaxBusy:        busyConns,
		WebServerAddrs: addrs,
		Log:            env.Log,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// The streams end at once (BaseContext), posts take milliseconds; the
	// end of each request is written after its handler returns.
	grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	srv.Shutdown(grace)
	<-served
	return nil
}

// Listen opens a daemon's socket. For unix:PATH a stale socket file left by
// a crash is replaced, a live one is an error, and the new socket gets mode.
func Listen(addr string, mode os.FileMode) (net.Listener, error) {
	network, address, ok := strings.Cut(addr, ":")
	switch {
	case !ok || address == "":
	case network == "tcp":
		return net.Listen("tcp", address)
	case network == "unix":
		if c, err := net.Dial("unix", address); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process", address)
		}
		if fi, err := os.Lstat(address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(address)
		}
		l, err := net.Listen("unix", address)
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(address, mode); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("-listen wants unix:PATH or tcp:HOST:PORT, not %q", addr)
}

// stdinIsListener reports whether stdin is a listening socket, which is how
// mod_fcgid and spawn-fcgi start a FastCGI program.
func stdinIsListener() bool {
	var st syscall.Stat_t
	if err := syscall.Fstat(0, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return false
	}
	v, err := syscall.GetsockoptInt(0, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
	return err == nil && v == 1
}

// processStart is when this process started, as the kernel counts it.
var processStart = startTime()

// startTime reads the process's start from /proc/self/stat (the 22nd
// field, in clock ticks since boot, 100 a second on Linux); elsewhere it
// is the time this package was initialised.
func startTime() time.Time {
	now := time.Now()
	stat, err1 := os.ReadFile("/proc/self/stat")
	uptime, err2 := os.ReadFile("/proc/uptime")
	if err1 != nil || err2 != nil {
		return now
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	up := strings.Fields(string(uptime))
	if len(fields) < 20 || len(up) == 0 {
		return now
	}
	ticks, err1 := strconv.ParseFloat(fields[19], 64)
	secs, err2 := strconv.ParseFloat(up[0], 64)
	if err1 != nil || err2 != nil {
		return now
	}
	return now.Add(-time.Duration((secs - ticks/100) * float64(time.Second)))
}

// RequestStart returns when a request began to cost the host: under CGI,
// when the process started (its start-up is the request's), otherwise
// now.
func RequestStart(m Mode) time.Time {
	if m == CGI {
		return processStart
	}
	return time.Now()
}

// Package integration runs the real post and stream binaries the ways a web
// server runs them — as CGI children, as FastCGI programs with a listening
// socket on stdin, and as FastCGI daemons — and holds them to the contract.
package integration

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cgichat/internal/fastcgi/record"
	"cgichat/internal/hosting"
	"cgichat/internal/web"
	"cgichat/test/cgihost"
	"cgichat/test/contract"
	"cgichat/test/dbtest"
	"cgichat/test/fcgiclient"
)

// bin holds the programs built for this test run, with the race detector
// when the tests run with it. cgiBin holds them without it, for the CGI
// children of startCGI: a CGI process serves one request, and the race
// runtime tripled what each costs (its start above all), in a package that
// starts thousands of them beside the other packages' tests. The same
// handlers still run under the race detector in the test process
// (startInProcess) and in the race-built FastCGI programs and daemons,
// where requests share a process; the CGI-only code (net/http/cgi's
// serving, the drain of an unread body) in the tests that run bin's
// programs as CGI (settings, programs, crashes).
var bin, cgiBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cgichat-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, cgiBin = filepath.Join(dir, "programs"), filepath.Join(dir, "cgi")
	code := build(bin, raceFlag)
	if code == 0 && raceFlag == nil {
		cgiBin = bin
	} else if code == 0 {
		code = build(cgiBin, nil)
	}
	if code == 0 {
		code = dbtest.Main(m)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles post and stream into dir, with flags.
func build(dir string, flags []string) int {
	for _, prog := range []string{"post", "stream"} {
		args := append([]string{"build"}, flags...)
		args = append(args, "-o", filepath.Join(dir, prog), "cgichat/cgi-bin/"+prog)
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", prog, err)
			return 1
		}
	}
	return 0
}

// settings returns CHAT_DB plus env: a SQLite file in a new temporary
// directory unless env sets CHAT_DB (see on). The rate limit is off unless
// env sets it: tests post faster than people.
func settings(t testing.TB, env map[string]string) (db string, kv []string) {
	db = env["CHAT_DB"]
	if db == "" {
		db = filepath.Join(t.TempDir(), "data", "chat.db")
		kv = append(kv, "CHAT_DB="+db)
	}
	kv = append(kv, raceEnv...)
	if _, ok := env["CHAT_RATE_LIMIT"]; !ok {
		kv = append(kv, "CHAT_RATE_LIMIT=off")
	}
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	return db, kv
}

// serve serves post and stream handlers (either may be nil) on a loopback
// test server, for programs with the settings env.
func serve(t *testing.T, db string, env map[string]string, post, stream http.Handler) *contract.Deployment {
	mux := http.NewServeMux()
	if post != nil {
		mux.Handle("/cgi-bin/post", post)
	}
	if stream != nil {
		mux.Handle("/cgi-bin/stream", stream)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &contract.Deployment{URL: srv.URL, DB: db, WakeDir: env["CHAT_WAKE_DIR"]}
}

// startInProcess serves the handlers in this process, under the race
// detector.
func startInProcess(t *testing.T, env map[string]string) *contract.Deployment {
	db, kv := settings(t, env)
	lookup := func(key string) string {
		for _, e := range kv {
			if k, v, _ := strings.Cut(e, "="); k == key {
				return v
			}
		}
		return ""
	}
	host := hosting.Env{Mode: hosting.Daemon, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	post, stream := web.NewPost(host), web.NewStream(host)
	post.Getenv, stream.Getenv = lookup, lookup
	d := serve(t, db, env, post, stream)
	t.Cleanup(func() { post.Close(); stream.Close() })
	return d
}

// startCGI runs the binaries as CGI children of Go's CGI host, one process
// per request. A CGI stream learns that its client left only when a
// heartbeat fails, and the test server waits for it when it closes, so the
// heartbeat is 1 s unless a test sets it.
func startCGI(t *testing.T, env map[string]string) *contract.Deployment {
	if _, ok := env["CHAT_HEARTBEAT_SECONDS"]; !ok {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["CHAT_HEARTBEAT_SECONDS"] = "1"
	}
	db, kv := settings(t, env)
	return serve(t, db, env, cgihost.Handler(filepath.Join(cgiBin, "post"), kv), cgihost.Handler(filepath.Join(cgiBin, "stream"), kv))
}

// startFastCGIStdin starts each binary with a listening socket as stdin,
// as mod_fcgid and spawn-fcgi do.
func startFastCGIStdin(t *testing.T, env map[string]string) *contract.Deployment {
	db, kv := settings(t, env)
	dir := t.TempDir()
	h := map[string]http.Handler{}
	for _, prog := range []string{"post", "stream"} {
		sock := filepath.Join(dir, prog+".sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ul := l.(*net.UnixListener)
		f, err := ul.File()
		// The child holds its own copy; the socket file must stay.
		ul.SetUnlinkOnClose(false)
		ul.Close()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(bin, prog))
		cmd.Stdin, cmd.Stderr, cmd.Env = f, os.Stderr, kv
		startProcess(t, cmd)
		f.Close()
		waitServing(t, "unix", sock)
		h[prog] = &fcgiclient.Handler{Network: "unix", Address: sock, Stderr: os.Stderr}
	}
	return serve(t, db, env, h["post"], h["stream"])
}

// waitServing waits until the program behind the FastCGI socket at addr
// answers FCGI_GET_VALUES. It then serves, and has asked for SIGTERM
// before: a program signalled while Go starts dies of it (the runtime
// catches every signal from the start, so /proc's SigCgt cannot tell).
func waitServing(t testing.TB, network, addr string) {
	t.Helper()
	c, err := fcgiclient.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(record.Append(nil, record.GetValues, 0, record.AppendPairs(nil, "FCGI_MPXS_CONNS", ""))); err != nil {
		t.Fatal(err)
	}
	if h, _, err := c.Next(); err != nil || h.Type != record.GetValuesResult {
		t.Fatalf("%s: no answer to FCGI_GET_VALUES (%v)", addr, err)
	}
}

// startDaemon starts each binary as a FastCGI daemon on a unix socket.
func startDaemon(t *testing.T, env map[string]string) *contract.Deployment {
	db, kv := settings(t, env)
	dir := t.TempDir()
	h := map[string]http.Handler{}
	for _, prog := range []string{"post", "stream"} {
		sock := filepath.Join(dir, prog+".sock")
		cmd := exec.Command(filepath.Join(bin, prog), "-listen", "unix:"+sock)
		cmd.Stderr, cmd.Env = os.Stderr, kv
		startProcess(t, cmd)
		waitForSocket(t, sock)
		h[prog] = &fcgiclient.Handler{Network: "unix", Address: sock, Stderr: os.Stderr}
	}
	return serve(t, db, env, h["post"], h["stream"])
}

// startProcess starts cmd and, when the test ends, stops it with SIGTERM
// and fails the test unless it exits cleanly and promptly.
func startProcess(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		// A test that ends at once may otherwise signal a program that has
		// not yet asked for SIGTERM, which then dies of it. Go's runtime
		// catches the signal from its start, before the program asks, so
		// this narrows that window and no more: daemons are waited for
		// until they listen, programs on stdin until they answer
		// (waitServing).
		waitForHandler(cmd.Process.Pid, syscall.SIGTERM, 10*time.Second)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s after SIGTERM: %v, want a clean exit", filepath.Base(cmd.Path), err)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("%s still running 15s after SIGTERM", filepath.Base(cmd.Path))
		}
	})
}

// waitForHandler waits up to timeout until process pid catches sig, as
// /proc/PID/status shows in SigCgt, or has exited.
func waitForHandler(pid int, sig syscall.Signal, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			mask, ok := strings.CutPrefix(line, "SigCgt:")
			if !ok {
				continue
			}
			if caught, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64); err == nil && caught&(1<<(sig-1)) != 0 {
				return
			}
		}
	}
}

// waitForSocket waits until a daemon accepts connections on sock.
func waitForSocket(t testing.TB, sock string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after 10s", sock)
}

// on returns start with the programs on a new database of backend b. A
// server's programs meet for wake-ups in a temporary directory of the test,
// not in the home directory.
func on(b dbtest.Backend, start contract.Start) contract.Start {
	if b == dbtest.SQLite {
		return start
	}
	return func(t *testing.T, env map[string]string) *contract.Deployment {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["CHAT_DB"] = dbtest.New(t, b)
		env["CHAT_WAKE_DIR"] = filepath.Join(t.TempDir(), "wake")
		return start(t, env)
	}
}

// modes are the ways the programs are hosted, each a contract.Start.
var modes = []struct {
	name  string
	start contract.Start
}{
	{"InProcess", startInProcess},
	{"CGI", startCGI},
	{"FastCGIStdin", startFastCGIStdin},
	{"Daemon", startDaemon},
}

// TestContract holds every hosting mode to the contract on SQLite, and a
// CGI program and a daemon (one connection each; a pool, listening on
// PostgreSQL) to it on each database server.
func TestContract(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			contract.Run(t, m.start)
		})
	}
	for _, b := range dbtest.Servers {
		for _, m := range modes {
			if m.name != "CGI" && m.name != "Daemon" {
				continue
			}
			t.Run(string(b)+"/"+m.name, func(t *testing.T) {
				t.Parallel()
				contract.Run(t, on(b, m.start))
			})
		}
	}
}

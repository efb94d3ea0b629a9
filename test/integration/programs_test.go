package integration

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cgichat/internal/wake"
	"cgichat/test/contract"
	"cgichat/test/fcgiclient"
)

// TestRunByHand checks what a person running a program in a terminal sees.
func TestRunByHand(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"No mode", nil, 2, "", "-listen"},
		{"Help", []string{"-h"}, 0, "FastCGI daemon", ""},
		{"Long help", []string{"--help"}, 0, "CHAT_DB", ""},
		{"Unknown flag", []string{"-port", "80"}, 2, "", "flag provided but not defined"},
		{"Stray argument", []string{"serve"}, 2, "", `unexpected argument "serve"`},
		{"Bad listen address", []string{"-listen", "http://x"}, 1, "", "unix:PATH or tcp:HOST:PORT"},
	}
	for _, prog := range []string{"post", "stream"} {
		for _, tt := range tests {
			t.Run(prog+"/"+tt.name, func(t *testing.T) {
				cmd := exec.Command(filepath.Join(bin, prog), tt.args...)
				cmd.Env = raceEnv
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				cmd.Stdin = strings.NewReader("") // not a socket
				err := cmd.Run()
				code := 0
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					code = exit.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tt.wantCode {
					t.Errorf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
				}
				if tt.wantStdout == "" && stdout.Len() > 0 {
					t.Errorf("stdout %q, want nothing", stdout.String())
				}
				if !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
					t.Errorf("stdout %q and stderr %q; want %q in stdout and %q in stderr",
						stdout.String(), stderr.String(), tt.wantStdout, tt.wantStderr)
				}
			})
		}
	}
}

// TestCGIStdoutIsOnlyTheResponse runs post as CGI with a broken setting:
// the log line must go to stderr and stdout must be a well-formed response.
func TestCGIStdoutIsOnlyTheResponse(t *testing.T) {
	cmd := exec.Command(filepath.Join(bin, "post"))
	cmd.Env = append([]string{
		"REQUEST_METHOD=POST", "SERVER_PROTOCOL=HTTP/1.1", "REQUEST_URI=/cgi-bin/post",
		"CONTENT_TYPE=application/json", "CONTENT_LENGTH=2",
		"CHAT_DB=" + filepath.Join(t.TempDir(), "chat.db"), "CHAT_HISTORY=lots",
	}, raceEnv...)
	cmd.Stdin = strings.NewReader("{}")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v (stderr %s)", err, stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "Status: 500") || !strings.Contains(out, "\r\n\r\n{\"error\":") && !strings.Contains(out, "\n\n{\"error\":") {
		t.Errorf("stdout = %q, want a CGI 500 response with a JSON error", out)
	}
	if !strings.Contains(out, "CHAT_HISTORY") {
		t.Errorf("stdout = %q, want the error to name CHAT_HISTORY", out)
	}
	if !strings.Contains(stderr.String(), "level=ERROR") || strings.Contains(out, "level=") {
		t.Errorf("stderr = %q; want the log line there and not in stdout", stderr.String())
	}
}

// TestDaemonOverTCP serves post on a loopback TCP port.
func TestDaemonOverTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	db, kv := settings(t, nil)
	cmd := exec.Command(filepath.Join(bin, "post"), "-listen", "tcp:"+addr)
	cmd.Env, cmd.Stderr = kv, os.Stderr
	startProcess(t, cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := serve(t, db, nil, &fcgiclient.Handler{Network: "tcp", Address: addr}, nil)
	if m := d.Post(t, "lobby", "ada", "over tcp"); m.ID != 1 {
		t.Errorf("id = %d, want 1", m.ID)
	}
}

// TestDaemonSocketFile checks that a stale socket file left by a crash is
// replaced, and that a socket in use is not stolen.
func TestDaemonSocketFile(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "post.sock")
	// A stale socket: bound, then abandoned without removing the file.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock})
	syscall.Close(fd)

	_, kv := settings(t, nil)
	first := exec.Command(filepath.Join(bin, "post"), "-listen", "unix:"+sock, "-socket-mode", "0600")
	first.Env, first.Stderr = kv, os.Stderr
	startProcess(t, first)
	waitForSocket(t, sock)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	second := exec.Command(filepath.Join(bin, "post"), "-listen", "unix:"+sock)
	second.Env = kv
	var stderr bytes.Buffer
	second.Stderr = &stderr
	err = second.Run()
	if err == nil || !strings.Contains(stderr.String(), "in use") {
		t.Errorf("second daemon on the same socket: %v, stderr %q; want an 'in use' failure", err, stderr.String())
	}
}

// TestDaemonStreamEndsWhenClientLeaves closes a client's connection and
// expects the daemon's handler to end within a heartbeat, because the
// web server closed the connection (the handler's context ends), not at a
// failed heartbeat write ("client gone").
func TestDaemonStreamEndsWhenClientLeaves(t *testing.T) {
	const heartbeat = time.Second
	// A daemon takes its settings from its environment (or cgichat.conf),
	// never from a request's FastCGI parameters.
	d, logs := startDaemonWithLog(t, map[string]string{"CHAT_HEARTBEAT_SECONDS": "1", "CHAT_LOG_LEVEL": "debug"}, nil)
	s := contract.Open(t, d.StreamURL(nil), nil)
	s.Until(t, "ready", 10*time.Second)
	s.Close()
	left := time.Now()
	select {
	case line := <-logs:
		if !strings.Contains(line, "closed the connection") {
			t.Errorf("stream ended with %q, want it ended because the web server closed the connection, not at a failed write", line)
		}
		if took := time.Since(left); took > heartbeat+500*time.Millisecond {
			t.Errorf("handler ended %v after the client left, want within one heartbeat (%v)", took, heartbeat)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no stream ended within 10s of the client leaving")
	}
}

// startDaemonWithLog starts stream as a daemon with env, reached with the
// FastCGI parameters params, and returns its "stream ended" log lines.
func startDaemonWithLog(t *testing.T, env, params map[string]string) (*contract.Deployment, <-chan string) {
	db, kv := settings(t, env)
	sock := filepath.Join(t.TempDir(), "stream.sock")
	cmd := exec.Command(filepath.Join(bin, "stream"), "-listen", "unix:"+sock)
	cmd.Env = kv
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	startProcess(t, cmd)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "stream ended") {
				lines <- sc.Text()
			}
		}
	}()
	waitForSocket(t, sock)
	return serve(t, db, nil, nil, &fcgiclient.Handler{Network: "unix", Address: sock, Params: params}), lines
}

// TestCGIStreamExitsWhenClientLeaves runs stream as a CGI program whose
// stdout reader goes away, as when the web server drops a departed client,
// and expects the process to exit at its next heartbeat.
func TestCGIStreamExitsWhenClientLeaves(t *testing.T) {
	const heartbeat = time.Second
	db, kv := settings(t, map[string]string{"CHAT_HEARTBEAT_SECONDS": "1"})
	cmd := exec.Command(filepath.Join(bin, "stream"))
	cmd.Env = append(kv, "REQUEST_METHOD=GET", "SERVER_PROTOCOL=HTTP/1.1", "REQUEST_URI=/cgi-bin/stream")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	// Read up to the ready event, then hang up.
	br := bufio.NewReader(out)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.HasPrefix(line, "event: ready") {
			break
		}
	}
	io.Copy(io.Discard, io.LimitReader(br, int64(br.Buffered())))
	out.(io.Closer).Close()
	left := time.Now()
	select {
	case err := <-done:
		if took := time.Since(left); took > heartbeat+time.Second {
			t.Errorf("process exited %v after its reader left, want within about one heartbeat", took)
		}
		// A clean exit, not death by SIGPIPE: it also removes its wake-up
		// socket.
		if err != nil {
			t.Errorf("exit: %v, want status 0", err)
		}
		if left, _ := os.ReadDir(wake.Dir(db)); len(left) != 0 {
			t.Errorf("%d wake-up sockets left behind, want 0", len(left))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("CGI stream still running 15s after its reader left")
	}
}

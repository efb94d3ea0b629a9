package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cgichat/internal/config"
	"cgichat/internal/sse"
	"cgichat/test/cgihost"
	"cgichat/test/fcgiclient"
)

// programsIn puts post and stream into a new directory of their own, as
// deploy.sh puts them into cgi-bin, with the settings file text beside
// them when it is not empty, and returns the directory.
func programsIn(t *testing.T, settings string) string {
	t.Helper()
	dir := t.TempDir()
	for _, prog := range []string{"post", "stream"} {
		// A hard link runs as a program of dir (os.Executable names the
		// link); a copy where links are not possible.
		if err := os.Link(filepath.Join(bin, prog), filepath.Join(dir, prog)); err != nil {
			b, err := os.ReadFile(filepath.Join(bin, prog))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, prog), b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if settings != "" {
		if err := os.WriteFile(filepath.Join(dir, "cgichat.conf"), []byte(settings), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// hosted is one program of a directory, running in one hosting mode.
type hosted struct {
	http.Handler
	pid int // the FastCGI process; 0 under CGI
	// params, set per request (before ServeHTTP), are passed as FastCGI
	// parameters, as nginx's fastcgi_param or mod_fcgid's SetEnv pass them.
	fcgi *fcgiclient.Handler
}

// with returns h's handler passing params with each request.
func (h hosted) with(params map[string]string) http.Handler {
	if h.fcgi == nil {
		return h.Handler
	}
	c := *h.fcgi
	c.Params = params
	return &c
}

// hostIn runs prog of dir in mode ("CGI", "FastCGIStdin" or "Daemon")
// with the environment env (NAME=value) and nothing else.
func hostIn(t *testing.T, dir, prog, mode string, env []string) hosted {
	t.Helper()
	path := filepath.Join(dir, prog)
	env = append(append([]string{"PATH=/usr/bin:/bin", "HOME=" + dir}, raceEnv...), env...)
	sock := filepath.Join(t.TempDir(), prog+".sock")
	var cmd *exec.Cmd
	switch mode {
	case "CGI":
		// A CGI stream learns that its reader left when a heartbeat
		// fails, and the test's server waits for it.
		return hosted{Handler: cgihost.Handler(path, append([]string{"CHAT_HEARTBEAT_SECONDS=1"}, env...))}
	case "FastCGIStdin":
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ul := l.(*net.UnixListener)
		f, err := ul.File()
		ul.SetUnlinkOnClose(false)
		ul.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd = exec.Command(path)
		cmd.Stdin = f
	case "Daemon":
		cmd = exec.Command(path, "-listen", "unix:"+sock)
	default:
		t.Fatalf("no hosting mode %q", mode)
	}
	cmd.Env, cmd.Stderr = env, os.Stderr
	startProcess(t, cmd)
	waitForSocket(t, sock)
	c := &fcgiclient.Handler{Network: "unix", Address: sock, Stderr: os.Stderr}
	return hosted{Handler: c, pid: cmd.Process.Pid, fcgi: c}
}

// call sends one request to h and returns the status and body.
func call(h http.Handler, method, target, body string) (int, string) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Host = "127.0.0.1"
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// posters numbers the nicks of postTo: without the cookie that claims a
// nick, each post needs a new one.
var posters atomic.Int64

// postTo posts text to room through h and fails unless it is stored.
func postTo(t *testing.T, h http.Handler, room, text string) {
	t.Helper()
	form := url.Values{"room": {room}, "nick": {fmt.Sprint("ada", posters.Add(1))}, "text": {text}}
	if code, body := call(h, "POST", "/cgi-bin/post", form.Encode()); code != 201 {
		t.Fatalf("post: got %d %q, want 201", code, body)
	}
}

// history opens a new stream of room through h and returns how many
// messages came before its ready event.
func history(t *testing.T, h http.Handler, room string) int {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/cgi-bin/stream?room="+room, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: got %d %q, want 200", resp.StatusCode, body)
	}
	r := sse.NewReader(resp.Body)
	n := 0
	for {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("stream: %v after %d messages, before ready", err, n)
		}
		switch ev.Type {
		case "message":
			n++
		case "ready":
			return n
		}
	}
}

var modeNames = []string{"CGI", "FastCGIStdin", "Daemon"}

// TestSettingsFileInEveryMode runs the programs with their settings in
// cgichat.conf beside them and none in the environment, in every hosting
// mode: the database is where the file says and the history as long; a
// variable in the environment wins over the file; and -check reports
// each setting with its source.
func TestSettingsFileInEveryMode(t *testing.T) {
	for _, mode := range modeNames {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			db := filepath.Join(data, "chat.db")
			dir := programsIn(t, fmt.Sprintf("# written by the test\nCHAT_DB = %s\n\nCHAT_HISTORY=\"2\"\nCHAT_RATE_LIMIT=off\nCHAT_KEEP_DAYS=5\n", db))
			env := []string{"CHAT_KEEP_DAYS=7"}
			post, stream := hostIn(t, dir, "post", mode, env), hostIn(t, dir, "stream", mode, env)
			room := "settings"
			for i := range 4 {
				postTo(t, post, room, fmt.Sprint("hello ", i))
			}
			if _, err := os.Stat(db); err != nil {
				t.Errorf("no database where the file says: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "cgichat-data", "chat.db")); err == nil {
				t.Errorf("a database at the default place too")
			}
			if got := history(t, stream, room); got != 2 {
				t.Errorf("a new reader got %d messages of history, want 2 (CHAT_HISTORY in the file)", got)
			}
		})
	}
	t.Run("EnvironmentWins", func(t *testing.T) {
		t.Parallel()
		db := filepath.Join(t.TempDir(), "chat.db")
		dir := programsIn(t, "CHAT_DB=/nonexistent/file.db\nCHAT_HISTORY=2\nCHAT_RATE_LIMIT=off\n")
		env := []string{"CHAT_DB=" + db, "CHAT_HISTORY=3"}
		post, stream := hostIn(t, dir, "post", "CGI", env), hostIn(t, dir, "stream", "CGI", env)
		for i := range 4 {
			postTo(t, post, "env", fmt.Sprint("hello ", i))
		}
		if got := history(t, stream, "env"); got != 3 {
			t.Errorf("got %d messages of history, want 3 (CHAT_HISTORY in the environment, over the file's 2)", got)
		}
	})
	t.Run("Check", func(t *testing.T) {
		t.Parallel()
		db := filepath.Join(t.TempDir(), "chat.db")
		dir := programsIn(t, "# the chat\nCHAT_DB="+db+"\nCHAT_HISTORY=2\nCHAT_KEEP_DAYS=5\n")
		for _, prog := range []string{"post", "stream"} {
			cmd := exec.Command(filepath.Join(dir, prog), "-check")
			cmd.Env = append([]string{"HOME=" + dir, "CHAT_KEEP_DAYS=7"}, raceEnv...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s -check: %v\n%s", prog, err, out)
			}
			got := checkSettings(t, string(out))
			for name, want := range map[string]string{
				"CHAT_DB":          db + " [file, line 2]",
				"CHAT_HISTORY":     "2 [file, line 3]",
				"CHAT_KEEP_DAYS":   "7 [environment]",
				"CHAT_STREAM_MODE": "live [default]",
				"CHAT_WAKE_DIR":    db + "-wake [default]",
			} {
				if got[name] != want {
					t.Errorf("%s -check: %s is %q, want %q\n%s", prog, name, got[name], want, out)
				}
			}
			if len(got) != len(config.Names) {
				t.Errorf("%s -check printed %d settings, want every one (%d):\n%s", prog, len(got), len(config.Names), out)
			}
		}
	})
}

// checkSettings returns the settings -check printed, as "value [source]"
// by name.
func checkSettings(t *testing.T, out string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(CHAT_[A-Z0-9_]+)=(\S*)\s+(\[[^]]+\])$`).FindAllStringSubmatch(out, -1) {
		got[m[1]] = strings.TrimSpace(m[2] + " " + m[3])
	}
	return got
}

// TestInvalidSettingsFile checks that a line the programs cannot use is a
// 500 in every mode whose JSON error names the file and the line, and
// that -check says the same and exits with 1.
func TestInvalidSettingsFile(t *testing.T) {
	for _, tt := range []struct {
		name, text, want string
		perm             os.FileMode // of the file; 0 leaves it 0644
	}{
		{"Syntax", "# the chat\nCHAT_HISTORY: 2\n", `cgichat.conf, line 2: "CHAT_HISTORY" has no "=": write NAME=value`, 0},
		// A client sees the error: it names the line, not its password.
		{"SecretKept", "CHAT_DB: mysql://chat:s3cret@db/chat\n", `cgichat.conf, line 1: "CHAT_DB" has no "="`, 0},
		{"Value", "CHAT_RATE_LIMIT=off\n\n\nCHAT_HISTORY=lots\n", `cgichat.conf, line 4: CHAT_HISTORY must be a whole number`, 0},
		// Whoever may write it would choose the database and the limits.
		{"WritableByAll", "CHAT_RATE_LIMIT=off\n", "cgichat.conf: every user of this host may change it: take that away with chmod o-w", 0o666},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := programsIn(t, tt.text)
			if tt.perm != 0 {
				os.Chmod(filepath.Join(dir, "cgichat.conf"), tt.perm)
			}
			env := []string{"CHAT_DB=" + filepath.Join(t.TempDir(), "chat.db")}
			for _, mode := range modeNames {
				post := hostIn(t, dir, "post", mode, env)
				code, body := call(post, "POST", "/cgi-bin/post", "room=r&nick=ada&text=hi")
				var e struct{ Error string }
				json.Unmarshal([]byte(body), &e)
				if code != 500 || !strings.Contains(e.Error, tt.want) || strings.Contains(body, "s3cret") {
					t.Errorf("%s: got %d %q, want 500 with an error containing %q and no password", mode, code, body, tt.want)
				}
			}
			cmd := exec.Command(filepath.Join(dir, "post"), "-check")
			cmd.Env = append(env, raceEnv...)
			out, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), tt.want) {
				t.Errorf("post -check: exit %d (%v), output\n%s\nwant exit 1 and %q", code, err, out, tt.want)
			}
		})
	}
}

// openFiles returns how many files process pid has open.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestRequestSettingsBounded sends a long-lived post process 1,500
// requests, each with its own CHAT_HISTORY, CHAT_POLL_MS and
// CHAT_HEARTBEAT_SECONDS FastCGI parameters, and a CHAT_DB and
// CHAT_WAKE_DIR naming a new path: the process opens no database for any
// of them (its open files stay as they were) and nothing appears at those
// paths. Under mod_fcgid (FastCGI on stdin) a request's CHAT_HISTORY is
// still honoured, since that is how its SetEnv arrives; a daemon ignores
// it.
func TestRequestSettingsBounded(t *testing.T) {
	const requests = 1500
	// What may come and go besides: the connection being served, and a
	// few the runtime holds briefly.
	const slack = 4
	for _, tt := range []struct {
		mode        string
		wantHistory int // a stream asking for CHAT_HISTORY=1 gets this many of 4 messages
	}{{"FastCGIStdin", 1}, {"Daemon", 4}} {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			db := filepath.Join(t.TempDir(), "chat.db")
			dir := programsIn(t, "")
			env := []string{"CHAT_DB=" + db, "CHAT_RATE_LIMIT=off"}
			post, stream := hostIn(t, dir, "post", tt.mode, env), hostIn(t, dir, "stream", tt.mode, env)
			for i := range 3 {
				postTo(t, post, "bounded", fmt.Sprint("hello ", i))
			}
			before := openFiles(t, post.pid)
			elsewhere := t.TempDir()
			start := time.Now()
			for i := range requests {
				params := map[string]string{
					"CHAT_HISTORY":           fmt.Sprint(i % 1000),
					"CHAT_POLL_MS":           fmt.Sprint(5 + i),
					"CHAT_HEARTBEAT_SECONDS": fmt.Sprint(1 + i%30),
					"CHAT_DB":                filepath.Join(elsewhere, fmt.Sprintf("db-%d", i), "chat.db"),
					"CHAT_WAKE_DIR":          filepath.Join(elsewhere, fmt.Sprintf("wake-%d", i)),
				}
				// GET is refused (405), but only after the settings are
				// read and the database is chosen.
				if code, body := call(post.with(params), "GET", "/cgi-bin/post", ""); code != 405 {
					t.Fatalf("request %d: got %d %q, want 405", i, code, body)
				}
			}
			after := openFiles(t, post.pid)
			t.Logf("%s: %d requests with their own settings in %v; the post process had %d open files before, %d after",
				tt.mode, requests, time.Since(start).Round(time.Millisecond), before, after)
			if after > before+slack {
				t.Errorf("open files grew from %d to %d over %d requests, want at most %d more", before, after, requests, slack)
			}
			if left, _ := os.ReadDir(elsewhere); len(left) > 0 {
				t.Errorf("requests' CHAT_DB and CHAT_WAKE_DIR made %d entries in %s, want none (first: %s)", len(left), elsewhere, left[0].Name())
			}
			postTo(t, post.with(map[string]string{"CHAT_DB": filepath.Join(elsewhere, "x.db")}), "bounded", "still here")
			if got := history(t, stream.with(map[string]string{"CHAT_HISTORY": "1"}), "bounded"); got != tt.wantHistory {
				t.Errorf("a stream with CHAT_HISTORY=1 passed with the request got %d messages of history, want %d", got, tt.wantHistory)
			}
		})
	}
}

package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/config"
	"cgichat/internal/hosting"
	"cgichat/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeInstance is a handler built by a test builder.
type fakeInstance struct {
	http.HandlerFunc
	closed bool
}

func (f *fakeInstance) serve(w http.ResponseWriter, r *http.Request, _ config.Config) {
	f.HandlerFunc(w, r)
}

func (f *fakeInstance) Close() error { f.closed = true; return nil }

func (f *fakeInstance) db() *store.Store { return nil }

var quietEnv = hosting.Env{Mode: hosting.Daemon, Log: quiet}

func serveOnce(t *testing.T, a *App) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "/cgi-bin/stream", nil))
	var body struct{ Error string }
	json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body.Error
}

func TestAppTurnsPanicsIntoJSON500(t *testing.T) {
	a := newApp(func(ctx context.Context, db config.Database, env hosting.Env) (instance, error) {
		return &fakeInstance{HandlerFunc: func(http.ResponseWriter, *http.Request) { panic("boom") }}, nil
	}, quietEnv)
	a.Getenv = func(string) string { return "" }
	t.Setenv("HOME", t.TempDir())
	code, msg := serveOnce(t, a)
	if code != 500 || msg == "" || strings.Contains(msg, "boom") {
		t.Errorf("after a panic: %d %q, want 500 with a message that does not leak the panic", code, msg)
	}
}

func TestAppRetriesAFailedBuildAndReusesAGoodOne(t *testing.T) {
	builds := 0
	var built *fakeInstance
	a := newApp(func(ctx context.Context, db config.Database, env hosting.Env) (instance, error) {
		builds++
		if builds == 1 {
			return nil, errors.New("disk full")
		}
		built = &fakeInstance{HandlerFunc: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }}
		return built, nil
	}, quietEnv)
	a.Getenv = func(k string) string {
		if k == "CHAT_DB" {
			return "/srv/chat.db"
		}
		return ""
	}
	code, msg := serveOnce(t, a)
	if code != 500 || !strings.Contains(msg, "database cannot be opened") || strings.Contains(msg, "disk full") {
		t.Errorf("failed build: %d %q, want 500 naming the database without the cause", code, msg)
	}
	for i := 0; i < 3; i++ {
		if code, _ := serveOnce(t, a); code != 204 {
			t.Errorf("request %d: status %d, want 204", i+2, code)
		}
	}
	if builds != 2 {
		t.Errorf("built %d times, want 2: one failure, then one reused instance", builds)
	}
	a.Close()
	if !built.closed {
		t.Error("Close did not close the instance")
	}
}

// recorder is a builder whose instances record the settings of each
// request they serve, and which counts the databases it opened.
type recorder struct {
	mu    sync.Mutex
	built []config.Database
	seen  []config.Config
}

func (rec *recorder) db() *store.Store { return nil }

func (rec *recorder) build(ctx context.Context, db config.Database, env hosting.Env) (instance, error) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.built = append(rec.built, db)
	return rec, nil
}

func (rec *recorder) serve(w http.ResponseWriter, r *http.Request, cfg config.Config) {
	rec.mu.Lock()
	rec.seen = append(rec.seen, cfg)
	rec.mu.Unlock()
	w.WriteHeader(204)
}

func (rec *recorder) Close() error { return nil }

// settingsApp returns an App in mode m whose environment is env, whose
// directory (settings file, .htaccess) is dir, and whose every request
// carries params, as FastCGI parameters.
func settingsApp(t *testing.T, m hosting.Mode, env map[string]string, dir string, params map[string]string, log *slog.Logger) (*App, *recorder) {
	t.Helper()
	rec := &recorder{}
	if log == nil {
		log = quiet
	}
	a := newApp(rec.build, hosting.Env{Mode: m, Log: log})
	a.Getenv = func(k string) string { return env[k] }
	a.Dir = dir
	a.params = func(*http.Request) map[string]string { return params }
	t.Cleanup(func() { a.Close() })
	return a, rec
}

// TestRequestSettingsByMode checks which settings a request's variables
// may set in each hosting mode: all under CGI, all but the database's
// under mod_fcgid, none for a daemon; and that a daemon given a new
// CHAT_DB, CHAT_POLL_MS or CHAT_HEARTBEAT_SECONDS with every request
// still opens one database, its own.
func TestRequestSettingsByMode(t *testing.T) {
	env := map[string]string{"CHAT_DB": "/srv/own.db", "CHAT_HISTORY": "7", "CHAT_STREAM_MODE": "live"}
	tests := []struct {
		mode        hosting.Mode
		wantHistory int
		wantMode    string
	}{
		{hosting.CGI, 2, "batch"},
		{hosting.FastCGIStdin, 2, "batch"},
		{hosting.Daemon, 7, "live"},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			var logs strings.Builder
			params := map[string]string{"CHAT_HISTORY": "2", "CHAT_STREAM_MODE": "batch"}
			a, rec := settingsApp(t, tt.mode, env, t.TempDir(), params, slog.New(slog.NewTextHandler(&logs, nil)))
			for i := range 50 {
				params["CHAT_DB"] = fmt.Sprintf("/tmp/request-%d.db", i)
				params["CHAT_WAKE_DIR"] = fmt.Sprintf("/tmp/request-%d-wake", i)
				params["CHAT_POLL_MS"] = fmt.Sprint(100 + i)
				params["CHAT_HEARTBEAT_SECONDS"] = fmt.Sprint(1 + i%20)
				if code, msg := serveOnce(t, a); code != 204 {
					t.Fatalf("request %d: %d %q", i, code, msg)
				}
			}
			last := rec.seen[len(rec.seen)-1]
			if last.History != tt.wantHistory || last.Mode != tt.wantMode {
				t.Errorf("CHAT_HISTORY %d and CHAT_STREAM_MODE %s, want %d and %s", last.History, last.Mode, tt.wantHistory, tt.wantMode)
			}
			if tt.mode == hosting.CGI {
				// A CGI process serves one request: its variables are its
				// environment, whatever they name.
				return
			}
			if len(rec.built) != 1 || rec.built[0].DB != "/srv/own.db" || rec.built[0].Poll != 250*time.Millisecond {
				t.Errorf("opened %+v, want only the environment's database, polled every 250 ms", rec.built)
			}
			for _, name := range config.DatabaseNames {
				if n := strings.Count(logs.String(), "setting="+name+" "); n != 1 {
					t.Errorf("%s, ignored in 50 requests, was logged %d times, want once:\n%s", name, n, logs.String())
				}
			}
		})
	}
}

// TestSettingsFile checks the settings file through the App: it is read,
// the environment wins over it, an edit takes effect with the next
// request, and an invalid line is a 500 whose message names the file and
// the line.
func TestSettingsFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, config.FileName)
	os.WriteFile(file, []byte("# the chat\nCHAT_DB=/srv/file.db\nCHAT_HISTORY=2\nCHAT_KEEP_DAYS=3\n"), 0o644)
	a, rec := settingsApp(t, hosting.FastCGIStdin, map[string]string{"CHAT_KEEP_DAYS": "9"}, dir, nil, nil)
	if code, msg := serveOnce(t, a); code != 204 {
		t.Fatalf("%d %q", code, msg)
	}
	got := rec.seen[0]
	if got.DB != "/srv/file.db" || got.History != 2 || got.KeepDays != 9 {
		t.Errorf("got DB %s, history %d, keep days %d; want /srv/file.db, 2 from the file and 9 from the environment", got.DB, got.History, got.KeepDays)
	}

	os.WriteFile(file+".new", []byte("CHAT_DB=/srv/file.db\nCHAT_HISTORY=5\n"), 0o644)
	os.Rename(file+".new", file)
	serveOnce(t, a)
	if g := rec.seen[1].History; g != 5 {
		t.Errorf("after an edit: history %d, want 5", g)
	}

	for _, tt := range []struct{ text, want string }{
		{"CHAT_DB=/srv/file.db\nCHAT_HISTORY 5\n", `cgichat.conf, line 2: "CHAT_HISTORY" has no "=": write NAME=value`},
		{"CHAT_DB=/srv/file.db\n\nCHAT_HISTORY=lots\n", `cgichat.conf, line 3: CHAT_HISTORY must be a whole number`},
	} {
		os.WriteFile(file, []byte(tt.text), 0o644)
		code, msg := serveOnce(t, a)
		if code != 500 || !strings.Contains(msg, tt.want) {
			t.Errorf("file %q: got %d %q, want 500 with %q", tt.text, code, msg, tt.want)
		}
	}
}

// TestHtaccessWarning checks the warning about SetEnv lines in the
// .htaccess beside the program that did not arrive: once per process,
// naming the line, and not for a setting that did arrive.
func TestHtaccessWarning(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".htaccess"), []byte("Options +ExecCGI\nSetHandler cgi-script\nSetEnv CHAT_HISTORY 2\nSetEnv CHAT_DB /srv/chat.db\nSetEnv no-gzip 1\n"), 0o644)
	var logs strings.Builder
	a, _ := settingsApp(t, hosting.CGI, map[string]string{"CHAT_DB": "/srv/chat.db"}, dir, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	serveOnce(t, a)
	serveOnce(t, a)
	if n := strings.Count(logs.String(), "did not reach it"); n != 1 {
		t.Errorf("logged %d warnings, want 1 (CHAT_HISTORY, once):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "line=3 setting=CHAT_HISTORY") {
		t.Errorf("the warning does not name line 3 and CHAT_HISTORY:\n%s", logs.String())
	}
}

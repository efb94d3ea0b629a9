package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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

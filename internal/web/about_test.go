package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"cgichat/internal/config"
	"cgichat/internal/hosting"
)

// TestAbout asks a real post program (an App on a SQLite file) about its
// settings in each hosting mode: the values in effect and where each came
// from, the budget of the mode, and never a path, an address or a secret.
func TestAbout(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "secret-place", "chat.db")
	os.WriteFile(filepath.Join(dir, config.FileName), []byte(
		"CHAT_HISTORY=16\nCHAT_STREAM_MODE=batch\nCHAT_ALLOWED_ORIGINS=https://friend.example\n"), 0o600)
	env := map[string]string{"CHAT_DB": db, "CHAT_KEEP_DAYS": "30", "CHAT_TRUSTED_PROXIES": "10.9.8.7"}
	tests := []struct {
		mode       hosting.Mode
		params     map[string]string
		hosting    string
		maxStreams int
		history    string // CHAT_HISTORY's value and source
	}{
		{hosting.CGI, nil, "cgi", config.DefaultMaxStreams, "16 file"},
		{hosting.FastCGIStdin, map[string]string{"CHAT_HISTORY": "3"}, "fastcgi-stdin", config.DefaultMaxStreams, "3 request"},
		{hosting.Daemon, map[string]string{"CHAT_HISTORY": "3"}, "daemon", 0, "16 file"},
	}
	for _, tt := range tests {
		t.Run(tt.hosting, func(t *testing.T) {
			a := NewPost(hosting.Env{Mode: tt.mode, Log: quiet})
			a.Getenv = func(k string) string { return env[k] }
			a.Dir = dir
			a.params = func(*http.Request) map[string]string { return tt.params }
			t.Cleanup(func() { a.Close() })

			r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(`{"action":"about"}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, r)
			body := rec.Body.String()
			if rec.Code != http.StatusOK {
				t.Fatalf("got %d %s, want 200", rec.Code, body)
			}
			var got aboutResult
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got.Program != "post" || got.Version == "" || got.Hosting != tt.hosting || got.StreamMode != "batch" ||
				got.MaxStreams != tt.maxStreams || got.Database != "sqlite" {
				t.Errorf("got %+v; want post, a version, hosting %s, batch, budget %d, sqlite", got, tt.hosting, tt.maxStreams)
			}
			from := map[string]string{}
			for _, s := range got.Settings {
				v := "(hidden)"
				if s.Value != nil {
					v = *s.Value
				}
				from[s.Name] = v + " " + s.From
			}
			if len(got.Settings) != len(config.Names) {
				t.Errorf("got %d settings, want every one of %d", len(got.Settings), len(config.Names))
			}
			for name, want := range map[string]string{
				"CHAT_HISTORY":         tt.history,
				"CHAT_STREAM_MODE":     "batch file",
				"CHAT_KEEP_DAYS":       "30 environment",
				"CHAT_RATE_LIMIT":      "5/10s default",
				"CHAT_MAX_STREAMS":     strconv.Itoa(tt.maxStreams) + " default",
				"CHAT_DB":              "(hidden) environment",
				"CHAT_WAKE_DIR":        "(hidden) default",
				"CHAT_ALLOWED_ORIGINS": "(hidden) file",
				"CHAT_TRUSTED_PROXIES": "(hidden) environment",
				"CHAT_ALLOWED_HOSTS":   "(hidden) default",
			} {
				if from[name] != want {
					t.Errorf("%s: got %q, want %q", name, from[name], want)
				}
			}
			for _, leak := range []string{dir, "secret-place", "friend.example", "10.9.8.7"} {
				if strings.Contains(body, leak) {
					t.Errorf("the answer contains %q: %s", leak, body)
				}
			}
		})
	}
}

func TestDatabaseKind(t *testing.T) {
	for db, want := range map[string]string{
		"/home/me/cgichat-data/chat.db":      "sqlite",
		"mysql://chat:pw@127.0.0.1/chat":     "mysql",
		"postgres://chat:pw@127.0.0.1/chat":  "postgres",
		"postgresql://chat@127.0.0.1/chat":   "postgres",
		"relative/mysql://not-a-server/chat": "sqlite",
	} {
		if got := databaseKind(db); got != want {
			t.Errorf("databaseKind(%q) = %q, want %q", db, got, want)
		}
	}
}

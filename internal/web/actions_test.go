package web

import (
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/ratelimit"
)

// TestPeekAction: a JSON body naming an action is an action; any other
// body is left, byte for byte, for the message path.
func TestPeekAction(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		action                  bool
	}{
		{"Action", "application/json", `{"action":"delete","id":42}`, true},
		{"Action of the wrong type", "application/json; charset=utf-8", `{"action":5}`, true},
		{"Message", "application/json", `{"nick":"ada","text":"action"}`, false},
		{"Action in a form", "application/x-www-form-urlencoded", "action=delete&id=42", false},
		{"Action in an array", "application/json", `[{"action":"delete"}]`, false},
		{"Not JSON", "application/json", `{"action":`, false},
		{"Too large", "application/json", `{"action":"delete","x":"` + strings.Repeat("x", MaxBody) + `"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", tt.contentType)
			body, ok := peekAction(r)
			if ok != tt.action {
				t.Fatalf("action = %v, want %v", ok, tt.action)
			}
			if ok && string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if rest, _ := io.ReadAll(r.Body); !ok && string(rest) != tt.body {
				t.Errorf("the message path reads %d bytes, want the %d sent", len(rest), len(tt.body))
			}
		})
	}
}

func TestGuessRate(t *testing.T) {
	slow := ratelimit.Rate{N: 2, Per: time.Minute}
	if got := guessRate(config.Config{RateLimit: slow}); got != slow {
		t.Errorf("with posts limited: %v, want the posts' rate %v", got, slow)
	}
	if got := guessRate(config.Config{}); got.Off() || got != defaultGuessRate {
		t.Errorf("with posts not limited: %v, want %v: tries are always limited", got, defaultGuessRate)
	}
}

func TestReadSetup(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, text  string
		label, code string
	}{
		{"Plain", "label: alice\ncode: a long code of ours\n", "alice", "a long code of ours"},
		{"As Windows editors save it", "\ufeff# for alice\r\nLabel : Zoë \r\nCODE:  x: y z  \r\n", "Zoë", "x: y z"},
		{"No code", "label: alice\n", "alice", ""},
		{"Other lines", "hello\n\nlabel alice\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, SetupFileName)
			os.WriteFile(path, []byte(tt.text), 0o600)
			f, found, err := readSetup(path)
			if err != nil || !found || f.label != tt.label || f.code != tt.code {
				t.Errorf("readSetup = %+v, %v, %v; want label %q, code %q", f, found, err, tt.label, tt.code)
			}
		})
	}
	if _, found, err := readSetup(filepath.Join(dir, "none")); found || err != nil {
		t.Errorf("no file: found %v, %v", found, err)
	}
	if sameCode("", "") || !sameCode("a long code", "a long code") || sameCode("a long code", "a long codE") {
		t.Error("sameCode compares wrongly")
	}
}

// FuzzParseAction feeds any JSON body to the action parser: it must never
// panic, and must refuse only with a client error.
func FuzzParseAction(f *testing.F) {
	for _, seed := range []string{
		`{"action":"delete","id":42}`,
		`{"action":"ban-nick","nick":"troll","for":"ever","reason":"spam"}`,
		`{"action":"log","before":9,"limit":500}`,
		`{"action":5,"id":"x"}`,
		`{"action":"login","key":"\ud800"}`,
		`{"action":"redeem","code":"7KQ2M-X4PRD"} {}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		raw, ok := peekAction(r)
		if !ok {
			return
		}
		if _, err := parseAction(raw); err != nil && chat.ErrorCode(err) != chat.EInvalid {
			t.Fatalf("refused with code %q (%v), want invalid", chat.ErrorCode(err), err)
		}
	})
}

package hosting

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
)

func TestConnLimits(t *testing.T) {
	tests := []struct {
		files       uint64
		serve, busy int
	}{
		{64, 28, 4},         // 64 − (32 + 4); 36 / 8
		{1024, 928, 12},     // 1024 − (32 + 64); 96 / 8
		{65536, 61408, 516}, // 65536 − (32 + 4096)
		{40, 8, 2},          // too few to keep a reserve: a few anyway
		{0, 8, 2},
	}
	for _, tt := range tests {
		serve, busy := connLimits(tt.files)
		if serve != tt.serve || busy != tt.busy {
			t.Errorf("connLimits(%d) = %d, %d; want %d, %d", tt.files, serve, busy, tt.serve, tt.busy)
		}
		if tt.files >= 64 && uint64(serve+busy) >= tt.files {
			t.Errorf("connLimits(%d) leaves no room for the database: %d + %d", tt.files, serve, busy)
		}
	}
}

// TestRaiseFileLimit checks that the soft limit ends at the hard one and
// that the limit returned is the one in force.
func TestRaiseFileLimit(t *testing.T) {
	var before syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &before)
	lowered := before
	lowered.Cur = min(before.Max, 256)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	got, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var now syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	if got != before.Max || now.Cur != before.Max {
		t.Errorf("raiseFileLimit() = %d, soft limit now %d; want both %d (the hard limit)", got, now.Cur, before.Max)
	}
}

// TestBusy checks the busy answer: 503, Retry-After, and the chat's JSON
// error form.
func TestBusy(t *testing.T) {
	w := httptest.NewRecorder()
	busy(w, httptest.NewRequest("GET", "/cgi-bin/stream", nil))
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
		t.Errorf("body %q: %v; want {\"error\": \"a sentence\"}", w.Body, err)
	}
	tests := []struct{ name, want string }{
		{"Content-Type", "application/json; charset=utf-8"},
		{"Retry-After", busyRetrySeconds},
		{"Cache-Control", "no-store"},
	}
	for _, tt := range tests {
		if got := w.Header().Get(tt.name); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", w.Code)
	}
}

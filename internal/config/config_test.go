package config_test

import (
	"strings"
	"testing"
	"time"

	"cgichat/internal/config"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadDefaults(t *testing.T) {
	t.Setenv("HOME", "/home/ada")
	got, err := config.Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		DB:        "/home/ada/cgichat-data/chat.db",
		Stream:    120 * time.Second,
		Heartbeat: 5 * time.Second,
		Poll:      250 * time.Millisecond,
		History:   50,
		Mode:      "live",
	}
	if got != want {
		t.Errorf("Load() = %+v, want %+v", got, want)
	}
}

func TestLoadValues(t *testing.T) {
	got, err := config.Load(env(map[string]string{
		"CHAT_DB":                "/srv/chat/x.db",
		"CHAT_STREAM_SECONDS":    " 30 ",
		"CHAT_HEARTBEAT_SECONDS": "2",
		"CHAT_POLL_MS":           "20",
		"CHAT_HISTORY":           "0",
		"CHAT_STREAM_MODE":       "batch",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{DB: "/srv/chat/x.db", Stream: 30 * time.Second, Heartbeat: 2 * time.Second,
		Poll: 20 * time.Millisecond, History: 0, Mode: "batch"}
	if got != want {
		t.Errorf("Load() = %+v, want %+v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, key, value, wantInMessage string
	}{
		{"StreamNotANumber", "CHAT_STREAM_SECONDS", "abc", `CHAT_STREAM_SECONDS must be a whole number of seconds from 1 to 299, not "abc"`},
		{"StreamAtFcgidBusyTimeout", "CHAT_STREAM_SECONDS", "300", "from 1 to 299"},
		{"HeartbeatZero", "CHAT_HEARTBEAT_SECONDS", "0", "CHAT_HEARTBEAT_SECONDS"},
		{"PollTooFast", "CHAT_POLL_MS", "1", "CHAT_POLL_MS"},
		{"HistoryNegative", "CHAT_HISTORY", "-1", "CHAT_HISTORY"},
		{"HistoryFraction", "CHAT_HISTORY", "1.5", "CHAT_HISTORY"},
		{"UnknownMode", "CHAT_STREAM_MODE", "fast", `CHAT_STREAM_MODE must be "live" or "batch", not "fast"`},
		{"DBWithQuery", "CHAT_DB", "/x/chat.db?mode=ro", "CHAT_DB may not contain"},
		{"DBDirectory", "CHAT_DB", "/x/", "must name a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"CHAT_DB": "/tmp/x.db", tt.key: tt.value}
			_, err := config.Load(env(vars))
			if err == nil {
				t.Fatalf("Load with %s=%q: no error", tt.key, tt.value)
			}
			if !strings.Contains(err.Error(), tt.wantInMessage) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantInMessage)
			}
		})
	}
}

func TestConfigIsAMapKey(t *testing.T) {
	a, _ := config.Load(env(map[string]string{"CHAT_DB": "/a.db"}))
	b, _ := config.Load(env(map[string]string{"CHAT_DB": "/a.db"}))
	m := map[config.Config]int{a: 1}
	if m[b] != 1 {
		t.Errorf("equal configurations are different map keys")
	}
}

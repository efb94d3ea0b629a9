// Package config reads cgichat's settings from the environment, where
// Apache's SetEnv, nginx's fastcgi_param and systemd's Environment= put them.
// Every default lives here, and every value is checked before it is used.
package config

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stream modes: live keeps the response open; batch answers with what is
// pending (or the first new message) and ends, for hosts that buffer.
const (
	ModeLive  = "live"
	ModeBatch = "batch"
)

// Defaults. Heartbeat and stream life are chosen for Apache: under mod_cgid
// a stream outlives its departed client by two to four heartbeats, so 5 s
// frees it within about 20 s; 120 s stays below mod_fcgid's 300 s
// FcgidBusyTimeout while keeping reconnects rare.
const (
	DefaultStreamSeconds    = 120
	DefaultHeartbeatSeconds = 5
	DefaultPollMS           = 250
	DefaultHistory          = 50
	DefaultDBDir            = "cgichat-data"
	DefaultDBName           = "chat.db"
)

// Config is one complete set of settings. It is comparable, so a process
// serving several configurations (FastCGI parameters may differ per request)
// can keep one store per Config.
type Config struct {
	DB        string        // CHAT_DB: path of the SQLite file
	Stream    time.Duration // CHAT_STREAM_SECONDS: longest life of one stream response
	Heartbeat time.Duration // CHAT_HEARTBEAT_SECONDS: a comment line this often
	Poll      time.Duration // CHAT_POLL_MS: how often a stream checks the database unprompted
	History   int           // CHAT_HISTORY: messages sent on first join
	Mode      string        // CHAT_STREAM_MODE: live or batch
}

// Load reads the configuration through getenv (os.Getenv, or a lookup that
// prefers FastCGI parameters). The error names the variable, the value and
// what would be accepted.
func Load(getenv func(string) string) (Config, error) {
	c := Config{Mode: ModeLive}
	var err error
	if c.DB, err = dbPath(getenv("CHAT_DB")); err != nil {
		return Config{}, err
	}
	ints := []struct {
		name     string
		def      int
		min, max int
		unit     string
		set      func(int)
	}{
		{"CHAT_STREAM_SECONDS", DefaultStreamSeconds, 1, 299, "seconds", func(n int) { c.Stream = time.Duration(n) * time.Second }},
		{"CHAT_HEARTBEAT_SECONDS", DefaultHeartbeatSeconds, 1, 30, "seconds", func(n int) { c.Heartbeat = time.Duration(n) * time.Second }},
		{"CHAT_POLL_MS", DefaultPollMS, 5, 10000, "milliseconds", func(n int) { c.Poll = time.Duration(n) * time.Millisecond }},
		{"CHAT_HISTORY", DefaultHistory, 0, 1000, "messages", func(n int) { c.History = n }},
	}
	for _, v := range ints {
		n, err := intVar(v.name, getenv(v.name), v.def, v.min, v.max, v.unit)
		if err != nil {
			return Config{}, err
		}
		v.set(n)
	}
	switch m := strings.TrimSpace(getenv("CHAT_STREAM_MODE")); m {
	case "":
	case ModeLive, ModeBatch:
		c.Mode = m
	default:
		return Config{}, fmt.Errorf("CHAT_STREAM_MODE must be %q or %q, not %q", ModeLive, ModeBatch, m)
	}
	return c, nil
}

// intVar parses one whole-number variable, or returns def when it is unset.
func intVar(name, s string, def, min, max int, unit string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%s must be a whole number of %s from %d to %d, not %q", name, unit, min, max, s)
	}
	return n, nil
}

// dbPath returns the absolute path of the database: CHAT_DB when set, else
// DefaultDBDir/DefaultDBName in the home directory of the user the program
// runs as, which is outside any docroot on a typical host.
func dbPath(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		home, err := homeDir()
		if err != nil {
			return "", fmt.Errorf("CHAT_DB is not set and the home directory is unknown (%v); set CHAT_DB to the path of the database file", err)
		}
		s = filepath.Join(home, DefaultDBDir, DefaultDBName)
	}
	if strings.ContainsAny(s, "?#") {
		return "", fmt.Errorf("CHAT_DB may not contain '?' or '#': %q", s)
	}
	if strings.HasSuffix(s, "/") {
		return "", fmt.Errorf("CHAT_DB must name a file, not a directory: %q", s)
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", fmt.Errorf("CHAT_DB %q: %w", s, err)
	}
	return abs, nil
}

// homeDir returns $HOME, or the passwd entry's home when the web server
// cleared the environment, as Apache does for CGI programs.
func homeDir() (string, error) {
	if h := os.Getenv("HOME"); h != "" {
		return h, nil
	}
	u, err := user.Current()
	if err != nil {
		return "", err
	}
	if u.HomeDir == "" {
		return "", fmt.Errorf("user %s has no home directory", u.Username)
	}
	return u.HomeDir, nil
}

// Help describes every variable and its default, for usage texts.
var Help = fmt.Sprintf(`Settings (environment variables; SetEnv, fastcgi_param or systemd):
  CHAT_DB                 SQLite file (default ~/%s/%s of the user
                          the program runs as; keep it outside the docroot)
  CHAT_STREAM_SECONDS     longest life of one stream response (default %d)
  CHAT_HEARTBEAT_SECONDS  a comment line this often (default %d)
  CHAT_POLL_MS            database check without a wake-up (default %d)
  CHAT_HISTORY            messages sent on first join (default %d)
  CHAT_STREAM_MODE        live, or batch for hosts that buffer (default live)
  CHAT_LOG_LEVEL          debug, info, warn or error (default info)
`, DefaultDBDir, DefaultDBName, DefaultStreamSeconds, DefaultHeartbeatSeconds, DefaultPollMS, DefaultHistory)

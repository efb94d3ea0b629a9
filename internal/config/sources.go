package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Names are every setting Load reads, in the order of Help. A settings
// file may set these and no others.
var Names = []string{
	"CHAT_DB",
	"CHAT_WAKE_DIR",
	"CHAT_STREAM_SECONDS",
	"CHAT_HEARTBEAT_SECONDS",
	"CHAT_POLL_MS",
	"CHAT_HISTORY",
	"CHAT_STREAM_MODE",
	"CHAT_RATE_LIMIT",
	"CHAT_ALLOWED_ORIGINS",
	"CHAT_ALLOWED_HOSTS",
	"CHAT_TRUSTED_PROXIES",
	"CHAT_IPV6_PREFIX",
	"CHAT_NICK_HOURS",
	"CHAT_STREAMS_PER_CLIENT",
	"CHAT_MAX_STREAMS",
	"CHAT_KEEP_MESSAGES",
	"CHAT_KEEP_DAYS",
	"CHAT_KEEP_TOTAL_MB",
	"CHAT_ROOMS_PER_DAY",
	"CHAT_LOG_LEVEL",
}

// DatabaseNames are the settings that make up a Database: a process opens
// a database, its wake-ups and its feed for each distinct set of them, so
// they never come with a request (a request could otherwise name any path,
// or make a process open a database per request).
var DatabaseNames = []string{"CHAT_DB", "CHAT_WAKE_DIR", "CHAT_POLL_MS", "CHAT_HEARTBEAT_SECONDS"}

// IsDatabaseSetting reports whether name is one of DatabaseNames.
func IsDatabaseSetting(name string) bool { return slices.Contains(DatabaseNames, name) }

// Source is where a setting's value came from.
type Source int

// The sources, from lowest to highest precedence.
const (
	FromDefault Source = iota
	FromFile
	FromEnv
	FromRequest
)

func (s Source) String() string {
	switch s {
	case FromFile:
		return "file"
	case FromEnv:
		return "environment"
	case FromRequest:
		return "request"
	}
	return "default"
}

// Layers are the places a setting may come from, highest first: with the
// request (what the web server passes with it, where the hosting mode
// allows), the process environment, the settings file; else the default.
// An empty value counts as none, so the next place decides.
type Layers struct {
	Request func(name string) string // nil: nothing comes with requests
	Env     func(name string) string // nil: no environment
	File    *File                    // nil: no file
}

// Lookup returns name's value and where it came from, and for the file
// its line.
func (l Layers) Lookup(name string) (value string, from Source, line int) {
	if l.Request != nil {
		if v := l.Request(name); strings.TrimSpace(v) != "" {
			return v, FromRequest, 0
		}
	}
	if l.Env != nil {
		if v := l.Env(name); strings.TrimSpace(v) != "" {
			return v, FromEnv, 0
		}
	}
	if v, line, ok := l.File.Lookup(name); ok && strings.TrimSpace(v) != "" {
		return v, FromFile, line
	}
	return "", FromDefault, 0
}

// Load reads the settings through l. An invalid value from the settings
// file is a FileError naming its line.
func (l Layers) Load() (Config, error) {
	// Load checks each setting as soon as it reads it, so the last one
	// read is the one an error is about.
	last := ""
	c, err := Load(func(name string) string {
		last = name
		v, _, _ := l.Lookup(name)
		return v
	})
	if err != nil {
		if _, from, line := l.Lookup(last); from == FromFile {
			return Config{}, &FileError{Path: l.File.Path, Line: line, Err: err}
		}
		return Config{}, err
	}
	return c, nil
}

// Value returns the value c has for the setting name, written as the
// setting would be (a database server's password hidden); ok is false for
// a name that is not a setting.
func (c Config) Value(name string) (value string, ok bool) {
	itoa := strconv.Itoa
	switch name {
	case "CHAT_DB":
		return Redacted(c.DB), true
	case "CHAT_WAKE_DIR":
		return c.WakeDir, true
	case "CHAT_STREAM_SECONDS":
		return itoa(int(c.Stream.Seconds())), true
	case "CHAT_HEARTBEAT_SECONDS":
		if c.Heartbeat == 0 {
			return "", true // the hosting mode's default: HeartbeatFor
		}
		return itoa(int(c.Heartbeat.Seconds())), true
	case "CHAT_POLL_MS":
		return itoa(int(c.Poll.Milliseconds())), true
	case "CHAT_HISTORY":
		return itoa(c.History), true
	case "CHAT_STREAM_MODE":
		return c.Mode, true
	case "CHAT_RATE_LIMIT":
		if c.RateLimit.N == 0 {
			return "off", true
		}
		return c.RateLimit.String(), true
	case "CHAT_ALLOWED_ORIGINS":
		return c.AllowedOrigins, true
	case "CHAT_ALLOWED_HOSTS":
		return c.AllowedHosts, true
	case "CHAT_TRUSTED_PROXIES":
		return c.TrustedProxies, true
	case "CHAT_IPV6_PREFIX":
		return itoa(c.IPv6Prefix), true
	case "CHAT_NICK_HOURS":
		return itoa(int(c.NickHold.Hours())), true
	case "CHAT_STREAMS_PER_CLIENT":
		return itoa(c.StreamsPerClient), true
	case "CHAT_MAX_STREAMS":
		if c.MaxStreams < 0 {
			return "", true // the hosting mode's default: StreamBudget
		}
		return itoa(c.MaxStreams), true
	case "CHAT_KEEP_MESSAGES":
		return itoa(c.KeepMessages), true
	case "CHAT_KEEP_DAYS":
		return itoa(c.KeepDays), true
	case "CHAT_KEEP_TOTAL_MB":
		return itoa(c.KeepTotalMB), true
	case "CHAT_ROOMS_PER_DAY":
		return itoa(c.RoomsPerDay), true
	case "CHAT_LOG_LEVEL":
		return strings.ToLower(c.LogLevel.String()), true
	}
	return "", false
}

// Setting is one setting as a program runs with it: its value and where
// that came from.
type Setting struct {
	Name  string
	Value string // as Config.Value writes it
	From  Source
	Line  int // the settings file's line, for FromFile
}

// Where says where s came from, for people: "file, line 3".
func (s Setting) Where() string {
	if s.From == FromFile {
		return fmt.Sprintf("%s, line %d", s.From, s.Line)
	}
	return s.From.String()
}

// Settings returns every setting c holds with where it came from in l,
// in the order of Names.
func (l Layers) Settings(c Config) []Setting {
	out := make([]Setting, 0, len(Names))
	for _, name := range Names {
		v, _ := c.Value(name)
		_, from, line := l.Lookup(name)
		out = append(out, Setting{Name: name, Value: v, From: from, Line: line})
	}
	return out
}

// IsFileError reports whether err is about the settings file.
func IsFileError(err error) bool {
	var fe *FileError
	return errors.As(err, &fe)
}

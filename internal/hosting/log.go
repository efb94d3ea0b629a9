package hosting

import (
	"log/slog"
	"os"
	"strings"
)

// NewLogger returns the program's logger, writing text lines to stderr
// (Apache's error log under CGI; stdout is the response) at the level
// CHAT_LOG_LEVEL names, and makes it the default logger.
func NewLogger(program string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.TrimSpace(os.Getenv("CHAT_LOG_LEVEL")))); err != nil {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).
		With("program", program, "pid", os.Getpid())
	slog.SetDefault(log)
	return log
}

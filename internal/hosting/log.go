package hosting

import (
	"log/slog"
	"os"

	"cgichat/internal/config"
)

// NewLogger returns the program's logger, writing text lines to stderr
// (Apache's error log under CGI; stdout is the response), and makes it the
// default logger. Its level starts at the process's CHAT_LOG_LEVEL; the
// returned LevelVar lets each request's settings change it, since under
// FastCGI those arrive with the request, not in the environment.
func NewLogger(program string) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	if l, err := config.LogLevel(os.Getenv("CHAT_LOG_LEVEL")); err == nil {
		level.Set(l)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).
		With("program", program, "pid", os.Getpid())
	slog.SetDefault(log)
	return log, level
}

// Package web holds cgichat's two HTTP handlers, post and stream, and the
// App that builds them from the configuration of each request.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"sync"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/fastcgi"
)

// instance is a handler built for one configuration, with what it opened.
type instance interface {
	http.Handler
	Close() error
}

// builder opens what a handler needs for cfg, with at most conns
// connections to its database.
type builder func(ctx context.Context, cfg config.Config, conns int, log *slog.Logger) (instance, error)

// Database connections per configuration: a process serving one request at
// a time (CGI, mod_fcgid) keeps one, which is what shared hosts that cap
// connections per user need; a daemon serving many at once a small pool.
const (
	oneRequestConns = 1
	daemonConns     = 8
)

// App is one program's http.Handler. It reads the configuration of every
// request (FastCGI parameters first, then the process environment, so
// SetEnv and fastcgi_param work in every hosting mode), builds a handler
// for it once, and keeps no panic from reaching the client.
type App struct {
	// Getenv reads the process environment; nil means os.Getenv. Tests
	// set it to give each App its own settings.
	Getenv func(string) string

	// Level, when set, follows each request's CHAT_LOG_LEVEL.
	Level *slog.LevelVar

	build builder
	log   *slog.Logger
	conns int // database connections per configuration

	ctx    context.Context // ends background work at Close
	cancel context.CancelFunc

	mu        sync.Mutex
	instances map[config.Config]instance
}

func newApp(build builder, log *slog.Logger) *App {
	ctx, cancel := context.WithCancel(context.Background())
	return &App{build: build, log: log, conns: daemonConns, ctx: ctx, cancel: cancel, instances: make(map[config.Config]instance)}
}

// OneAtATime tells the App, before its first request, that its process
// serves requests one at a time (CGI, FastCGI on stdin), so one database
// connection is enough.
func (a *App) OneAtATime() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conns = oneRequestConns
}

// ServeHTTP serves r with the handler for its configuration.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			a.log.Error("panic while serving", "uri", r.RequestURI, "panic", v, "stack", string(debug.Stack()))
			// If the response has begun this write is lost, which is all
			// that can be done.
			fail(w, r, a.log, fmt.Errorf("panic: %v", v))
		}
	}()
	cfg, err := config.Load(a.getenv(r))
	if err != nil {
		a.log.Error("configuration is invalid", "err", err)
		fail(w, r, a.log, &chat.Error{Code: chat.EConfig, Message: "The chat is misconfigured: " + err.Error() + "."})
		return
	}
	if a.Level != nil {
		a.Level.Set(cfg.LogLevel)
	}
	h, err := a.instance(cfg)
	if err != nil {
		fail(w, r, a.log, &chat.Error{
			Code:    chat.EConfig,
			Message: "The chat's database cannot be opened. The site owner will find the reason in the web server's error log.",
			Err:     err,
		})
		return
	}
	h.ServeHTTP(w, r)
}

// getenv returns a lookup preferring the request's FastCGI parameters
// (where mod_fcgid puts SetEnv values and nginx its fastcgi_param) over the
// process environment (CGI, systemd).
func (a *App) getenv(r *http.Request) func(string) string {
	params := fastcgi.ProcessEnv(r)
	env := a.Getenv
	if env == nil {
		env = os.Getenv
	}
	return func(key string) string {
		if v, ok := params[key]; ok {
			return v
		}
		return env(key)
	}
}

// instance returns the handler for cfg, building it on first use. A failed
// build is not kept: the next request tries again.
func (a *App) instance(cfg config.Config) (instance, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h, ok := a.instances[cfg]; ok {
		return h, nil
	}
	if a.ctx.Err() != nil {
		return nil, errors.New("web: app is closed")
	}
	h, err := a.build(a.ctx, cfg, a.conns, a.log)
	if err != nil {
		return nil, err
	}
	a.instances[cfg] = h
	return h, nil
}

// Close stops background work and closes every database.
func (a *App) Close() error {
	a.cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for cfg, h := range a.instances {
		errs = append(errs, h.Close())
		delete(a.instances, cfg)
	}
	return errors.Join(errs...)
}

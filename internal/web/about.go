package web

import (
	"context"
	"runtime/debug"
	"strconv"
	"strings"

	"cgichat/internal/config"
	"cgichat/internal/hosting"
)

// sources are where a request's settings came from (the web server's
// per-request variables, the environment, the settings file) and the
// hosting mode that decided which of them count: what the about action
// reports beside the values.
type sources struct {
	layers config.Layers
	mode   hosting.Mode
}

type sourcesKey struct{}

// withSources returns ctx carrying s, for the handlers.
func withSources(ctx context.Context, s sources) context.Context {
	return context.WithValue(ctx, sourcesKey{}, s)
}

// sourcesOf returns what withSources put in ctx; a request served without
// an App (a test's) has only defaults and no mode.
func sourcesOf(ctx context.Context) sources {
	s, _ := ctx.Value(sourcesKey{}).(sources)
	return s
}

// hiddenSettings are the settings whose values about leaves out: paths on
// the host and lists of addresses, which tell a stranger where to look.
// Their source is still reported.
var hiddenSettings = map[string]bool{
	"CHAT_DB":              true,
	"CHAT_WAKE_DIR":        true,
	"CHAT_ALLOWED_ORIGINS": true,
	"CHAT_ALLOWED_HOSTS":   true,
	"CHAT_TRUSTED_PROXIES": true,
}

// aboutResult is the answer to about: what a check from outside
// (deploy.sh --check) needs to know of the settings in effect, and
// nothing that names a path, an address or a secret.
type aboutResult struct {
	Program    string         `json:"program"`
	Version    string         `json:"version"`
	Hosting    string         `json:"hosting"`
	StreamMode string         `json:"streamMode"`
	MaxStreams int            `json:"maxStreams"`
	History    int            `json:"history"`
	Database   string         `json:"database"`
	Settings   []aboutSetting `json:"settings"`
}

// aboutSetting is one setting and where it came from; Value is absent for
// hiddenSettings.
type aboutSetting struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
	From  string  `json:"from"`
}

// about reports the settings this request was served with and where each
// came from, the hosting mode, the database's kind and the programs'
// version, for deploy.sh --check, which sees a deployment only over HTTP.
func (h *postHandler) about(c *actionCall) (any, error) {
	src := sourcesOf(c.r.Context())
	res := aboutResult{
		Program:    "post",
		Version:    version(),
		Hosting:    modeName(src.mode),
		StreamMode: c.cfg.Mode,
		MaxStreams: c.cfg.StreamBudget(src.mode.Concurrent()),
		History:    c.cfg.History,
		Database:   databaseKind(c.cfg.DB),
	}
	for _, s := range src.layers.Settings(c.cfg) {
		a := aboutSetting{Name: s.Name, From: s.From.String()}
		// The hosting mode's defaults.
		switch {
		case s.Name == "CHAT_MAX_STREAMS" && s.Value == "":
			s.Value = strconv.Itoa(res.MaxStreams)
		case s.Name == "CHAT_HEARTBEAT_SECONDS" && s.Value == "":
			s.Value = strconv.Itoa(int(c.cfg.Database().HeartbeatFor(src.mode.Concurrent()).Seconds()))
		}
		if !hiddenSettings[s.Name] {
			a.Value = &s.Value
		}
		res.Settings = append(res.Settings, a)
	}
	return res, nil
}

// modeName names a hosting mode for about: "cgi", "fastcgi-stdin" or
// "daemon", or "unknown".
func modeName(m hosting.Mode) string {
	switch m {
	case hosting.CGI:
		return "cgi"
	case hosting.FastCGIStdin:
		return "fastcgi-stdin"
	case hosting.Daemon:
		return "daemon"
	}
	return "unknown"
}

// databaseKind names the kind of database db is: "sqlite", "mysql" or
// "postgres".
func databaseKind(db string) string {
	switch {
	case strings.HasPrefix(db, "mysql://"):
		return "mysql"
	case config.IsServerURL(db):
		return "postgres"
	}
	return "sqlite"
}

// version is the programs' module version: a release's tag, or "(devel)"
// for a build from a checkout (deploy.sh builds with -buildvcs=false, so
// that an unchanged tree gives unchanged binaries).
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

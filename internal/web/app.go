// Package web holds cgichat's two HTTP handlers, post and stream, and the
// App that serves each request with the settings it arrives with.
package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/hosting"
	"cgichat/internal/identity"
	"cgichat/internal/store"
	"cgichat/internal/tail"
)

// The programs, for their thin mains.
var (
	Post = hosting.Program{
		Name:     "post",
		Summary:  "stores chat messages (POST cgi-bin/post)",
		Build:    func(env hosting.Env) hosting.Handler { return NewPost(env) },
		Commands: []hosting.Command{moderatorKeyCommand},
	}
	Stream = hosting.Program{
		Name:    "stream",
		Summary: "sends chat messages as Server-Sent Events (GET cgi-bin/stream)",
		Build:   func(env hosting.Env) hosting.Handler { return NewStream(env) },
	}
)

// instance is a handler opened for one database, with what it opened.
type instance interface {
	// serve answers r with the request's settings cfg.
	serve(w http.ResponseWriter, r *http.Request, cfg config.Config)
	// db returns the store the handler opened.
	db() *store.Store
	Close() error
}

// builder opens what a handler needs for db.
type builder func(ctx context.Context, db config.Database, env hosting.Env) (instance, error)

// App is one program's http.Handler. It reads the settings of every
// request — the web server's per-request variables where the hosting mode
// allows them, then the process environment, then the settings file
// beside the program, so SetEnv, fastcgi_param, systemd and the file all
// work —, opens each database once, and keeps no panic from reaching the
// client. The database's own settings never come with a request, so a
// process opens only the databases its environment and file name.
type App struct {
	// Getenv reads the process environment; nil means os.Getenv. Tests
	// set it to give each App its own settings.
	Getenv func(string) string
	// Dir holds the settings file (config.FileName) and the .htaccess
	// whose SetEnv lines the App checks; empty means the program's own
	// directory. Tests set it before the first request.
	Dir string

	build  builder
	env    hosting.Env
	params func(*http.Request) map[string]string // hosting.Params; tests replace it

	ctx    context.Context // ends background work at Close
	cancel context.CancelFunc

	fileOnce sync.Once
	file     *config.Watched

	htaccessOnce sync.Once
	warnMu       sync.Mutex
	warned       map[string]bool // settings whose being ignored was logged

	mu        sync.Mutex
	instances map[config.Database]*opened
}

// opened is an instance and the requests it is serving.
type opened struct {
	instance
	busy sync.WaitGroup
}

func newApp(build builder, env hosting.Env) *App {
	ctx, cancel := context.WithCancel(context.Background())
	return &App{build: build, env: env, params: hosting.Params, ctx: ctx, cancel: cancel,
		warned: make(map[string]bool), instances: make(map[config.Database]*opened)}
}

// ServeHTTP serves r with the handler for its database and its settings.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := a.env.Log
	defer func() {
		if v := recover(); v != nil {
			// fail logs it with the stack. If the response has begun this
			// write is lost, which is all that can be done.
			fail(w, r, log, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
		}
	}()
	cfg, layers, err := a.settings(r)
	if err != nil {
		if config.IsFileError(err) {
			log = log.With("file", a.watched().Path())
		}
		log.Error("configuration is invalid", "err", err)
		fail(w, r, log, &chat.Error{Code: chat.EConfig, Message: "The chat is misconfigured: " + err.Error() + "."})
		return
	}
	if a.env.Level != nil {
		a.env.Level.Set(cfg.LogLevel)
	}
	h, err := a.instance(cfg.Database())
	if err != nil {
		fail(w, r, log, &chat.Error{
			Code:    chat.EConfig,
			Message: "The chat's database cannot be opened. The site owner will find the reason in the web server's error log.",
			Err:     err,
		})
		return
	}
	defer h.busy.Done()
	// The about action tells where each setting came from.
	ctx := withSources(r.Context(), sources{layers: layers, mode: a.env.Mode})
	h.serve(w, r.WithContext(context.WithValue(ctx, holdKey{}, &h.busy)), cfg)
}

// holdKey is the context key of the requests-in-flight of the handler
// serving a request.
type holdKey struct{}

// holdInstance keeps the handler serving r (its database) open until
// release is called, for a response that outlives ServeHTTP.
func holdInstance(r *http.Request) (release func()) {
	busy, ok := r.Context().Value(holdKey{}).(*sync.WaitGroup)
	if !ok {
		return func() {}
	}
	busy.Add(1)
	return busy.Done
}

// settings returns r's settings: from the variables that came with it,
// where the hosting mode allows them, the environment, the settings file;
// and those places, which say where each setting came from.
func (a *App) settings(r *http.Request) (config.Config, config.Layers, error) {
	file, err := a.watched().Current()
	if err != nil {
		return config.Config{}, config.Layers{}, err
	}
	params := a.params(r)
	a.checkHtaccess(params)
	l := config.Layers{Env: a.getenv(), File: file}
	if len(params) > 0 {
		a.warnIgnored(params)
		// Only the settings the mode takes from a request are kept: the
		// layers go on with the request's context, which an event stream
		// keeps for as long as it lasts, and the parameters would with them.
		var set map[string]string
		for name, v := range params {
			if a.env.Mode.RequestSetting(name) && slices.Contains(config.Names, name) {
				if set == nil {
					set = make(map[string]string)
				}
				set[name] = v
			}
		}
		if set != nil {
			l.Request = func(name string) string { return set[name] }
		}
	}
	c, err := l.Load()
	return c, l, err
}

func (a *App) getenv() func(string) string {
	if a.Getenv != nil {
		return a.Getenv
	}
	return os.Getenv
}

func (a *App) dir() string {
	if a.Dir != "" {
		return a.Dir
	}
	return hosting.ProgramDir()
}

// watched returns the settings file, read again whenever it changes.
func (a *App) watched() *config.Watched {
	a.fileOnce.Do(func() { a.file = config.Watch(filepath.Join(a.dir(), config.FileName)) })
	return a.file
}

// warnIgnored logs, once per setting and process, a setting that came with
// a request in a mode that does not take it from there. Only settings
// are remembered, so what is kept stays bounded whatever requests bring.
func (a *App) warnIgnored(params map[string]string) {
	for name, v := range params {
		if !strings.HasPrefix(name, "CHAT_") || v == "" || a.env.Mode.RequestSetting(name) || !slices.Contains(config.Names, name) {
			continue
		}
		a.warnMu.Lock()
		seen := a.warned[name]
		a.warned[name] = true
		a.warnMu.Unlock()
		if seen {
			continue
		}
		why := "a daemon takes its settings from its environment and " + config.FileName + " only"
		if a.env.Mode != hosting.Daemon {
			why = "a request may not choose the database: set it in " + config.FileName + " or the environment"
		}
		a.env.Log.Warn("a setting passed with the request is ignored", "setting", name, "mode", a.env.Mode.String(), "why", why)
	}
}

// checkHtaccess logs, once per process, every CHAT_ setting that the
// .htaccess beside the program sets with SetEnv and that did not arrive:
// suEXEC drops SetEnv under mod_cgid and mod_cgi.
func (a *App) checkHtaccess(params map[string]string) {
	a.htaccessOnce.Do(func() {
		ht, ok := hosting.ReadHtaccess(a.dir())
		if !ok {
			return
		}
		getenv := a.getenv()
		for _, s := range ht.SetEnv {
			if getenv(s.Name) != "" || params[s.Name] != "" {
				continue
			}
			a.env.Log.Warn("the .htaccess beside the program sets a setting that did not reach it (suEXEC drops SetEnv): set it in "+config.FileName+" instead",
				"file", ht.Path, "line", s.Line, "setting", s.Name, "settings_file", filepath.Join(a.dir(), config.FileName))
		}
	})
}

// instance returns the handler for db, building it on first use, counted
// busy until the caller is done with it. A failed build is not kept: the
// next request tries again.
//
// A handler whose SQLite file is no longer the one at CHAT_DB's path (a
// backup moved over it, the file deleted) is replaced by one opened anew on
// the path, whose message ids continue above the old file's, so that
// readers resuming from an id they saw miss nothing; the old one ends its
// streams (store.Replaced) and is closed once its requests are done.
func (a *App) instance(db config.Database) (*opened, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old, ok := a.instances[db]
	if ok && old.db().Current() == nil {
		old.busy.Add(1)
		return old, nil
	}
	if a.ctx.Err() != nil {
		return nil, errors.New("web: app is closed")
	}
	env := a.env
	env.Dir = a.dir()
	h, err := a.build(a.ctx, db, env)
	if err != nil {
		return nil, err
	}
	if old != nil {
		a.env.Log.Warn("the database file was replaced or removed while open: opened the file now at its path", "db", old.db().Name())
		delete(a.instances, db)
		a.continueIDs(old.db(), h.db())
		go func() {
			old.busy.Wait()
			old.Close()
		}()
	}
	o := &opened{instance: h}
	a.instances[db] = o
	o.busy.Add(1)
	return o, nil
}

// continueIDs makes the ids of to continue above those of from, the
// database it replaces.
func (a *App) continueIDs(from, to *store.Store) {
	ctx, cancel := context.WithTimeout(a.ctx, store.BusyTimeout)
	defer cancel()
	last, err := from.MaxID(ctx)
	if err == nil {
		err = to.KeepIDsAbove(ctx, last)
	}
	if err != nil {
		a.env.Log.Warn("message ids may repeat those of the replaced database", "err", err)
	}
}

// Close stops background work and closes every database.
func (a *App) Close() error {
	a.cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for db, h := range a.instances {
		errs = append(errs, h.Close())
		delete(a.instances, db)
	}
	return errors.Join(errs...)
}

// openedDB is what a handler opens for its database.
type openedDB struct {
	store *store.Store
	ids   *identity.Keeper // readers' identity, signed with the database's secret
	tails *tail.Dir        // nil: none (see tailsPath)
}

// openStore opens db's store as a process of env's mode opens it, the
// identity of its readers, signed with the database's secret, and the tail
// folder, its file names keyed with the same secret.
func openStore(ctx context.Context, db config.Database, env hosting.Env) (openedDB, error) {
	st, err := store.Open(ctx, db.DB, store.Options{Concurrent: env.Mode.Concurrent(), NickKey: identity.Key})
	if err != nil {
		return openedDB{}, err
	}
	secret, err := st.Secret(ctx)
	if err == nil {
		// Claims made under other rules for nicks get today's keys.
		err = st.RekeyClaims(ctx, identity.KeyVersion)
	}
	if err != nil {
		st.Close()
		return openedDB{}, err
	}
	o := openedDB{store: st, ids: identity.New(secret)}
	if path := tailsPath(db, env); path != "" {
		o.tails = tail.Open(path, st, secret)
	}
	return o, nil
}

// tailsPath returns the tail folder beside env's cgi-bin, or "" when db is
// a database server, which several web hosts share (see package tail).
func tailsPath(db config.Database, env hosting.Env) string {
	if config.IsServerURL(db.DB) || env.Dir == "" {
		return ""
	}
	return filepath.Join(env.Dir, "..", tail.DirName)
}

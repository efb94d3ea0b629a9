// Command devserver serves cgichat on this machine with nothing but Go: it
// builds post and stream, runs them as real CGI programs through Go's
// net/http/cgi host (as a web server would), and serves the page from
// public/. Run it from the module root:
//
//	go run ./cmd/devserver
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"cgichat/internal/config"
	"cgichat/test/cgihost"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve on (loopback; port 0 picks a free one)")
	dir := flag.String("dir", ".local", "where the built programs (bin/) and the database (data/chat.db) go")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `devserver serves cgichat locally: post and stream run as real CGI programs.

Usage: go run ./cmd/devserver [-addr 127.0.0.1:8080] [-dir .local]

CHAT_* variables in the environment are passed to the programs, e.g.
CHAT_STREAM_MODE=batch go run ./cmd/devserver
CHAT_DB=postgres://chat:PASSWORD@127.0.0.1/chat go run ./cmd/devserver

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*addr, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(1)
	}
}

func run(addr, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join("public", "index.html")); err != nil {
		return errors.New("run me from the cgichat source directory (public/index.html not found)")
	}
	bin := filepath.Join(dir, "bin")
	for _, prog := range []string{"post", "stream"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, prog), "./cgi-bin/"+prog)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", prog, err)
		}
	}
	// The programs get CHAT_DB plus any CHAT_* setting given to us: the
	// local SQLite file, unless CHAT_DB names a database server (whose
	// wake-up sockets then go beside where the file would be).
	db := filepath.Join(dir, "data", "chat.db")
	env := []string{"CHAT_DB=" + db}
	if config.IsServerURL(os.Getenv("CHAT_DB")) {
		db = os.Getenv("CHAT_DB")
		env = []string{"CHAT_DB=" + db, "CHAT_WAKE_DIR=" + filepath.Join(dir, "data", "wake")}
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CHAT_") && !strings.HasPrefix(kv, "CHAT_DB=") {
			env = append(env, kv)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/cgi-bin/post", cgihost.Handler(filepath.Join(bin, "post"), env))
	mux.Handle("/cgi-bin/stream", cgihost.Handler(filepath.Join(bin, "stream"), env))
	mux.Handle("/", http.FileServer(http.Dir("public")))

	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w (is another server on it? try -addr 127.0.0.1:0)", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("cgichat is serving at http://%s/ (database %s; Ctrl-C stops)\n", l.Addr(), redacted(db))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// Streams never finish by themselves soon: close them.
		srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// redacted returns db for the terminal: a URL without its password.
func redacted(db string) string {
	if u, err := url.Parse(db); err == nil && u.User != nil {
		return u.Redacted()
	}
	return db
}

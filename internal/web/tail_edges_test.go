//go:build linux

package web

import (
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cgichat/internal/hosting"
	"cgichat/internal/tail"
)

// attackApps is tailApps with extra settings and a new App per call (a
// process, as under CGI), and the database's path.
func attackApps(t *testing.T, extra map[string]string) (post, stream func() *App, dir, db string) {
	t.Helper()
	dir = t.TempDir()
	bin := filepath.Join(dir, "cgi-bin")
	os.Mkdir(bin, 0o755)
	os.Mkdir(filepath.Join(dir, tail.DirName), 0o755)
	db = filepath.Join(t.TempDir(), "chat.db")
	env := map[string]string{"CHAT_DB": db, "CHAT_MAX_STREAMS": "1", "CHAT_STREAMS_PER_CLIENT": "0", "CHAT_RATE_LIMIT": "off"}
	for k, v := range extra {
		env[k] = v
	}
	// Each call is a new process, as under CGI.
	mk := func(post bool) *App {
		var a *App
		if post {
			a = NewPost(hosting.Env{Mode: hosting.CGI, Log: quiet})
		} else {
			a = NewStream(hosting.Env{Mode: hosting.CGI, Log: quiet})
		}
		a.Getenv = func(k string) string { return env[k] }
		a.Dir = bin
		t.Cleanup(func() { a.Close() })
		return a
	}
	return func() *App { return mk(true) }, func() *App { return mk(false) }, dir, db
}

func count(t *testing.T, db, query string) int {
	t.Helper()
	d, err := sql.Open("sqlite3", db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n int
	if err := d.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func shell(t *testing.T, db string, query string, args ...any) {
	t.Helper()
	d, err := sql.Open("sqlite3", db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// tailHolding lists the files in tail/ that hold text.
func tailHolding(t *testing.T, dir, text string) []string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, tail.DirName, "*.txt"))
	var got []string
	for _, n := range names {
		if b, _ := os.ReadFile(n); strings.Contains(string(b), text) {
			got = append(got, filepath.Base(n))
		}
	}
	return got
}

// TestTailRetentionOtherRooms: CHAT_KEEP_DAYS prunes every room, without
// tombstones; the prune's sweep must take the pruned rows out of every
// room's file, and remove the file of a room left without rows.
func TestTailRetentionOtherRooms(t *testing.T) {
	post, stream, dir, db := attackApps(t, map[string]string{"CHAT_KEEP_DAYS": "1"})
	p, s := post(), stream()
	postText(t, p, "gone", "wholly-expired")
	postText(t, p, "kept", "expired-one")
	shell(t, db, `UPDATE messages SET created_at = '2020-01-01T00:00:00.000Z'`)
	postText(t, p, "kept", "fresh-one")
	holdLive(t, s, "hold")
	readyData(t, s, "gone", "p1")
	readyData(t, s, "kept", "p2")
	if len(tailHolding(t, dir, "wholly-expired")) != 1 || len(tailHolding(t, dir, "expired-one")) != 1 {
		t.Fatal("the polls made no files")
	}
	// The next post is id 100: it applies the retention rules.
	shell(t, db, `UPDATE sqlite_sequence SET seq = 99 WHERE name = 'messages'`)
	postText(t, p, "lobby", "prunes")
	if n := count(t, db, `SELECT count(*) FROM messages WHERE text IN ('wholly-expired', 'expired-one')`); n != 0 {
		t.Fatalf("%d expired rows left: the post did not prune", n)
	}
	// Pollers come back to both rooms.
	readyData(t, s, "gone", "p1")
	readyData(t, s, "kept", "p2")
	for _, text := range []string{"wholly-expired", "expired-one"} {
		if f := tailHolding(t, dir, text); len(f) > 0 {
			t.Errorf("%q, pruned by CHAT_KEEP_DAYS, is still served from tail/%v", text, f)
		}
	}
}

// TestTailShellDeletionNoPoll: a message deleted in the sqlite3 shell must
// leave the room's file (at a URL every earlier poller knows) without a
// poll of that room or a change by a program: the live readers
// (the budget not full) never rewrite it.
func TestTailShellDeletionNoPoll(t *testing.T) {
	post, stream, dir, db := attackApps(t, nil)
	p, s := post(), stream()
	id := postText(t, p, "r", "doxxing")
	// A live reader of the room holds the one slot; a poller learns the
	// file's name.
	holdLive(t, s, "r")
	readyData(t, s, "r", "p1")
	shell(t, db, `DELETE FROM messages WHERE id = ?`, id)
	// The live reader gets the deletion within CHAT_POLL_MS; nothing
	// rewrites the file.
	time.Sleep(2 * time.Second)
	if f := tailHolding(t, dir, "doxxing"); len(f) > 0 {
		t.Errorf("a message deleted in the shell is still served from tail/%v until the room's next poll or post", f)
	}
}

// TestTailSecretRotation: the recovery troubleshooting.md gives for a
// leaked database (a new claim_secret) renames every room's file; the
// files of the old names must go (when a process opens the folder under
// the new secret), not keep serving what was deleted afterwards.
func TestTailSecretRotation(t *testing.T) {
	post, stream, dir, db := attackApps(t, nil)
	p, s := post(), stream()
	id := postText(t, p, "r", "leaked-era")
	holdLive(t, s, "hold")
	readyData(t, s, "r", "p1")
	shell(t, db, `DELETE FROM settings WHERE key = 'claim_secret'`)
	// New processes, a new secret; the message is deleted afterwards.
	p2, s2 := post(), stream()
	holdLive(t, s2, "hold")
	readyData(t, s2, "r", "p1")
	shell(t, db, `DELETE FROM messages WHERE id = ?`, id)
	postText(t, p2, "r", "after")
	readyData(t, s2, "r", "p1")
	if f := tailHolding(t, dir, "leaked-era"); len(f) > 0 {
		names, _ := filepath.Glob(filepath.Join(dir, tail.DirName, "*.txt"))
		t.Errorf("after a new secret and the message's deletion, tail/%v still serves it (%d files in tail/)", f, len(names))
	}
}

// TestTailFullDisk: with the tail folder's disk full (a small tmpfs,
// ATTACK_TINY or mounted here when the test may), posts keep their 201,
// and a message deleted meanwhile is no longer served from a file that
// cannot follow the room (it is removed; its readers poll).
func TestTailFullDisk(t *testing.T) {
	tiny := os.Getenv("ATTACK_TINY")
	if tiny == "" {
		tiny = t.TempDir()
		if err := syscall.Mount("tmpfs", tiny, "tmpfs", 0, "size=256k"); err != nil {
			t.Skipf("no small disk: set ATTACK_TINY to a small empty tmpfs, or run as root (mount: %v)", err)
		}
		t.Cleanup(func() { syscall.Unmount(tiny, 0) })
	}
	post, stream, dir, db := attackApps(t, nil)
	os.Remove(filepath.Join(dir, tail.DirName))
	if err := os.Symlink(tiny, filepath.Join(dir, tail.DirName)); err != nil {
		t.Fatal(err)
	}
	p, s := post(), stream()
	id := postText(t, p, "r", "to-be-deleted")
	holdLive(t, s, "hold")
	readyData(t, s, "r", "p1")
	if len(tailHolding(t, dir, "to-be-deleted")) != 1 {
		t.Fatal("no file")
	}
	// Fill the disk.
	f, _ := os.Create(filepath.Join(tiny, "filler"))
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	defer os.Remove(filepath.Join(tiny, "filler"))
	start := time.Now()
	postText(t, p, "r", "while-full") // fails the test unless 201
	t.Logf("a post on a full tail disk: 201 in %v", time.Since(start))
	shell(t, db, `DELETE FROM messages WHERE id = ?`, id)
	d := readyData(t, s, "r", "p1")
	t.Logf("the poll's ready: %v", d)
	if f := tailHolding(t, dir, "to-be-deleted"); len(f) > 0 {
		t.Errorf("the deleted message is still served from tail/%v while the disk is full", f)
	}
}

// TestTailFolderRemovedLogs: a long-lived process (mod_fcgid, a daemon)
// whose tail folder was removed must not log a warning at every poll of
// every poller (with 1,000 pollers every 12-30 s, some 50 lines a second
// in the host's error log).
func TestTailFolderRemovedLogs(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "cgi-bin")
	os.Mkdir(bin, 0o755)
	os.Mkdir(filepath.Join(dir, tail.DirName), 0o755)
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logged}, nil))
	env := map[string]string{"CHAT_DB": filepath.Join(t.TempDir(), "chat.db"), "CHAT_MAX_STREAMS": "1", "CHAT_STREAMS_PER_CLIENT": "0", "CHAT_RATE_LIMIT": "off"}
	post := NewPost(hosting.Env{Mode: hosting.FastCGIStdin, Log: quiet})
	stream := NewStream(hosting.Env{Mode: hosting.FastCGIStdin, Log: log})
	for _, a := range []*App{post, stream} {
		a.Getenv = func(k string) string { return env[k] }
		a.Dir = bin
		t.Cleanup(func() { a.Close() })
	}
	postText(t, post, "r", "x")
	holdLive(t, stream, "hold")
	readyData(t, stream, "r", "p0")
	os.RemoveAll(filepath.Join(dir, tail.DirName))
	const polls = 20
	for i := range polls {
		readyData(t, stream, "r", fmt.Sprintf("p%d", i))
	}
	if n := strings.Count(logged.String(), "tail file could not be written"); n >= polls {
		t.Errorf("%d warnings for %d polls after tail/ was removed, want them at most now and then:\n%.300s", n, polls, logged.String())
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

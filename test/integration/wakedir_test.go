package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/wake"
	"cgichat/test/contract"
	"cgichat/test/fcgiclient"
)

// pollEvery is the poll interval of the wake-up tests: so long that a
// message arriving well within it was announced by a wake-up.
const pollEvery = 10 * time.Second

// TestWakeDirectoryRemoved removes the wake-up directory while a stream
// and the poster run (a daemon each; a CGI process each): the next post
// arrives within one poll at the most, and the posts after it at once,
// because the stream's process binds its socket again.
func TestWakeDirectoryRemoved(t *testing.T) {
	for _, m := range []struct {
		name  string
		start contract.Start
	}{{"Daemon", startDaemon}, {"CGI", startCGI}} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			d := m.start(t, map[string]string{"CHAT_POLL_MS": fmt.Sprint(pollEvery.Milliseconds())})
			d.Post(t, "lobby", "ada", "makes the database")
			s := contract.Open(t, d.StreamURL(nil), nil)
			s.Until(t, "ready", 10*time.Second)
			arrives := func(text string, within time.Duration) {
				t.Helper()
				sent := d.Post(t, "lobby", "ada", text)
				posted := time.Now()
				if got := s.NextMessage(t, within); got != sent {
					t.Fatalf("got %+v, want %+v", got, sent)
				}
				t.Logf("%q arrived %v after its 201", text, time.Since(posted).Round(100*time.Microsecond))
			}
			arrives("woken", pollEvery/2)
			if err := os.RemoveAll(wake.Dir(d.DB)); err != nil {
				t.Fatal(err)
			}
			arrives("within one poll", pollEvery+5*time.Second)
			for i := range 3 {
				arrives(fmt.Sprint("woken again ", i), pollEvery/2)
			}
		})
	}
}

// TestWakeDirectoryUnusableLoggedOnce makes the wake-up directory a file
// (the tests run as root, whom permissions do not stop) under a stream
// daemon, and posts 20 times by CGI, one process a post: one line in all
// says wake-ups are unavailable, and what fixes it; the messages still
// arrive, by polling. Once the file is removed, the stream's process binds
// again and the next post wakes it.
func TestWakeDirectoryUnusableLoggedOnce(t *testing.T) {
	db, kv := settings(t, map[string]string{"CHAT_POLL_MS": "200"})
	kv = append(kv, "CHAT_STREAMS_PER_CLIENT=0")
	logs := &lockedBuffer{}
	post := func(text string) {
		t.Helper()
		cmd := cgiPost(kv, text, "")
		cmd.Stderr = logs
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil || !strings.HasPrefix(out.String(), "Status: 201") {
			t.Fatalf("post %q: %v %s", text, err, out.String())
		}
	}
	post("makes the database")
	dir := wake.Dir(db)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "stream.sock")
	cmd := exec.Command(filepath.Join(bin, "stream"), "-listen", "unix:"+sock)
	cmd.Env, cmd.Stderr = kv, logs
	startProcess(t, cmd)
	waitForSocket(t, sock)
	d := serve(t, db, nil, nil, &fcgiclient.Handler{Network: "unix", Address: sock, Stderr: logs})
	s := contract.Open(t, d.StreamURL(nil), nil)
	s.Until(t, "ready", 10*time.Second)
	for i := range 20 {
		post(fmt.Sprint("polled ", i))
	}
	for i := range 20 {
		if got := s.NextMessage(t, 10*time.Second); got.Text != fmt.Sprint("polled ", i) {
			t.Fatalf("got %+v, want message %d", got, i)
		}
	}
	if n := logs.count("wake-ups unavailable"); n != 1 {
		t.Errorf("%d lines say wake-ups are unavailable, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "is not a directory: remove it") {
		t.Errorf("the line does not say what fixes it:\n%s", logs.String())
	}

	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for logs.count("wake-ups work again") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
		t.Fatalf("the stream daemon did not listen in the directory again: %v, %d entries", err, len(entries))
	}
	if _, err := os.Stat(dir + ".trouble"); !os.IsNotExist(err) {
		t.Errorf("the mark of the trouble is still there (stat: %v)", err)
	}
	post("woken")
	if got := s.NextMessage(t, 10*time.Second); got.Text != "woken" {
		t.Errorf("got %+v, want the message posted after the fix", got)
	}
}

// lockedBuffer collects the standard error of several processes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) count(s string) int { return strings.Count(b.String(), s) }

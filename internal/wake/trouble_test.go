package wake

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// waitFor polls cond every 10 ms for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("after 5 s: %s", what)
}

// TestDirectoryRemovedWhileListening removes the wake-up directory under a
// listener: it binds again, in a directory of its own making, and the
// next wake-up reaches it.
func TestDirectoryRemovedWhileListening(t *testing.T) {
	troubled.Clear()
	log, _ := newLog()
	dir := Dir(filepath.Join(t.TempDir(), "chat.db"))
	l := Start(dir, log)
	defer l.Close()
	n, err := NewNotifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Log = log
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no listener reached after the directory was removed", func() bool {
		sent, _ := n.Notify()
		return sent == 1
	})
	select {
	case <-l.C():
	case <-time.After(2 * time.Second):
		t.Fatal("the listener was not woken")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want the one socket", len(entries))
	}
}

// TestUnusableDirectoryLoggedOnce makes the wake-up directory a file (as
// root, whom permissions do not stop, the way to make it unusable): a
// listener and a notifier that post 50 times log one line between them;
// another process (the same one, with its memory cleared) logs nothing
// within the hour; once the file is gone, the listener binds again on its
// own and says so.
func TestUnusableDirectoryLoggedOnce(t *testing.T) {
	troubled.Clear()
	log, lines := newLog()
	dir := Dir(filepath.Join(t.TempDir(), "chat.db"))
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l := Start(dir, log)
	defer l.Close()
	n, err := NewNotifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Log = log
	for range 50 {
		if _, err := n.Notify(); err != nil {
			t.Fatalf("Notify: %v, want the trouble logged, not returned", err)
		}
	}
	if err := l.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := l.Resume(); err != nil {
		t.Fatalf("Resume: %v, want the trouble logged, not returned", err)
	}
	if got := lines.count("wake-ups unavailable"); got != 1 {
		t.Errorf("%d lines saying wake-ups are unavailable, want 1", got)
	}
	if got := lines.count("not a directory: remove it"); got != 1 {
		t.Errorf("the line does not say what fixes it:\n%s", lines.buf.String())
	}

	troubled.Clear() // as a new CGI process
	other, otherLines := newLog()
	n.Log = other
	n.Notify()
	if got := otherLines.count("wake-ups unavailable"); got != 0 {
		t.Errorf("another process logged %d lines within the hour, want 0", got)
	}

	n.Log = log
	os.Remove(dir)
	waitFor(t, "the listener did not bind again", func() bool {
		sent, _ := n.Notify()
		return sent == 1
	})
	waitFor(t, "no line saying wake-ups work again", func() bool { return lines.count("wake-ups work again") == 1 })
	if _, err := os.Stat(markerOf(dir)); !os.IsNotExist(err) {
		t.Errorf("the marker of the trouble is still there (stat: %v)", err)
	}
}

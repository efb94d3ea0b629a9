package wake_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cgichat/internal/wake"
)

func mustNotifier(t *testing.T, dir string) *wake.Notifier {
	t.Helper()
	n, err := wake.NewNotifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// mustListen listens in dir, until the test ends.
func mustListen(t *testing.T, dir string) *wake.Listener {
	t.Helper()
	l, err := wake.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestNotifyWakesEveryListener(t *testing.T) {
	dir := wake.Dir(filepath.Join(t.TempDir(), "chat.db"))
	var ls []*wake.Listener
	for i := 0; i < 3; i++ {
		l, err := wake.Listen(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, l)
	}
	n := mustNotifier(t, dir)
	if got, err := n.Notify(); err != nil || got != 3 {
		t.Fatalf("Notify = %d, %v; want 3 listeners reached", got, err)
	}
	for i, l := range ls {
		select {
		case <-l.C():
		case <-time.After(2 * time.Second):
			t.Errorf("listener %d was not woken", i)
		}
	}
}

func TestWakeUpsCoalesce(t *testing.T) {
	dir := wake.Dir(filepath.Join(t.TempDir(), "chat.db"))
	l := mustListen(t, dir)
	n := mustNotifier(t, dir)
	for i := 0; i < 5; i++ {
		n.Notify()
	}
	select {
	case <-l.C():
	case <-time.After(2 * time.Second):
		t.Fatal("not woken")
	}
	// Give the receiver time to drain the other datagrams: they may leave
	// at most one more wake-up pending, never five.
	time.Sleep(100 * time.Millisecond)
	extra := 0
	for done := false; !done; {
		select {
		case <-l.C():
			extra++
		default:
			done = true
		}
	}
	if extra > 1 {
		t.Errorf("%d extra wake-ups pending, want at most 1", extra)
	}
}

func TestNotifyRemovesDeadSockets(t *testing.T) {
	dir := wake.Dir(filepath.Join(t.TempDir(), "chat.db"))
	os.MkdirAll(dir, 0o700)
	// A socket file whose process is gone: bound, then its descriptor closed
	// without removing the file, as after SIGKILL.
	dead := filepath.Join(dir, "12345-dead")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: dead}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	live, err := wake.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if got, err := mustNotifier(t, dir).Notify(); err != nil || got != 1 {
		t.Errorf("Notify = %d, %v; want 1 listener reached", got, err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dead socket still there (stat: %v)", err)
	}
}

func TestCloseRemovesSocket(t *testing.T) {
	dir := wake.Dir(filepath.Join(t.TempDir(), "chat.db"))
	l, err := wake.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("after Close the directory holds %d entries, want 0", len(entries))
	}
}

// TestPauseAndResume checks that a paused listener has no socket, so a
// notifier reaches nobody, and that Resume listens again and signals once
// for the wake-ups it may have missed.
func TestPauseAndResume(t *testing.T) {
	dir := wake.Dir(filepath.Join(t.TempDir(), "chat.db"))
	l := mustListen(t, dir)
	n := mustNotifier(t, dir)
	if err := l.Pause(); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Notify(); err != nil || got != 0 {
		t.Errorf("paused: Notify = %d, %v; want 0 listeners reached", got, err)
	}
	select {
	case <-l.C():
		t.Error("a paused listener was woken")
	case <-time.After(100 * time.Millisecond):
	}

	if err := l.Resume(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.C():
	case <-time.After(2 * time.Second):
		t.Fatal("Resume did not signal C for the wake-ups it missed")
	}
	if got, err := n.Notify(); err != nil || got != 1 {
		t.Errorf("resumed: Notify = %d, %v; want 1 listener reached", got, err)
	}
	select {
	case <-l.C():
	case <-time.After(2 * time.Second):
		t.Error("a resumed listener was not woken")
	}
	l.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("after Close the directory holds %d entries, want 0", len(entries))
	}
}

func TestNotifyWithoutDirectory(t *testing.T) {
	n := mustNotifier(t, filepath.Join(t.TempDir(), "none"))
	if got, err := n.Notify(); err != nil || got != 0 {
		t.Errorf("Notify = %d, %v; want 0, nil", got, err)
	}
}

func TestListenPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if _, err := wake.Listen(dir); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("Listen with a long path: err = %v, want one about its length", err)
	}
}

func TestLeadIsHeldByOneAtATime(t *testing.T) {
	dir := t.TempDir()
	a, b := wake.NewLead(dir), wake.NewLead(dir)
	defer a.Close()
	defer b.Close()
	if !a.Try() {
		t.Fatal("the first Try did not take a free lead")
	}
	if !a.Try() {
		t.Error("the holder's second Try says it does not hold the lead")
	}
	if b.Try() {
		t.Fatal("a second holder took the lead")
	}
	a.Release()
	if !b.Try() {
		t.Fatal("the lead was not free after Release")
	}
	if a.Try() {
		t.Error("the lead was taken twice")
	}
	b.Close()
	if !a.Try() {
		t.Error("the lead was not free after Close")
	}
	a.Close()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("%d files left behind after the last Close, want 0", len(left))
	}
	// The lock file is no socket: notifying skips it.
	c := wake.NewLead(dir)
	defer c.Close()
	c.Try()
	n, err := wake.NewNotifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if sent, err := n.Notify(); err != nil || sent != 0 {
		t.Errorf("Notify with only the lock file: got %d, %v; want 0, nil", sent, err)
	}
}

package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"cgichat/internal/config"
)

// TestWatchedReadsAgainAfterAPassingFailure: a daemon out of file
// descriptors for a moment fails to read its settings file; once
// descriptors are free again the next request reads it, though the file
// itself did not change, and the error never names the file's directory.
func TestWatchedReadsAgainAfterAPassingFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cgichat.conf")
	os.WriteFile(path, []byte("CHAT_HISTORY=2\n"), 0o644)
	w := config.Watch(path)

	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Skip(err)
	}
	// Fill the descriptors up to a low limit, so that opening fails.
	low := saved
	low.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	var held []int
	release := func() {
		for _, fd := range held {
			syscall.Close(fd)
		}
		held = nil
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	}
	defer release()
	for len(held) < 256 {
		fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		held = append(held, fd)
	}
	_, failed := w.Current()
	release()

	if failed == nil || !strings.Contains(failed.Error(), "too many open files") {
		t.Fatalf("out of descriptors: got error %v, want too many open files", failed)
	}
	if strings.Contains(failed.Error(), dir) {
		t.Errorf("error %q names the file's directory, which reaches clients", failed)
	}
	f, err := w.Current()
	if err != nil {
		t.Fatalf("with descriptors free, the unchanged file: got error %v, want it read", err)
	}
	if v, _, _ := f.Lookup("CHAT_HISTORY"); v != "2" {
		t.Errorf("CHAT_HISTORY = %q, want 2", v)
	}
}

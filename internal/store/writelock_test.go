package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"cgichat/test/dbtest"
)

func TestLockFileQueuesAndGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db-lock")
	release := lockFile(path, time.Second)

	// A second writer waits until the first is done.
	got := make(chan func(), 1)
	go func() { got <- lockFile(path, 10*time.Second) }()
	select {
	case <-got:
		t.Fatal("a second writer took the lock while the first held it")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	var second func()
	select {
	case second = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the second writer did not get the lock after the first released it")
	}

	// A writer that cannot have it within its timeout goes ahead without
	// it, and a lock it takes later is let go.
	began := time.Now()
	third := lockFile(path, 50*time.Millisecond)
	if waited := time.Since(began); waited > 5*time.Second {
		t.Errorf("gave up after %v, want about 50 ms", waited)
	}
	third()
	second()
	fourth := make(chan func(), 1)
	go func() { fourth <- lockFile(path, 10*time.Second) }()
	select {
	case f := <-fourth:
		f()
	case <-time.After(5 * time.Second):
		t.Fatal("a lock taken after its writer gave up was never released")
	}
}

// TestWritesFromTwoStores has two stores on one SQLite file, as two
// processes would, write at once: every write lands, and they queued on
// the lock file beside the database.
func TestWritesFromTwoStores(t *testing.T) {
	a := MustOpen(t, dbtest.SQLite)
	b := mustOpenDB(t, a.DB(), true)
	done := make(chan error, 2)
	for _, s := range []*Store{a, b} {
		go func() {
			for range 50 {
				if _, err := s.Insert(t.Context(), "lobby", "ada", "hi"); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	ms, err := a.Latest(t.Context(), "lobby", 1000)
	if err != nil || len(ms) != 100 {
		t.Errorf("got %d messages (%v), want 100", len(ms), err)
	}
	if _, err := os.Stat(a.DB() + "-lock"); err != nil {
		t.Errorf("the writers did not queue on the lock file: %v", err)
	}
}

package store

import (
	"os"
	"syscall"
	"time"
)

// lockWrites queues this writer behind every other writer of the database,
// in this process (writeMu) and, for SQLite, in every other one (a lock on
// the file beside the database, path + "-lock"), and returns what ends its
// turn. A database server queues its writers itself, on the lock row.
//
// SQLite lets one writer in at a time anyway, but a writer that finds the
// database locked sleeps in its busy handler (1, 2, 5, 10 … 100 ms) however
// soon the lock frees, and a newcomer may take it meanwhile: with a few CGI
// posters at once, most time went to sleeping, and throughput swung
// widely (docs/performance.md). A writer
// waiting on the file lock wakes the moment the one before it is done.
//
// The file lock is only an aid: when it cannot be had within BusyTimeout
// (a writer stuck, the directory read-only), the writer goes ahead and
// SQLite's own locking and busy timeout decide, as before; the sqlite3
// shell never takes it.
func (s *Store) lockWrites() (unlock func()) {
	s.writeMu.Lock()
	release := s.backend.queue(s)
	return func() {
		release()
		s.writeMu.Unlock()
	}
}

// lockFile takes an exclusive lock on path, waiting at most timeout, and
// returns what releases it (closing the file does). On failure it returns
// a release that does nothing.
func lockFile(path string, timeout time.Duration) (release func()) {
	nothing := func() {}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_CLOEXEC, 0o660)
	if err != nil {
		return nothing
	}
	fd := int(f.Fd())
	if syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		return func() { f.Close() }
	}
	// Wait in the kernel, on a goroutine of its own so that the wait can
	// be given up: closing the file then releases a lock taken too late.
	got := make(chan error, 1)
	go func() { got <- syscall.Flock(fd, syscall.LOCK_EX) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nothing
		}
		return func() { f.Close() }
	case <-timer.C:
		go func() {
			<-got
			f.Close()
		}()
		return nothing
	}
}

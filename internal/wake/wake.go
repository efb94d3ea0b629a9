// Package wake lets a process that has just committed a message wake every
// stream process sharing the database at once, without them polling fast.
//
// Each listening process binds a Unix datagram socket in a directory next
// to the database; a notifier sends one byte to every socket there. A
// socket whose process died (a refused send) is removed by the notifier.
// Wake-ups are hints: a lost one only delays delivery until the next poll.
//
// A listener binds its socket again when the socket or the directory
// vanish (someone removed them), within a second; what keeps the directory
// from being used (it belongs to another user, who ran a program once by
// hand as root) is logged once, not at every post (trouble.go).
package wake

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a Unix socket address can hold on Linux
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Dir returns the wake-up directory for the database at dbPath.
func Dir(dbPath string) string { return dbPath + "-wake" }

// watchEvery is how often a listening Listener checks that its socket is
// still in the directory, and binds a new one when it is not.
const watchEvery = time.Second

// Listener receives wake-ups on its own socket.
type Listener struct {
	dir string
	c   chan struct{}
	log *slog.Logger // nil: errors are returned, not logged

	mu     sync.Mutex
	conn   *net.UnixConn // nil while paused, closed, or not yet bound
	path   string
	file   os.FileInfo // the socket file as bound
	watch  *time.Timer // runs check while the listener should listen
	paused bool
	closed bool
}

// Listen binds a new socket in dir, creating dir when missing. Its C
// channel receives a value after one or more wake-ups. When the socket
// vanishes, the listener binds a new one within a second (see Start).
func Listen(dir string) (*Listener, error) {
	l := newListener(dir, nil)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.bind(); err != nil {
		l.closed = true
		return nil, err
	}
	return l, nil
}

// Start returns a listener in dir, as Listen does, that also survives the
// directory: when it cannot bind a socket (the directory belongs to another
// user, or is a file) it logs why, once (trouble.go), and tries again every
// second until it can, so a directory that was fixed or removed is used
// again without a restart. The programs listen so.
func Start(dir string, log *slog.Logger) *Listener {
	l := newListener(dir, log)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bindOrReport()
	return l
}

func newListener(dir string, log *slog.Logger) *Listener {
	l := &Listener{dir: dir, c: make(chan struct{}, 1), log: log}
	l.watch = time.AfterFunc(time.Hour, l.check)
	l.watch.Stop()
	return l
}

// bindOrReport binds, or reports why it cannot; either way the watch
// keeps the listener bound from then on. l.mu is held.
func (l *Listener) bindOrReport() {
	if err := l.bind(); err != nil {
		report(l.log, l.dir, err)
		l.watch.Reset(watchEvery)
	}
}

// bind listens on a new socket in l.dir; l.mu is held.
func (l *Listener) bind() error {
	if err := os.MkdirAll(l.dir, 0o770); err != nil {
		return fmt.Errorf("wake: create %s: %w", l.dir, err)
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	path := filepath.Join(l.dir, fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(rnd[:])))
	if len(path) > maxSocketPath {
		return fmt.Errorf("wake: socket path %s is longer than %d bytes; move the database to a shorter path", path, maxSocketPath)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("wake: listen in %s: %w", l.dir, err)
	}
	file, err := os.Lstat(path)
	if err != nil {
		conn.Close()
		return fmt.Errorf("wake: listen in %s: %w", l.dir, err)
	}
	l.conn, l.path, l.file = conn, path, file
	fine(l.log, l.dir)
	go l.receive(conn)
	l.watch.Reset(watchEvery)
	return nil
}

// check binds a new socket when the listener's is no longer in the
// directory (the directory or the file was removed: no notifier can reach
// it), and then signals C for what it may have missed.
func (l *Listener) check() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.paused {
		return
	}
	if l.conn != nil {
		if now, err := os.Lstat(l.path); err == nil && os.SameFile(now, l.file) {
			l.watch.Reset(watchEvery)
			return
		}
		// The file is gone, or another's now: closing leaves it alone.
		l.conn.Close()
		l.conn = nil
	}
	l.bindOrReport()
	if l.conn != nil {
		l.signal()
	}
}

// C returns the channel that receives after wake-ups. Several wake-ups
// before a receive count as one.
func (l *Listener) C() <-chan struct{} { return l.c }

func (l *Listener) receive(conn *net.UnixConn) {
	buf := make([]byte, 16)
	for {
		if _, _, err := conn.ReadFromUnix(buf); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		l.signal()
	}
}

func (l *Listener) signal() {
	select {
	case l.c <- struct{}{}:
	default:
	}
}

// Pause stops listening until Resume: the socket goes, so notifiers stop
// sending to this process. A process with no stream to wake (an idle
// mod_fcgid process, kept for the next request) then costs a post nothing;
// listening, every such process would be woken by every post
// (docs/performance.md). A paused listener does not watch its directory.
func (l *Listener) Pause() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paused = true
	l.watch.Stop()
	return l.closeLocked()
}

// Resume listens again, on a new socket, and signals C once: wake-ups sent
// while the listener was paused were missed. A listener made by Start
// returns no error: it reports it once and keeps trying.
func (l *Listener) Resume() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.signal()
	l.paused = false
	if l.conn != nil || l.closed {
		return nil
	}
	if l.log != nil {
		l.bindOrReport()
		return nil
	}
	return l.bind()
}

// Close stops listening and removes the socket file.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.watch.Stop()
	return l.closeLocked()
}

func (l *Listener) closeLocked() error {
	if l.conn == nil {
		return nil
	}
	// Remove the file only while it is the one bound: the directory may
	// have been made anew, and the name taken by nobody or another.
	err := l.conn.Close()
	if now, serr := os.Lstat(l.path); serr == nil && os.SameFile(now, l.file) {
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	l.conn = nil
	return err
}

// Notifier sends wake-ups to every listener of one directory.
type Notifier struct {
	dir string
	fd  int
	// Log, when set, is where Notify reports a directory it cannot read,
	// once (trouble.go), instead of returning the error every time.
	Log *slog.Logger
}

// NewNotifier returns a notifier for dir; it holds one unbound socket.
func NewNotifier(dir string) (*Notifier, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("wake: socket: %w", err)
	}
	return &Notifier{dir: dir, fd: fd}, nil
}

// Notify wakes every listener in the directory and removes sockets nobody
// listens on any more. It never blocks: a listener whose queue is full has
// a wake-up pending already. It returns how many listeners it reached.
func (n *Notifier) Notify() (int, error) {
	entries, err := os.ReadDir(n.dir)
	if errors.Is(err, os.ErrNotExist) {
		// Removed: the listeners make it again and bind anew.
		return 0, nil
	}
	if err != nil {
		err = fmt.Errorf("wake: %w", err)
		if n.Log == nil {
			return 0, err
		}
		report(n.Log, n.dir, err)
		return 0, nil
	}
	if n.Log != nil {
		fine(n.Log, n.dir)
	}
	sent := 0
	for _, e := range entries {
		if e.Type()&os.ModeSocket == 0 {
			continue
		}
		path := filepath.Join(n.dir, e.Name())
		err := syscall.Sendto(n.fd, []byte{1}, syscall.MSG_DONTWAIT, &syscall.SockaddrUnix{Name: path})
		switch {
		case err == nil, errors.Is(err, syscall.EAGAIN):
			sent++
		case errors.Is(err, syscall.ECONNREFUSED):
			// Its process is gone: nobody can bind this path again, so
			// removing it cannot hurt a live listener.
			os.Remove(path)
		}
	}
	return sent, nil
}

// Close releases the notifier's socket.
func (n *Notifier) Close() error { return syscall.Close(n.fd) }

// leadName is the lock file of the lead in the wake-up directory; the
// notifier skips it, as it is not a socket.
const leadName = "poll.lock"

// Lead is the right to poll a database often for writes that send no
// wake-up (the sqlite3 shell), so that not every process sharing the
// database has to. One process holds it at a time: a lock on a file in the
// wake-up directory, which the kernel releases when its holder ends, however
// it ends. The holder wakes the others when its poll finds something.
type Lead struct {
	path string
	f    *os.File
	held bool
}

// NewLead returns the lead of the wake-up directory dir, not yet taken.
func NewLead(dir string) *Lead { return &Lead{path: filepath.Join(dir, leadName)} }

// Try takes the lead when nobody holds it and reports whether this process
// holds it. It costs one system call while another process holds it.
func (l *Lead) Try() bool {
	if l.held {
		return true
	}
	if l.f == nil {
		f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o660)
		if err != nil {
			return false
		}
		l.f = f
	}
	l.held = syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
	return l.held
}

// Release gives the lead up, for another process to take.
func (l *Lead) Release() {
	if l.held {
		syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.held = false
	}
}

// Close gives the lead up and closes the lock file, which it removes when
// no other process holds the lead, so that nothing is left behind. (A
// process that opened the file just before it went may then lead beside a
// new one, for a while: two processes polling often, which is harmless.)
func (l *Lead) Close() error {
	if l.f == nil {
		return nil
	}
	if l.Try() {
		os.Remove(l.path)
	}
	l.Release()
	return l.f.Close()
}

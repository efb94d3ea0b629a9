//go:build linux

package fastcgi

import (
	"errors"
	"os"
	"syscall"
)

// poller watches the connections whose reader is parked: waiting for the
// next record with nothing buffered, as an idle stream's and a kept
// connection's are. One epoll instance, itself waited on through Go's own
// poller, stands in for a goroutine (and its stack) per such connection;
// when a connection has something to read (a record, or its end) the
// poller starts its reader again.
type poller struct {
	f   *os.File // the epoll instance
	raw syscall.RawConn
}

func newPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	// Non-blocking, the file joins Go's poller, so waiting on it takes no
	// thread, and Close ends the wait.
	f := os.NewFile(uintptr(fd), "fastcgi-epoll")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &poller{f: f, raw: raw}, nil
}

// arm asks for one wake-up, with id, when fd has something to read or its
// peer is gone; add says fd is new to the poller.
func (p *poller) arm(fd int, id uint32, add bool) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(id)}
	var err error
	cerr := p.raw.Control(func(epfd uintptr) {
		op := syscall.EPOLL_CTL_MOD
		if add {
			op = syscall.EPOLL_CTL_ADD
		}
		err = syscall.EpollCtl(int(epfd), op, fd, &ev)
		switch {
		case errors.Is(err, syscall.ENOENT) && !add:
			err = syscall.EpollCtl(int(epfd), syscall.EPOLL_CTL_ADD, fd, &ev)
		case errors.Is(err, syscall.EEXIST) && add:
			// The descriptor's number was another connection's, whose
			// registration outlived it.
			err = syscall.EpollCtl(int(epfd), syscall.EPOLL_CTL_MOD, fd, &ev)
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// run calls ready with the id of each connection that woke, until close
// (or a failure of epoll itself, which no connection causes).
func (p *poller) run(ready func(id uint32)) {
	events := make([]syscall.EpollEvent, 64)
	for {
		var n int
		var werr error
		err := p.raw.Read(func(epfd uintptr) bool {
			n, werr = syscall.EpollWait(int(epfd), events, 0)
			if errors.Is(werr, syscall.EINTR) {
				n, werr = 0, nil
			}
			// Nothing yet: Go's poller waits until there is.
			return n > 0 || werr != nil
		})
		if err != nil || werr != nil {
			return
		}
		for _, ev := range events[:n] {
			ready(uint32(ev.Fd))
		}
	}
}

func (p *poller) close() { p.f.Close() }

// canTryWrite says that tryWrite can send.
const canTryWrite = true

// tryWrite writes b to the connection's socket if it can without waiting,
// and returns how much it sent: 0 when the socket takes nothing now. The
// write deadline holds as for any write.
func (c *conn) tryWrite(b []byte) (int, error) {
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true // never wait: it is the caller's to do
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

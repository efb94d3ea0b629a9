package hosting

import (
	"os"
	"syscall"
)

// hungUp reports whether the web server closed the connection a CGI
// program answers on (f, its stdout) for good: a socket closed by its peer
// (mod_cgid, where stdin is the same socket) or a pipe nobody reads any
// more (mod_cgi) polls as hung up or failed. A file, or anything that
// cannot be polled, has not hung up.
func hungUp(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	defer syscall.Close(ep)
	var added error
	err = rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLOUT, Fd: int32(fd)}
		added = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || added != nil {
		return false
	}
	events := make([]syscall.EpollEvent, 1)
	n, err := syscall.EpollWait(ep, events, 0)
	return err == nil && n == 1 && events[0].Events&(syscall.EPOLLHUP|syscall.EPOLLERR) != 0
}

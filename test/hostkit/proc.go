package hostkit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a server process hostkit started, in a process group of its own
// so that stopping it also stops what it started.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	once sync.Once
}

// StartProc starts cmd in a new process group with its output appended to
// logPath, and stops the group when t's cleanups run.
func StartProc(t T, name string, cmd *exec.Cmd, logPath string) *Proc {
	t.Helper()
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: starting %s: %v", name, cmd.Path, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Stop)
	return p
}

// StatFields returns the fields of /proc/PID/stat that follow the
// command's name, which is in parentheses and may hold spaces: the
// process's state is the first of them, utime and stime (in clock ticks,
// 100 a second) the 12th and 13th, starttime the 20th (proc(5) numbers
// them 3, 14, 15 and 22).
func StatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])), nil
}

// Pid returns the process's id, which is also its process group's.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop ends the process group: SIGTERM, then SIGKILL for whatever is left
// after a grace period. It may be called more than once.
func (p *Proc) Stop() {
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
		// Children that outlive the leader (CGI programs) are still in
		// the group.
		syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Ports handed out by FreePort: below Linux's range of ephemeral ports
// (32768–60999), from which the kernel gives the tests' own outgoing
// connections their local ports, so that none of those can take a port
// between FreePort and the server's bind; each port once per process.
const (
	portLow  = 20000
	portHigh = 32767
)

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now and
// that no other caller in this process got.
func FreePort(t T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := portLow + mathrand.IntN(portHigh-portLow+1)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free port between %d and %d", portLow, portHigh)
	return 0
}

// WaitFor polls ready every 50 ms until it returns true, p exits or timeout
// passes; it fails with the tail of logPath otherwise. p may be nil.
func WaitFor(t T, p *Proc, logPath, what string, timeout time.Duration, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ready() {
		if p != nil && p.Exited() {
			t.Fatalf("%s exited before %s; its log:\n%s", p.Name, what, Tail(logPath, 30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; log %s:\n%s", what, timeout, logPath, Tail(logPath, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Listening reports whether something accepts connections at addr.
func Listening(network, addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

// Tail returns the last n lines of a file, for failure messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// PIDsRunning returns the processes whose executable is path. Zombies have
// no executable and are not counted.
func PIDsRunning(path string) []int {
	return pidsWhere(func(exe string) bool { return exe == path })
}

// PIDsUnder returns the processes whose executable lies below dir.
func PIDsUnder(dir string) []int {
	return pidsWhere(func(exe string) bool { return strings.HasPrefix(exe, dir+string(filepath.Separator)) })
}

// pidsWhere returns the processes whose executable's path passes match.
func pidsWhere(match func(exe string) bool) []int {
	var pids []int
	for _, pid := range allPIDs() {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && match(exe) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// allPIDs returns every process id in /proc.
func allPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// HasEnv reports whether process pid's environment holds the exact entry
// kv ("NAME=value").
func HasEnv(pid int, kv string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, e := range bytes.Split(b, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}

// HasOpen reports whether process pid holds the file path open.
func HasOpen(pid int, path string) bool {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && link == path {
			return true
		}
	}
	return false
}

// ConnectedSockets returns the inodes of the connected Unix stream sockets
// that the processes running the executable path hold: one for every
// request a FastCGI program is serving.
func ConnectedSockets(path string) (map[string]bool, error) {
	connected, err := connectedUnixInodes()
	if err != nil {
		return nil, err
	}
	held := make(map[string]bool)
	for _, pid := range PIDsRunning(path) {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err != nil {
				continue
			}
			inode, ok := strings.CutPrefix(link, "socket:[")
			inode = strings.TrimSuffix(inode, "]")
			if ok && connected[inode] {
				held[inode] = true
			}
		}
	}
	return held, nil
}

// connectedUnixInodes reads /proc/net/unix for the inodes of connected
// stream sockets (type 0001, state 03).
func connectedUnixInodes() (map[string]bool, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	inodes := make(map[string]bool)
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode [Path]
		fields := strings.Fields(sc.Text())
		if len(fields) >= 7 && fields[4] == "0001" && fields[5] == "03" {
			inodes[fields[6]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(inodes) == 0 {
		return nil, errors.New("/proc/net/unix lists no connected stream socket")
	}
	return inodes, nil
}

// KillAll ends every process in pids.
func KillAll(pids []int) {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

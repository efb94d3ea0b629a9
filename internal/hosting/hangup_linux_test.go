package hosting

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestHungUp holds hungUp to what web servers do with a CGI program's
// stdout: mod_cgid's socket, shut for writing at the end of a body (the
// server still reads the answer) or closed when the client left; mod_cgi's
// pipe, read or abandoned; a file when run by hand.
func TestHungUp(t *testing.T) {
	// socket returns one end of a socket pair whose other end the server
	// keeps, shuts for writing, or closes.
	socket := func(t *testing.T, server string) *os.File {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		switch server {
		case "closes":
			syscall.Close(fds[1])
		case "shuts for writing":
			syscall.Shutdown(fds[1], syscall.SHUT_WR)
			fallthrough
		default:
			t.Cleanup(func() { syscall.Close(fds[1]) })
		}
		return os.NewFile(uintptr(fds[0]), "stdout")
	}
	pipe := func(t *testing.T, closeReader bool) *os.File {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if closeReader {
			r.Close()
		} else {
			t.Cleanup(func() { r.Close() })
		}
		return w
	}
	tests := []struct {
		name   string
		stdout func(t *testing.T) *os.File
		want   bool
	}{
		{"Socket, the server reading", func(t *testing.T) *os.File { return socket(t, "keeps") }, false},
		{"Socket shut for writing: the body's end", func(t *testing.T) *os.File { return socket(t, "shuts for writing") }, false},
		{"Socket closed: the client left", func(t *testing.T) *os.File { return socket(t, "closes") }, true},
		{"Pipe, the server reading", func(t *testing.T) *os.File { return pipe(t, false) }, false},
		{"Pipe nobody reads", func(t *testing.T) *os.File { return pipe(t, true) }, true},
		{"A file", func(t *testing.T) *os.File {
			f, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.stdout(t)
			defer f.Close()
			if got := hungUp(f); got != tt.want {
				t.Errorf("hungUp = %v, want %v", got, tt.want)
			}
		})
	}
}

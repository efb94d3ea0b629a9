//go:build unix

package tail

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOpenUmask: under suEXEC the programs run as the account with the
// umask suEXEC or the host gives them (077 and 027 exist), and the web
// server reads tail/ as another user. The folder Open makes must be
// searchable by it, as the files are (replace chmods them 0644).
func TestOpenUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	st := openStore(t)
	path := filepath.Join(t.TempDir(), DirName)
	d := Open(path, st, []byte("k"))
	fi, err := os.Stat(path)
	if d == nil || err != nil {
		t.Fatalf("Open: %v, %v", d, err)
	}
	if fi.Mode().Perm()&0o005 != 0o005 {
		t.Errorf("tail/ made with mode %v under umask 077: the web server's user cannot read the files in it", fi.Mode().Perm())
	}
}

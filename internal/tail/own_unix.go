//go:build unix

package tail

import (
	"os"
	"syscall"
)

// ownDir reports whether dir is a folder of the process's user.
func ownDir(dir string) bool {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

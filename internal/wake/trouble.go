package wake

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// reportEvery bounds how often the processes sharing a wake-up directory
// log that they cannot use it: one CGI process per post would otherwise
// log once each.
const reportEvery = time.Hour

// troubled holds the directories this process has logged trouble with
// since it last used them.
var troubled sync.Map

// markerOf returns the file beside dir whose time says when trouble with
// dir was last logged, by any process.
func markerOf(dir string) string { return dir + ".trouble" }

// report logs that dir cannot be used, and why, with what fixes it: once
// in this process until the directory works again, and at most once per
// reportEvery among all processes (the time of markerOf(dir) keeps it).
// Meanwhile streams are polled instead of woken: once a second, since the
// lead that polls every CHAT_POLL_MS lives in the directory too.
func report(log *slog.Logger, dir string, err error) {
	if log == nil {
		return
	}
	if _, seen := troubled.LoadOrStore(dir, true); seen {
		return
	}
	marker := markerOf(dir)
	if st, serr := os.Stat(marker); serr == nil && time.Since(st.ModTime()) < reportEvery {
		return
	}
	// A marker that cannot be written leaves every process to log once.
	if f, ferr := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE, 0o660); ferr == nil {
		f.Close()
		now := time.Now()
		os.Chtimes(marker, now, now)
	}
	log.Warn("wake-ups unavailable: streams on this host are polled instead of woken at once, until the directory can be used",
		"dir", dir, "err", err, "fix", fix(dir))
}

// fine notes that dir works (again): trouble with it is news once more.
func fine(log *slog.Logger, dir string) {
	if _, was := troubled.LoadAndDelete(dir); was {
		os.Remove(markerOf(dir))
		if log != nil {
			log.Info("wake-ups work again", "dir", dir)
		}
	}
}

// fix says what makes dir usable by this process.
func fix(dir string) string {
	var st syscall.Stat_t
	switch err := syscall.Stat(dir, &st); {
	case err != nil:
		return fmt.Sprintf("make %s a directory the programs' user may write, or remove what is in its way", dir)
	case st.Mode&syscall.S_IFMT != syscall.S_IFDIR:
		return fmt.Sprintf("%s is not a directory: remove it, and the programs make the directory again", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Sprintf("%s belongs to uid %d but the programs run as uid %d (was a program run by hand as another user?): chown -R %d %s, or remove it and the programs make it again",
			dir, st.Uid, os.Geteuid(), os.Geteuid(), dir)
	}
	return fmt.Sprintf("give the programs' user write and search permission on %s (chmod u+rwx), or remove it and the programs make it again", dir)
}

package main

import (
	"fmt"
	"syscall"
)

// fileLimit is this process's open-file limit after raiseFileLimit, which
// the load generator and every server the bench starts inherit.
type fileLimit struct {
	Soft   uint64   `json:"soft"`
	Hard   uint64   `json:"hard"`
	Needed uint64   `json:"needed"` // by the largest run, in the process that needs most
	Notes  []string `json:"notes"`
}

// Open files per process beyond its connections: the database, logs,
// listeners, wake-up sockets, the runtime's own.
const fileSlack = 256

// filesNeeded returns the open files the process that needs most holds
// with streams streams open and posters posting: an nginx worker that
// happens to accept every stream holds its client connection and its
// connection to the stream daemon.
func filesNeeded(streams, posters int) uint64 {
	return uint64(2*(streams+posters) + fileSlack)
}

// raiseFileLimit raises the soft open-file limit to what need asks, up to
// the hard limit, which it also tries to raise (only root with
// CAP_SYS_RESOURCE may); it says what it did and what falls short.
func raiseFileLimit(need uint64) fileLimit {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fileLimit{Needed: need, Notes: []string{fmt.Sprintf("open-file limit unknown: %v", err)}}
	}
	fl := fileLimit{Needed: need}
	before := lim
	if lim.Max < need {
		want := syscall.Rlimit{Cur: need, Max: need}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			lim = want
		} else {
			fl.Notes = append(fl.Notes, fmt.Sprintf("the machine's hard open-file limit is %s, below the %s the largest run needs (an nginx worker holding every stream's two connections; %v raising it): an nginx worker that takes more than %s streams refuses the rest",
				thousands(int(lim.Max)), thousands(int(need)), err, thousands(int(lim.Max-fileSlack)/2)))
		}
	}
	if lim.Cur < min(need, lim.Max) {
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fl.Notes = append(fl.Notes, fmt.Sprintf("cannot raise the soft open-file limit from %d: %v", before.Cur, err))
			lim = before
		}
	}
	fl.Soft, fl.Hard = lim.Cur, lim.Max
	if lim.Cur != before.Cur || lim.Max != before.Max {
		fl.Notes = append(fl.Notes, fmt.Sprintf("open-file limit raised from %s (hard %s) to %s (hard %s) for the bench, its load generator and the servers",
			thousands(int(before.Cur)), thousands(int(before.Max)), thousands(int(lim.Cur)), thousands(int(lim.Max))))
	} else if lim.Cur >= need {
		fl.Notes = append(fl.Notes, fmt.Sprintf("open-file limit %s (hard %s), enough for the largest run", thousands(int(lim.Cur)), thousands(int(lim.Max))))
	}
	return fl
}

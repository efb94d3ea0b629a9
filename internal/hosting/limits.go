package hosting

import (
	"io"
	"net/http"
	"syscall"
)

// A FastCGI process serves at most as many connections as its open-file
// limit leaves after reserveFiles plus one sixteenth of the limit: room
// for the database (a SQLite file and its journal per pooled connection,
// or a socket per server connection), the wake-up sockets and lock files,
// the log, and the busy answers below. Past that, up to an eighth of the
// reserve more are answered 503 at once (busy), and the rest wait in the
// socket's queue (docs/configuration.md).
const reserveFiles = 32

// connLimits returns, for an open-file limit, how many connections a
// FastCGI process serves and how many more it answers busy.
func connLimits(files uint64) (serve, busy int) {
	reserve := reserveFiles + files/16
	if files < reserve+8 {
		// A limit this low leaves no real room: serve a few anyway.
		return 8, 2
	}
	return int(min(files-reserve, 1<<24)), int(max(reserve/8, 2))
}

// raiseFileLimit raises the process's soft open-file limit to its hard
// limit, so that a daemon holding many streams is not cut short by the
// soft default (1,024 under systemd and most shells), and returns the
// limit in force.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return lim.Cur, err
		}
		lim = want
	}
	return lim.Cur, nil
}

// busyRetrySeconds is the Retry-After of a busy answer.
const busyRetrySeconds = "5"

// busy answers a request that arrived past the process's connection
// limit, before any handler: 503 with Retry-After, and the body in the
// chat's own error form ({"error": "a sentence"}, as internal/web writes
// it).
func busy(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Retry-After", busyRetrySeconds)
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, `{"error":"The chat has too many connections open right now. Try again in a few seconds."}`+"\n")
}

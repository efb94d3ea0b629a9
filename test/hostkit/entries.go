package hostkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EntryStatus is what CloudLinux answers a request past an account's
// entry-process limit.
const EntryStatus = 508

// entryPage is the body of an EntryStatus answer: HTML from the host, as
// CloudLinux's own page is.
const entryPage = `<!DOCTYPE html>
<html><head><title>508 Resource Limit Is Reached</title></head>
<body><h1>Resource Limit Is Reached</h1>
<p>The website is temporarily unable to serve your request because it
reached its resource limit. Please try again later.</p></body></html>
`

// entryHoldLimit bounds how long an entry waits for its CGI program to end
// after the response did.
const entryHoldLimit = 5 * time.Minute

// EntryLimit stands in front of a host the way CloudLinux's entry-process
// limit (EP) does on a shared host: at most N dynamic requests (under
// /cgi-bin/) of the account in progress at once; past that, EntryStatus at
// once with an HTML page, for posts, streams and everything dynamic alike.
// Static files pass uncounted. On a CGI setup an entry lasts as long as
// its program runs, not only as long as its client stays: under mod_cgid
// a stream whose reader left holds its entry until Apache notices, two to
// four heartbeats later.
//
// No kernel limit counts requests (RLIMIT_NPROC counts threads: see
// Account.ProcessLimit), so this is a model, in Go, of what CloudLinux's
// Apache module does at a request's entry; everything behind it is the
// real host. Clients use URL in place of the host's.
type EntryLimit struct {
	URL string // http://127.0.0.1:PORT, in front of the host
	N   int

	host *Host
	mu   sync.Mutex
	// entries are those in progress, by a number of their own.
	entries map[uint64]entry
	next    uint64
	// held are the entries whose response has ended, by the local port
	// of their connection to the host (the program's REMOTE_PORT), kept
	// until no program of the host runs with that REMOTE_PORT.
	held             map[int][]uint64
	most             int
	admitted, denied int
	refusals         []Refusal
	// took is how long the entries whose response ended by itself were
	// held, by path (at most maxTook each).
	took map[string][]time.Duration
	// entered is when each admitted entry entered, by path (at most
	// maxTook each).
	entered map[string][]time.Time
}

// entry is one request in progress: its path and when it entered.
type entry struct {
	path  string
	start time.Time
}

// Limits on what an EntryLimit keeps for its Stats.
const (
	maxRefusals = 100
	maxTook     = 100_000
)

// LongEntry is how long an entry has been held when a Refusal counts it
// apart: a stream's entry that long is a live stream's, a poll's
// program answers at once.
const LongEntry = 2 * time.Second

// Refusal is one request answered EntryStatus: when, to which path, and
// what held the entries then (their number by path, with " (held
// LongEntry or more)" after the path of those that had been held that
// long).
type Refusal struct {
	At      time.Time
	Path    string
	Holding map[string]int
}

// LimitEntries starts an EntryLimit of n in front of h until t's cleanups.
func LimitEntries(t T, h *Host, n int) *EntryLimit {
	t.Helper()
	backend, err := url.Parse(h.URL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	e := &EntryLimit{URL: "http://" + l.Addr().String(), N: n, host: h, entries: make(map[uint64]entry), held: make(map[int][]uint64), took: make(map[string][]time.Duration), entered: make(map[string][]time.Time)}
	proxy := &httputil.ReverseProxy{
		// Rewrite, unlike Director, adds no X-Forwarded-For: the host
		// sees its clients as it would without the limit.
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(backend)
			r.Out.Host = r.In.Host
		},
		// One connection per request, so that its port names its program.
		Transport: &http.Transport{DisableKeepAlives: true},
		// A client that leaves ends its request to the host too; that is
		// no error worth a log line.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				w.WriteHeader(http.StatusBadGateway)
			}
		},
	}
	srv := &http.Server{Handler: e.handler(proxy), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	stop := make(chan struct{})
	go e.release(stop)
	t.Cleanup(func() {
		close(stop)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			srv.Close()
		}
	})
	return e
}

// handler admits a dynamic request when fewer than N are in progress.
func (e *EntryLimit) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/cgi-bin/") {
			next.ServeHTTP(w, r)
			return
		}
		id, ok := e.enter(r.URL.Path)
		if !ok {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(EntryStatus)
			w.Write([]byte(entryPage))
			return
		}
		port := 0
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if a, ok := info.Conn.LocalAddr().(*net.TCPAddr); ok {
				port = a.Port
			}
		}}
		// Deferred: the proxy panics with http.ErrAbortHandler when the
		// client has left. A response that ended by itself ended its
		// request, as Apache ends one when the program's output does; a
		// client that left leaves its program running until Apache
		// notices, and the entry with it.
		defer func() {
			e.leave(id, r.Context().Err() == nil, port)
		}()
		next.ServeHTTP(w, r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
	})
}

// enter admits a request to path and returns its entry's number, or
// reports false, counting the refusal, when N are in progress.
func (e *EntryLimit) enter(path string) (uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if len(e.entries) >= e.N {
		e.denied++
		if len(e.refusals) < maxRefusals {
			holding := make(map[string]int)
			for _, en := range e.entries {
				k := en.path
				if now.Sub(en.start) >= LongEntry {
					k += " (held " + LongEntry.String() + " or more)"
				}
				holding[k]++
			}
			e.refusals = append(e.refusals, Refusal{At: now, Path: path, Holding: holding})
		}
		return 0, false
	}
	e.next++
	e.entries[e.next] = entry{path: path, start: now}
	if len(e.entered[path]) < maxTook {
		e.entered[path] = append(e.entered[path], now)
	}
	e.admitted++
	e.most = max(e.most, len(e.entries))
	return e.next, true
}

// leave ends entry id at once when its response ended by itself, or,
// given the port of a request whose client left, on a CGI setup whose
// program still runs (a stream whose reader left), hands it to release to
// end when its program does.
func (e *EntryLimit) leave(id uint64, ended bool, port int) {
	running := !ended && port != 0 && e.host.Setup.CGI && e.programRuns(port)
	e.mu.Lock()
	defer e.mu.Unlock()
	if running {
		// A port may come round again while an earlier request's
		// program still runs: both are held.
		e.held[port] = append(e.held[port], id)
		return
	}
	if en, ok := e.entries[id]; ok && ended && len(e.took[en.path]) < maxTook {
		e.took[en.path] = append(e.took[en.path], time.Since(en.start))
	}
	delete(e.entries, id)
}

// programRuns reports whether a program of the host runs for the request
// that came from port.
func (e *EntryLimit) programRuns(port int) bool {
	for _, pid := range PIDsUnder(e.host.Docroot) {
		if v, ok := envValue(pid, "REMOTE_PORT"); ok && v == strconv.Itoa(port) {
			return true
		}
	}
	return false
}

// release ends, every SampleEvery, the held entries whose program no
// longer runs.
func (e *EntryLimit) release(stop chan struct{}) {
	tick := time.NewTicker(SampleEvery)
	defer tick.Stop()
	limit := time.After(samplerLimit)
	since := make(map[int]time.Time)
	for {
		select {
		case <-stop:
			return
		case <-limit:
			return
		case <-tick.C:
		}
		e.mu.Lock()
		n := len(e.held)
		e.mu.Unlock()
		if n == 0 {
			continue
		}
		running := make(map[int]bool)
		for _, pid := range PIDsUnder(e.host.Docroot) {
			if v, ok := envValue(pid, "REMOTE_PORT"); ok {
				if port, err := strconv.Atoi(v); err == nil {
					running[port] = true
				}
			}
		}
		now := time.Now()
		e.mu.Lock()
		for port, ids := range e.held {
			if since[port].IsZero() {
				since[port] = now
			}
			if !running[port] || now.Sub(since[port]) > entryHoldLimit {
				delete(e.held, port)
				delete(since, port)
				for _, id := range ids {
					delete(e.entries, id)
				}
			}
		}
		e.mu.Unlock()
	}
}

// EntryStats is what an EntryLimit has counted.
type EntryStats struct {
	Active   int // entries in progress now (a CGI program still running)
	Most     int // the most in progress at once
	Admitted int
	Denied   int // answered EntryStatus
	// Refusals are the first maxRefusals of the Denied.
	Refusals []Refusal
	// Took is how long the entries whose response ended by itself were
	// held, by path, sorted.
	Took map[string][]time.Duration
	// Entered is when each admitted entry entered, by path, in order.
	Entered map[string][]time.Time
}

// String gives the counts, for a log line; not the refusals nor the times.
func (s EntryStats) String() string {
	return fmt.Sprintf("active %d, most %d, admitted %d, denied %d", s.Active, s.Most, s.Admitted, s.Denied)
}

// Stats returns the counts so far.
func (e *EntryLimit) Stats() EntryStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	entered := make(map[string][]time.Time, len(e.entered))
	for path, ts := range e.entered {
		entered[path] = slices.Clone(ts)
	}
	took := make(map[string][]time.Duration, len(e.took))
	for path, ds := range e.took {
		took[path] = slices.Sorted(slices.Values(ds))
	}
	return EntryStats{Active: len(e.entries), Most: e.most, Admitted: e.admitted, Denied: e.denied,
		Refusals: slices.Clone(e.refusals), Took: took, Entered: entered}
}

// envValue returns the value of name in process pid's environment.
func envValue(pid int, name string) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return "", false
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

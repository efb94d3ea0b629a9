package hosts

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"cgichat/test/hostkit"
)

// Hosts that cap an account's processes or requests (issue 12). These
// tests measure the limits as they are, for the tests of the stream budget
// to stand on.

// processLimit is the RLimitNPROC of TestProcessLimit: a small plan.
const processLimit = 20

// TestProcessLimit runs the chat as an account under a kernel process
// limit: mod_cgid, suEXEC, RLimitNPROC 20 20. RLIMIT_NPROC counts the
// account's threads, and each Go program runs several, so a few streams
// fill it; the next program's runtime cannot start a thread, it aborts
// before its headers, and Apache answers its HTML 500.
func TestProcessLimit(t *testing.T) {
	if err := hostkit.CanCreateAccounts(); err != nil {
		t.Skip(err)
	}
	t.Parallel()
	hostkit.RequireTools(t, hostkit.ApacheBin, "/usr/bin/rsync")
	hostkit.WarmBuild(t)
	h := hostkit.NewHost(t, lookupSetup(t, "apache-suexec-mod_cgid"))
	a := h.Account
	a.ProcessLimit = processLimit
	h.Deploy(t)
	startTimed(t, h)
	tasks := hostkit.Sample(t, a.Tasks)
	procs := hostkit.Sample(t, func() int { return len(a.Processes()) })
	c := newClient(h.URL)

	// Open streams until one is refused: each holds a process of at
	// least one thread, so fewer than processLimit fit.
	var open []*stream
	defer func() {
		for _, s := range open {
			s.close()
		}
	}()
	var refused error
	for len(open) < processLimit && refused == nil {
		s := c.openStream(hostkit.NewRoom("nproc"), "")
		if _, ok := s.next("ready", 10*time.Second); !ok {
			refused = s.result(time.Second)
			s.close()
			break
		}
		open = append(open, s)
	}
	t.Logf("RLimitNPROC %d: %d streams open in %d threads, then %.120v", processLimit, len(open), a.Tasks(), refused)
	if refused == nil {
		t.Fatalf("%d streams opened under RLimitNPROC %d", len(open), processLimit)
	}
	if len(open) == 0 {
		t.Errorf("RLimitNPROC %d left no room for one stream", processLimit)
	}
	if g := refused.Error(); !strings.HasPrefix(g, "status 500,") || !strings.Contains(g, "<title>500 Internal Server Error</title>") {
		t.Errorf("the stream past the limit got %.300s, want Apache's HTML 500", g)
	}
	log, err := os.ReadFile(h.MainLog())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "End of script output before headers: stream") ||
		!strings.Contains(string(log), "pthread_create failed: Resource temporarily unavailable") {
		t.Errorf("the error log does not say that the stream's runtime could not start a thread:\n%s", hostkit.Tail(h.MainLog(), 30))
	}
	// Whether a post fits now depends on how many threads each program
	// happens to start (a failed stream frees its own): measured, not
	// asserted; and so for streams that need a thread later.
	resp, body := postJSON(t, c, hostkit.NewRoom("nproc"), "ada", "at the limit")
	still := 0
	for _, s := range open {
		if !s.ended() {
			still++
		}
	}
	t.Logf("then a post got %d %.60q; %d of the %d streams are still open", resp.StatusCode, body, still, len(open))
	mostTasks, samples := tasks.Stop()
	mostProcs, _ := procs.Stop()
	t.Logf("sampled %d times: at most %d processes, %d threads of the account", samples, mostProcs, mostTasks)
	// A program over the limit counts for a moment before it fails.
	if mostTasks > processLimit+1 {
		t.Errorf("the account ran %d threads at once under RLimitNPROC %d", mostTasks, processLimit)
	}
}

// entryLimit is the EntryLimit of TestEntryLimit.
const entryLimit = 2

// TestEntryLimit runs the chat under mod_cgid behind an entry-process
// limit of 2: the third dynamic request gets 508 and the host's page, a
// static file passes, and an entry whose reader left is free only once
// its CGI program has ended.
func TestEntryLimit(t *testing.T) {
	t.Parallel()
	hostkit.RequireTools(t, hostkit.ApacheBin)
	hostkit.WarmBuild(t)
	h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_cgid"))
	h.Deploy(t, "--env", "CHAT_HEARTBEAT_SECONDS=1")
	startTimed(t, h)
	limit := hostkit.LimitEntries(t, h, entryLimit)
	streams := hostkit.Sample(t, h.StreamProcesses)
	c := newClient(limit.URL)
	// A room per reader, so that a room names its stream's process.
	var rooms []string
	var open []*stream
	for range entryLimit {
		rooms = append(rooms, hostkit.NewRoom("entries"))
		s := c.openStream(rooms[len(rooms)-1], "")
		defer s.close()
		if _, ok := s.next("ready", 10*time.Second); !ok {
			t.Fatalf("stream %d of %d: no ready event: %v", len(open)+1, entryLimit, s.result(time.Second))
		}
		open = append(open, s)
	}
	room := hostkit.NewRoom("entries")
	resp, body := postJSON(t, c, room, "ada", "past the limit")
	if resp.StatusCode != hostkit.EntryStatus || !strings.Contains(body, "Resource Limit Is Reached") {
		t.Errorf("a post past the limit: got status %d, %.200q; want %d and the host's page", resp.StatusCode, body, hostkit.EntryStatus)
	}
	s := c.openStream(room, "")
	if err := s.result(10 * time.Second); err == nil || !strings.HasPrefix(err.Error(), "status 508,") {
		t.Errorf("a stream past the limit ended with %v, want status 508", err)
	}
	if resp, _ := c.get(t, "/index.html"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /index.html at the limit: got status %d, want 200", resp.StatusCode)
	}

	// A reader leaves: its entry is free when Apache has ended the
	// program, not before.
	pid := h.CGIProcess(rooms[0])
	if pid == 0 {
		t.Fatalf("no CGI process serves the stream of %s", rooms[0])
	}
	open[0].close()
	left := time.Now()
	hostkit.WaitFor(t, nil, h.MainLog(), "a free entry", 30*time.Second, func() bool {
		return limit.Stats().Active < entryLimit
	})
	t.Logf("an entry was free %v after its reader left", time.Since(left).Round(10*time.Millisecond))
	if slices.Contains(hostkit.PIDsRunning(h.StreamBin), pid) {
		t.Errorf("the entry was free while its CGI process %d still ran", pid)
	}
	if _, _, err := c.tryPost(room, "ada", "room again"); err != nil {
		t.Errorf("a post after a reader left: %v", err)
	}
	st := limit.Stats()
	most, samples := streams.Stop()
	t.Logf("entries: %+v; at most %d stream processes in %d samples", st, most, samples)
	if st.Most != entryLimit || st.Denied != 2 {
		t.Errorf("got %+v, want at most %d entries at once and 2 denied", st, entryLimit)
	}
	if most > entryLimit {
		t.Errorf("%d stream processes ran at once behind an entry limit of %d", most, entryLimit)
	}
}

// ended reports whether the stream has ended, without waiting.
func (s *stream) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

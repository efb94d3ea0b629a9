package hosts

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/sse"
	"cgichat/test/hostkit"
)

// The shared-host plan the budget test emulates: CloudLinux's default 20
// entry processes, and the budget of live streams that fits it.
const (
	planEntries = 20
	planBudget  = 8
)

// budgetHistory is how many messages the budget test's room holds before its
// readers come.
const budgetHistory = 20

// TestBudgetUnderEntryLimit runs the chat under Apache mod_cgid behind an
// entry-process limit of 20, as a CloudLinux shared host has, with its
// budget of 8 live streams: 200 readers (EventSource's rules: retry:,
// Last-Event-ID, a reader id; between polls the room's tail file, as the
// page reads it) of a room with a history, and 5 posters for a minute.
// Posts and the page's files never get a 5xx; no more than the budget of
// live stream processes runs at once (sampled every 100 ms; a poll's
// short-lived process, answered at once, is passing through); the pollers
// read the tail file and get messages from it; every reader gets every
// message once, in order, from the stream and the tail together. (An
// empty room's pollers, who have no tail file to read and come back for
// the first messages together, are not what it measures.)
func TestBudgetUnderEntryLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load")
	}
	// Not parallel: the other host tests would load the machine as no
	// shared host's neighbours do.
	h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_cgid"))
	// Every client comes from 127.0.0.1 here: the per-address cap and
	// rate limit would stop the test, not the budget.
	// The history sent on joining holds the room's whole history.
	h.Env = []string{"CHAT_MAX_STREAMS=" + strconv.Itoa(planBudget), "CHAT_STREAMS_PER_CLIENT=0", "CHAT_RATE_LIMIT=off",
		"CHAT_HISTORY=" + strconv.Itoa(budgetHistory)}
	h.Deploy(t)
	h.Start(t)
	entries := hostkit.LimitEntries(t, h, planEntries)

	const readers, posters = 200, 5
	const arrival, posting = 10 * time.Second, 60 * time.Second
	room := hostkit.NewRoom("budget")
	streamURL := entries.URL + "/cgi-bin/stream?room=" + room
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	// The room has a history, as a room people read has: a poll of a
	// room without messages names no tail file, so its pollers come back
	// for the first messages all within the interval of pollers without
	// one, at most 30 s after they came (docs/deploy.md).
	var posted []int64
	opener := newClient(entries.URL)
	for i := range budgetHistory {
		m, _ := opener.post(t, room, "opener", fmt.Sprint("earlier ", i))
		posted = append(posted, m.ID)
	}

	// The readers, each with its own reader id and the ids it got.
	type reader struct {
		es    *hostkit.EventSource
		mu    sync.Mutex
		ids   []int64
		ready int // ready events
		live  int // of which with mode live
		polls int // of which with mode poll
	}
	rs := make([]*reader, readers)
	var wg sync.WaitGroup
	for i := range rs {
		r := &reader{}
		r.es = &hostkit.EventSource{
			URL:    streamURL + "&reader=" + url.QueryEscape(fmt.Sprintf("reader-%03d", i)),
			Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
			OnEvent: func(ev sse.Event, _ time.Time) {
				r.mu.Lock()
				defer r.mu.Unlock()
				switch ev.Type {
				case "message":
					id, _ := strconv.ParseInt(ev.ID, 10, 64)
					r.ids = append(r.ids, id)
				case "ready":
					r.ready++
					if strings.Contains(ev.Data, `"mode":"live"`) {
						r.live++
					}
					if strings.Contains(ev.Data, `"mode":"poll"`) {
						r.polls++
					}
				}
			},
		}
		rs[i] = r
		// Readers arrive over ten seconds, as a page does when a link is
		// shared; the posts begin once all are in.
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i) * arrival / readers):
			}
			r.es.Run(ctx)
		})
	}
	// Every reader is in (has had its first answer) before anything is
	// posted: a reader who first arrives later gets the history, not
	// everything.
	joined := func() int {
		n := 0
		for _, r := range rs {
			r.mu.Lock()
			if r.ready > 0 {
				n++
			}
			r.mu.Unlock()
		}
		return n
	}
	const joinWait = arrival + time.Minute
	for deadline := time.Now().Add(joinWait); joined() < readers; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d readers were answered within %v", joined(), readers, joinWait)
		}
	}

	// Live stream processes: those that have run two seconds or more. A
	// poll's process answers and exits within milliseconds.
	live := hostkit.Sample(t, func() int { return hostkit.OlderThan(hostkit.PIDsRunning(h.StreamBin), 2*time.Second) })
	all := hostkit.Sample(t, h.StreamProcesses)

	began := time.Now() // the posting's start
	// The page's files, fetched all along.
	var staticBad []string
	var staticMu sync.Mutex
	pageCtx, stopPage := context.WithTimeout(ctx, posting)
	defer stopPage()
	var pages sync.WaitGroup
	pages.Go(func() {
		c := &http.Client{Timeout: 10 * time.Second}
		for pageCtx.Err() == nil {
			for _, f := range []string{"/", "/chat.js", "/chat.css"} {
				resp, err := c.Get(entries.URL + f)
				staticMu.Lock()
				switch {
				case err != nil:
					staticBad = append(staticBad, f+": "+err.Error())
				case resp.StatusCode != http.StatusOK:
					staticBad = append(staticBad, fmt.Sprintf("%s: %d", f, resp.StatusCode))
				}
				staticMu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	// The posters, one message a second each, for a minute.
	var postMu sync.Mutex
	var postErrs []string
	var writing sync.WaitGroup
	for p := range posters {
		writing.Go(func() {
			c := newClient(entries.URL)
			end := time.Now().Add(posting)
			for i := 0; time.Now().Before(end); i++ {
				m, _, err := c.tryPost(room, fmt.Sprint("poster", p), fmt.Sprint(i))
				postMu.Lock()
				if err != nil {
					postErrs = append(postErrs, err.Error())
				} else {
					posted = append(posted, m.ID)
				}
				postMu.Unlock()
				time.Sleep(time.Second)
			}
		})
	}
	writing.Wait()
	pages.Wait()

	// Every reader gets every message: the pollers within their retry:,
	// which may be 36 s on a busy machine, twice when the host refused
	// one poll (a 508 is waited out for the retry: too).
	want := len(posted)
	deadline := time.Now().Add(80 * time.Second)
	for {
		behind := 0
		for _, r := range rs {
			r.mu.Lock()
			if len(r.ids) < want {
				behind++
			}
			r.mu.Unlock()
		}
		if behind == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	wg.Wait()
	mostLive, samples := live.Stop()
	mostAll, _ := all.Stop()
	es := entries.Stats()
	// What the polls took by the programs' own measure, from their
	// process's start to the end of their answer, which sets retry:.
	if out, err := exec.Command("sqlite3", h.DB, "SELECT count(*), round(avg(cost)*1000, 1), round(max(cost)*1000, 1) FROM streams WHERE kind = 'poll'").CombinedOutput(); err == nil {
		t.Logf("poll rows, their cost on average and at most (ms), by the programs' measure: %s", strings.TrimSpace(string(out)))
	}

	t.Logf("%d readers, %d posts in %v: live stream processes at most %d (all stream processes %d); "+
		"entries at most %d of %d, %d refused", readers, len(posted)-budgetHistory, posting, mostLive, mostAll, es.Most, planEntries, es.Denied)
	// How long the host held an entry for each kind of request, and
	// what held them all when a post was refused: a slow machine shows
	// in the first, a budget that lets streams crowd out posts in the
	// second.
	for _, path := range []string{"/cgi-bin/stream", "/cgi-bin/post"} {
		t.Logf("entries of %s that ended by themselves: %s", path, spread(es.Took[path]))
	}
	if len(postErrs) > 0 {
		t.Errorf("%d of %d posts failed; first: %s", len(postErrs), len(postErrs)+len(posted)-budgetHistory, postErrs[0])
		for _, r := range es.Refusals {
			if r.Path == "/cgi-bin/post" {
				t.Logf("a post refused %.1f s into the posting; the entries held then: %v; stream requests that entered in each of the 5 s before: %v",
					r.At.Sub(began).Seconds(), r.Holding, perSecond(es.Entered["/cgi-bin/stream"], r.At, 5))
			}
		}
	}
	if len(staticBad) > 0 {
		t.Errorf("%d fetches of the page's files failed; first: %s", len(staticBad), staticBad[0])
	}
	if mostLive > planBudget+1 {
		t.Errorf("up to %d live stream processes at once (%d samples), want at most the budget, %d, and one in passing", mostLive, samples, planBudget)
	}
	sortedPosted := slices.Sorted(slices.Values(posted))
	lostOrTwice, liveReaders, pollers := 0, 0, 0
	for i, r := range rs {
		r.mu.Lock()
		if fmt.Sprint(r.ids) != fmt.Sprint(sortedPosted) {
			if lostOrTwice == 0 {
				t.Errorf("reader %d got %d ids, want the %d posted once each, in order: %s (%+v, last error %q)",
					i, len(r.ids), want, idsDiff(r.ids, sortedPosted), r.es.Stats(), r.es.LastError())
			}
			lostOrTwice++
		}
		if r.live > 0 {
			liveReaders++
		}
		if r.polls > 0 {
			pollers++
		}
		r.mu.Unlock()
	}
	if lostOrTwice > 0 {
		t.Errorf("%d of %d readers missed or repeated messages", lostOrTwice, readers)
	}
	var sum hostkit.EventSourceStats
	tailReaders := 0  // readers who got messages from the tail
	tailFailure := "" // a tail fetch's failure
	statuses := map[int]int{}
	for _, r := range rs {
		st := r.es.Stats()
		sum.Add(st)
		if st.TailEvents > 0 {
			tailReaders++
		}
		tailFailure = cmp.Or(tailFailure, r.es.LastTailError())
		for k, v := range r.es.Statuses() {
			statuses[k] += v
		}
	}
	t.Logf("%d readers, %d posts in %v: live stream processes at most %d (all stream processes %d), %d readers streamed live at some time, %d polled; "+
		"entries at most %d of %d, %d refused; %d stream requests, %d failed %v; "+
		"%d tail requests, %d answered 304, %d failed (%q), %d did not reach back far enough; %d events from tails, to %d readers",
		readers, len(posted)-budgetHistory, posting, mostLive, mostAll, liveReaders, pollers, es.Most, planEntries, es.Denied, sum.Requests, sum.Failed, statuses,
		sum.TailRequests, sum.TailUnchanged, sum.TailFailed, tailFailure, sum.TailGaps, sum.TailEvents, tailReaders)
	// The pollers read the room from its tail file between their polls.
	if pollers == 0 {
		t.Errorf("no reader polled: the budget of %d never filled with %d readers", planBudget, readers)
	}
	if sum.TailRequests == 0 || sum.TailEvents == 0 {
		lastErr := ""
		for _, r := range rs {
			lastErr = cmp.Or(lastErr, r.es.LastError())
		}
		t.Errorf("the %d pollers made %d tail requests and got %d events from tails, want both above 0 (a reader's last error: %q)",
			pollers, sum.TailRequests, sum.TailEvents, lastErr)
	}
}

// spread says how many durations ds (sorted) holds and their median, 90th
// percentile and most.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	at := func(q float64) time.Duration { return ds[int(q*float64(len(ds)-1))].Round(time.Millisecond) }
	return fmt.Sprintf("%d, median %v, 90th percentile %v, most %v", len(ds), at(0.5), at(0.9), ds[len(ds)-1].Round(time.Millisecond))
}

// perSecond counts the times ts (in order) in each of the n seconds
// before end, the earliest first.
func perSecond(ts []time.Time, end time.Time, n int) []int {
	counts := make([]int, n)
	for _, at := range ts {
		if back := end.Sub(at); back >= 0 && back < time.Duration(n)*time.Second {
			counts[n-1-int(back/time.Second)]++
		}
	}
	return counts
}

// idsDiff says how got differs from want: ids missing, ids twice, ids out
// of order.
func idsDiff(got, want []int64) string {
	seen := make(map[int64]int)
	var twice, early []int64
	last := int64(0)
	for _, id := range got {
		seen[id]++
		if seen[id] == 2 {
			twice = append(twice, id)
		}
		if id <= last && seen[id] == 1 {
			early = append(early, id)
		}
		last = max(last, id)
	}
	var missing []int64
	for _, id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	return fmt.Sprintf("missing %v, twice %v, out of order %v", missing, twice, early)
}

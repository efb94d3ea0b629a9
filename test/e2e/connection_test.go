package e2e

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// outage is how long TestOutage keeps the stream away, and the most
// stream requests a page may make meanwhile: with tries 1, 2, 4, 8 and 16 s
// apart (each ±20 %) that is 5 or 6.
const (
	outage         = 30 * time.Second
	outageRequests = 8
)

// countdown samples the header of tb every 200 ms for the given time and
// returns the numbers "Offline — trying again in N s" showed, in order,
// each run of one number once.
func countdown(tb *tab, within time.Duration) []int {
	tb.t.Helper()
	n := regexp.MustCompile(`^Offline — trying again in (\d+) s$`)
	var seen []int
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		m := n.FindStringSubmatch(tb.state())
		if m == nil {
			continue
		}
		v, _ := strconv.Atoi(m[1])
		if len(seen) == 0 || seen[len(seen)-1] != v {
			seen = append(seen, v)
		}
	}
	return seen
}

// countsDown reports whether seen holds three numbers in a row, each one
// less than the one before: a countdown that counts.
func countsDown(seen []int) bool {
	for i := 2; i < len(seen); i++ {
		if seen[i-1] == seen[i-2]-1 && seen[i] == seen[i-1]-1 {
			return true
		}
	}
	return false
}

// gaps lists the time between each request of rs and the one before.
func gaps(rs []request) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(rs); i++ {
		out = append(out, rs[i].At.Sub(rs[i-1].At).Round(10*time.Millisecond))
	}
	return out
}

// since returns the requests among rs made at or after t.
func since(rs []request, t time.Time) []request {
	var out []request
	for _, r := range rs {
		if !r.At.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

// retryNow clicks "Retry now" and waits until the page makes its next
// stream request for room; it fails the test if that takes over 2 s.
func retryNow(t *testing.T, tb *tab, d *deployment, room string) {
	t.Helper()
	if tb.trouble() == "" || eval[bool](tb, `document.querySelector("#retry").hidden`) {
		t.Fatalf("no Retry now button: the page says %q", tb.state())
	}
	n := len(d.requests.streams(room))
	clicked := time.Now()
	tb.do("click Retry now", chromedp.Click(chromedp.ID("retry")))
	for len(d.requests.streams(room)) == n {
		if time.Since(clicked) > 2*time.Second {
			t.Fatalf("Retry now: no stream request within 2 s (the page says %q)", tb.state())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutage: while the stream is away — a host answering 508 with its
// own HTML page (CloudLinux's limit of entry processes), or dropping
// connections — the page says it is offline, counts down to its next try
// in whole seconds, says why in a sentence (not the host's HTML), backs off
// (at most 8 requests in 30 s, in live and in batch mode), and tries at once
// on "Retry now". When the stream is back it is live again, with what was
// said meanwhile. A 503 with a sentence and Retry-After is waited out.
func TestOutage(t *testing.T) {
	// Mostly waiting: runs beside the other parallel tests.
	t.Parallel()

	t.Run("508 from the host, live", func(t *testing.T) {
		t.Parallel()
		d := deploy(t, setup{env: []string{"CHAT_STREAM_SECONDS=1"}})
		tb := newPerson(t, "reader").open(d.URL + "#limits")
		tb.expectConsoleError("status of 508")
		d.streamRefusal.Store(http.StatusLoopDetected) // 508
		start := time.Now()
		seen := countdown(tb, outage)
		refused := since(d.requests.streams("limits"), start)
		t.Logf("508 for %s: %d stream requests, %v apart; countdown %v", outage, len(refused), gaps(refused), seen)
		if len(refused) > outageRequests {
			t.Errorf("%d stream requests in %s of 508 answers, want at most %d (backing off)", len(refused), outage, outageRequests)
		}
		if !countsDown(seen) {
			t.Errorf("the countdown showed %v, want it to count down a second at a time", seen)
		}
		want := "This site is busy: its web host limits how many requests the site may run at once, and that limit is reached for now."
		if got := tb.trouble(); got != want {
			t.Errorf("under the header the page says %q, want %q", got, want)
		}
		tb.axe("offline after a 508")
		tb.screenshot("offline-508-360px", 360, 640, false)
		retryNow(t, tb, d, "limits")

		d.post(t, "limits", "zed", "said during the outage")
		d.streamRefusal.Store(0)
		retryNow(t, tb, d, "limits")
		tb.waitLive()
		checkLog(t, tb, []line{{"zed", "said during the outage"}})
		if got := tb.trouble(); got != "" {
			t.Errorf("live again, the page still says %q", got)
		}
	})

	t.Run("dropped connections, batch", func(t *testing.T) {
		t.Parallel()
		d := deploy(t, setup{holdBackStream: true, env: []string{"CHAT_STREAM_SECONDS=2"}})
		tb := newPerson(t, "reader").open(d.URL + "#gone")
		if got := eval[string](tb, `document.querySelector("#state").dataset.mode`); got != "batch" {
			t.Fatalf("behind a buffering host the page is in mode %q, want batch", got)
		}
		tb.expectConsoleError("ERR_EMPTY_RESPONSE")
		d.streamDown.Store(true)
		start := time.Now()
		seen := countdown(tb, outage)
		dropped := since(d.requests.streams("gone"), start)
		t.Logf("dropped for %s in batch mode: %d stream requests, %v apart; countdown %v", outage, len(dropped), gaps(dropped), seen)
		if len(dropped) > outageRequests {
			t.Errorf("%d stream requests in %s of dropped connections, want at most %d (backing off)", len(dropped), outage, outageRequests)
		}
		if !countsDown(seen) {
			t.Errorf("the countdown showed %v, want it to count down a second at a time", seen)
		}
		if got, want := tb.trouble(), "The server could not be reached."; got != want {
			t.Errorf("under the header the page says %q, want %q", got, want)
		}
		d.post(t, "gone", "zed", "said during the outage")
		d.streamDown.Store(false)
		retryNow(t, tb, d, "gone")
		tb.waitLive()
		tb.waitMessages(1)
		checkLog(t, tb, []line{{"zed", "said during the outage"}})
	})

	t.Run("503 with Retry-After", func(t *testing.T) {
		t.Parallel()
		d := deploy(t, setup{env: []string{"CHAT_STREAM_SECONDS=1"}})
		tb := newPerson(t, "reader").open(d.URL + "#update")
		tb.expectConsoleError("status of 503")
		d.streamRefusal.Store(http.StatusServiceUnavailable)
		start := time.Now()
		tb.waitFor("the page to be offline", `document.querySelector("#state").dataset.status === "offline"`, waitTimeout)
		seen := countdown(tb, 2*unavailableWait*time.Second)
		if len(seen) == 0 || seen[0] < unavailableWait || !countsDown(seen) {
			t.Errorf("the countdown showed %v, want it to start at %d s (Retry-After) and count down", seen, unavailableWait)
		}
		if got, want := tb.trouble(), unavailableSentence+" (HTTP 503)"; got != want {
			t.Errorf("under the header the page says %q, want %q", got, want)
		}
		if got := tb.state(); strings.Contains(got, "503") || strings.Contains(got, "HTTP") {
			t.Errorf("the header says %q: no status codes there", got)
		}
		// The tries (EventSource's requests) keep to Retry-After; the
		// page read the 503 once, with fetch, to learn it.
		if n := len(since(d.requests.streams("update"), start)) - len(since(d.requests.tries("update"), start)); n != 1 {
			t.Errorf("the page read why the stream failed %d times, want once for the whole outage", n)
		}
		refused := since(d.requests.tries("update"), start)
		for i := 1; i < len(refused); i++ {
			if gap := refused[i].At.Sub(refused[i-1].At); gap < unavailableWait*time.Second {
				t.Errorf("tries %s apart, want at least the Retry-After of %d s", gap.Round(time.Millisecond), unavailableWait)
			}
		}
		retryNow(t, tb, d, "update")
		d.streamRefusal.Store(0)
		retryNow(t, tb, d, "update")
		tb.waitLive()
	})
}

// TestPollMode: a server with no stream to spare answers each request at
// once, as a poll ("ready" says {"mode":"poll"}, retry: says when to ask
// again). The page says how often it checks, in seconds from the retry:,
// never asks sooner, and shows what was said in between, once each.
func TestPollMode(t *testing.T) {
	// Mostly waiting: runs beside the other parallel tests.
	t.Parallel()
	const every = 4 * time.Second
	d := deploy(t, setup{pollEvery: every})
	want := []line{{"zed", "before the page opened"}}
	d.post(t, "polled", want[0].Nick, want[0].Text)
	tb := newPerson(t, "reader").open(d.URL + "#polled")
	tb.waitMessages(1)
	if got, want := tb.state(), "Live, checking every 4 s"; got != want {
		t.Errorf("the page says %q, want %q", got, want)
	}
	for _, text := range []string{"between two polls 1", "between two polls 2"} {
		d.post(t, "polled", "zed", text)
		want = append(want, line{"zed", text})
	}
	tb.waitMessages(len(want))
	// Two more polls, to see their rhythm.
	n := len(d.requests.streams("polled"))
	deadline := time.Now().Add(3 * every)
	for len(d.requests.streams("polled")) < n+2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	polls := d.requests.streams("polled")
	if len(polls) < 3 {
		t.Fatalf("%d stream requests, want a poll every %s", len(polls), every)
	}
	for i := 1; i < len(polls); i++ {
		if gap := polls[i].At.Sub(polls[i-1].At); gap < every-50*time.Millisecond {
			t.Errorf("polls %d and %d were %s apart, want at least the %s of retry:", i, i+1, gap.Round(time.Millisecond), every)
		}
		if polls[i].LastEventID == "" {
			t.Errorf("poll %d: no Last-Event-ID, want it to resume", i+1)
		}
	}
	checkLog(t, tb, want)
}

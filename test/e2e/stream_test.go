package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// postEvery posts the lines to room, one every interval, from a goroutine,
// and returns a channel that yields the first error (or nil) when done.
func postEvery(d *deployment, room string, lines []line, interval time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		for _, l := range lines {
			if _, err := d.send(room, l.Nick, l.Text); err != nil {
				done <- err
				return
			}
			time.Sleep(interval)
		}
		done <- nil
	}()
	return done
}

// readerID is what the page sends as reader=: 32 hex digits.
var readerID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// readers returns the distinct reader ids of rs, in order, with "(none)"
// or "(bad: …)" for requests without a well-formed one.
func readers(rs []request) []string {
	var out []string
	for _, r := range rs {
		id := r.Query.Get("reader")
		switch {
		case id == "":
			id = "(none)"
		case !readerID.MatchString(id):
			id = "(bad: " + id + ")"
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// numbered makes n lines by nick: "text 1", "text 2", …
func numbered(nick, text string, n int) []line {
	var out []line
	for i := range n {
		out = append(out, line{nick, fmt.Sprintf("%s %d", text, i+1)})
	}
	return out
}

// TestStreamCutWhileMessagesArrive: the server ends every stream after a
// second while messages keep coming; the browser reconnects with
// Last-Event-ID each time, and the page shows every message exactly once.
func TestStreamCutWhileMessagesArrive(t *testing.T) {
	d := deploy(t, setup{env: []string{"CHAT_STREAM_SECONDS=1"}})
	tb := newPerson(t, "reader").open(d.URL + "#cut")

	want := numbered("poster", "message", 40)
	posted := postEvery(d, "cut", want, 75*time.Millisecond) // about 3 s: two or three cuts
	if err := <-posted; err != nil {
		t.Fatal(err)
	}
	tb.waitMessages(len(want))
	// A message shown twice would come with a reconnect's backlog: after
	// the next reconnect, post once more; when that shows, the backlog has.
	n := len(d.requests.streams("cut"))
	deadline := time.Now().Add(waitTimeout)
	for len(d.requests.streams("cut")) <= n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	want = append(want, line{"poster", "after the last reconnect"})
	d.post(t, "cut", "poster", want[len(want)-1].Text)
	tb.waitFor("the last message", `[...document.querySelectorAll("#log .text")].some((e) => e.textContent === "after the last reconnect")`, waitTimeout)
	checkLog(t, tb, want)

	streams := d.requests.streams("cut")
	if len(streams) < 3 {
		t.Errorf("%d stream requests, want at least 3 (the stream cut at least twice)", len(streams))
	}
	for i, r := range streams[1:] {
		if _, err := strconv.Atoi(r.LastEventID); err != nil {
			t.Errorf("reconnect %d: Last-Event-ID %q, want the id of the last message received", i+1, r.LastEventID)
		}
	}
}

// TestReconnecting: when the server stops taking streams, the page says
// it is reconnecting while EventSource retries; when the server is back the
// page is live again and shows what was said meanwhile, once.
func TestReconnecting(t *testing.T) {
	d := deploy(t, setup{env: []string{"CHAT_STREAM_SECONDS=1"}})
	tb := newPerson(t, "reader").open(d.URL + "#down")
	want := []line{{"zed", "before the outage"}}
	d.post(t, "down", "zed", want[0].Text)
	tb.waitMessages(1)

	tb.expectConsoleError("ERR_EMPTY_RESPONSE") // Chromium's word for a dropped connection
	d.streamDown.Store(true)
	// The stream ends after its second; every reconnect then fails.
	tb.waitFor("the page to say it reconnects", `document.querySelector("#state").textContent === "Reconnecting…"`, waitTimeout)
	for _, text := range []string{"during the outage 1", "during the outage 2"} {
		d.post(t, "down", "zed", text)
		want = append(want, line{"zed", text})
	}
	d.streamDown.Store(false)

	tb.waitMessages(len(want))
	tb.waitLive()
	checkLog(t, tb, want)
	// Every request after the first, failed or not, resumed after the
	// last message the page had: EventSource's own reconnects with
	// Last-Event-ID, the page's new EventSource after a failure with
	// lastEventId.
	for i, r := range d.requests.streams("down")[1:] {
		if _, err := strconv.Atoi(r.resumesAfter()); err != nil {
			t.Errorf("reconnect %d: Last-Event-ID %q, lastEventId %q, want the id of the last message received", i+1, r.LastEventID, r.Query.Get("lastEventId"))
		}
	}
}

// TestBufferingHostFallsBackToBatch: behind a host that holds the whole
// stream response back, the page hears nothing from its live stream, and
// within seconds asks in batch mode instead; messages then arrive by long
// polling. The page remembers that this host buffers: loaded again, it asks
// in batch mode from the start, without the 2 s of silence.
func TestBufferingHostFallsBackToBatch(t *testing.T) {
	// The held-back stream would end after CHAT_STREAM_SECONDS; 5 s also
	// bounds batch mode's long poll, so the test ends soon after.
	d := deploy(t, setup{holdBackStream: true, env: []string{"CHAT_STREAM_SECONDS=5"}})
	want := []line{{"early", "posted before the page opened"}}
	d.post(t, "slow", want[0].Nick, want[0].Text)

	tb := newPerson(t, "reader").open(d.URL + "#slow")
	tb.waitMessages(1)
	if got, want := tb.state(), "Live"; got != want {
		t.Errorf("the page says %q, want %q", got, want)
	}
	if got, want := eval[string](tb, `document.querySelector("#state").dataset.mode`), "batch"; got != want {
		t.Errorf("the state's mode is %q, want %q", got, want)
	}
	streams := d.requests.streams("slow")
	if len(streams) < 2 || streams[0].Query.Get("mode") != "" || streams[1].Query.Get("mode") != "batch" {
		t.Errorf("stream requests %+v, want a live one, then batch ones", streams)
	} else if gap := streams[1].At.Sub(streams[0].At); gap > 4*time.Second {
		// The page waits 2 s (readyWait in stream.js) for a word from
		// its live stream. Timed between its requests, not from the
		// page's load, which a loaded machine stretches.
		t.Errorf("the page asked in batch mode %s after its live request, want within a few seconds", gap.Round(time.Millisecond))
	}

	// New messages come by long polling, from others and from the page.
	posted := time.Now()
	want = append(want, line{"late", "posted while the page polls"})
	d.post(t, "slow", "late", want[1].Text)
	tb.waitMessages(2)
	if took := time.Since(posted); took > 3*time.Second {
		t.Errorf("a new message took %s to show in batch mode, want under 3 s", took.Round(time.Millisecond))
	}
	want = append(want, line{"reader", "and one sent from the page"})
	tb.say("reader", want[2].Text)
	tb.waitMessages(3)
	checkLog(t, tb, want)

	t.Run("remembered", func(t *testing.T) {
		before := len(d.requests.streams("slow"))
		start := time.Now()
		tb.do("reload the page", chromedp.Reload())
		tb.waitLive()
		tb.waitMessages(len(want))
		t.Logf("loaded again, the page showed the history after %s", time.Since(start).Round(time.Millisecond))
		checkLog(t, tb, want)
		for i, r := range d.requests.streams("slow")[before:] {
			if r.Query.Get("mode") != "batch" {
				t.Errorf("loaded again, stream request %d asks for mode %q, want batch from the start", i+1, r.Query.Get("mode"))
			}
		}
		// One reader id for the tab: the live stream the host held back
		// and the batch ones after it (so the server ends the held one),
		// before and after the reload.
		if got := readers(d.requests.streams("slow")); len(got) != 1 {
			t.Errorf("the stream requests came with reader ids %v, want one, kept across the fallback and the reload", got)
		}
	})
}

// TestTabsShareOneStream: three tabs of one browser show a room from one
// stream request. When the tab holding the stream closes, another takes
// over, resuming after the last message; nothing is missed or doubled.
func TestTabsShareOneStream(t *testing.T) {
	d := deploy(t, setup{})
	url := d.URL + "#shared"
	ann := newPerson(t, "ann")
	leader := ann.open(url) // alone, so it holds the stream
	others := []*tab{ann.open(url), ann.open(url)}

	first := d.post(t, "shared", "zed", "one stream for every tab")
	want := []line{{"zed", first.Text}}
	for _, tb := range append(others, leader) {
		tb.waitMessages(1)
		checkLog(t, tb, want)
	}
	if got := d.requests.streams("shared"); len(got) != 1 {
		t.Errorf("3 tabs made %d stream requests, want 1", len(got))
	}

	leader.close()
	want = append(want, line{"zed", "the stream moved to another tab"})
	d.post(t, "shared", "zed", want[1].Text)
	for _, tb := range others {
		tb.waitMessages(2)
		checkLog(t, tb, want)
	}
	streams := d.requests.streams("shared")
	if len(streams) != 2 {
		t.Fatalf("after the leader closed: %d stream requests, want 2", len(streams))
	}
	if got, want := streams[1].Query.Get("lastEventId"), strconv.FormatInt(first.ID, 10); got != want {
		t.Errorf("the new leader resumed with lastEventId=%q, want %q", got, want)
	}

	// Another browser has its own stream.
	newPerson(t, "bo").open(url).waitMessages(2)
	if got := d.requests.streams("shared"); len(got) != 3 {
		t.Errorf("a second browser made %d stream requests in all, want 3", len(got))
	}
}

// TestTabsOverPlainHTTP: a page served over plain HTTP (not localhost) is
// an insecure context without Web Locks; each tab then keeps a stream of
// its own, and the chat works as well.
func TestTabsOverPlainHTTP(t *testing.T) {
	// A name for 127.0.0.1 is what a DNS-rebinding page uses too: the
	// chat accepts it only when the site owner lists it.
	d := deploy(t, setup{env: []string{"CHAT_ALLOWED_HOSTS=" + plainHost + ",127.0.0.1"}})
	url := d.plainHTTP() + "#plain"
	cy := newPerson(t, "cy")
	tabs := []*tab{cy.open(url), cy.open(url)}
	if got := eval[string](tabs[0], `String(window.isSecureContext) + " " + String("locks" in navigator)`); got != "false false" {
		t.Fatalf("over plain HTTP: secure context and Web Locks are %q, want %q", got, "false false")
	}
	if got := d.requests.streams("plain"); len(got) != 2 {
		t.Errorf("2 tabs over plain HTTP made %d stream requests, want 2", len(got))
	}
	if got := readers(d.requests.streams("plain")); len(got) != 2 {
		t.Errorf("2 tabs over plain HTTP sent reader ids %v, want one each", got)
	}
	d.post(t, "plain", "zed", "one stream per tab here")
	tabs[1].say("cy", "and it still works")
	want := []line{{"zed", "one stream per tab here"}, {"cy", "and it still works"}}
	for _, tb := range tabs {
		tb.waitMessages(len(want))
		checkLog(t, tb, want)
	}
	// The nickname chosen in one tab reaches the other through
	// localStorage; each then reopens its own stream under it, once.
	withNick := func() int {
		n := 0
		for _, r := range d.requests.streams("plain") {
			if r.Query.Get("nick") == "cy" {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(waitTimeout)
	for withNick() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := d.requests.streams("plain"); len(got) != 4 || withNick() != 2 {
		t.Errorf("after the nickname: %d stream requests, %d of them as cy; want 4 and 2 (each tab reopens its own)", len(got), withNick())
	}
}

package e2e

import (
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// topOfLog returns what the top of the log says about earlier messages
// ("" while it says nothing).
func (tb *tab) topOfLog() string {
	tb.t.Helper()
	return eval[string](tb, `(() => { const t = document.querySelector("#log > .top"); return t === null || t.hidden ? "" : t.textContent; })()`)
}

// scrollUp scrolls the log to its very top, as a reader does with a few
// flicks, and returns the first message shown then and where it is on
// the screen (its top, in CSS pixels).
func (tb *tab) scrollUp() (id int64, at float64) {
	tb.t.Helper()
	got := eval[[]float64](tb, `(() => {
		const s = document.querySelector("#scroller");
		s.scrollTop = 0;
		const first = document.querySelector("#log .msg");
		return [Number(first.dataset.id), first.getBoundingClientRect().top];
	})()`)
	return int64(got[0]), got[1]
}

// screenTop returns where the message id is on the screen.
func (tb *tab) screenTop(id int64) float64 {
	tb.t.Helper()
	return eval[float64](tb, fmt.Sprintf(`document.querySelector('#log .msg[data-id="%d"]').getBoundingClientRect().top`, id))
}

// readBackToTheBeginning scrolls tb's log up again and again, each time
// checking that the page keeps the reader's place while it puts the
// previous page of messages above, until the top of the log says the
// room begins there. It returns how many pages it loaded.
func readBackToTheBeginning(t *testing.T, tb *tab, room string) int {
	t.Helper()
	beginning := fmt.Sprintf("This is the beginning of #%s (or of what this chat keeps of it).", room)
	pages := 0
	for range 20 {
		if tb.topOfLog() == beginning {
			return pages
		}
		first, at := tb.scrollUp()
		tb.waitFor("the previous page, or the beginning",
			fmt.Sprintf(`Number(document.querySelector("#log .msg").dataset.id) < %d || document.querySelector("#log > .top").textContent.startsWith("This is the beginning")`, first), waitTimeout)
		// Settled: no more loading at this point of the log.
		tb.waitFor("the load to end", `!document.querySelector("#log > .top").classList.contains("loading")`, waitTimeout)
		if now := tb.screenTop(first); math.Abs(now-at) > 1 {
			t.Errorf("%s: message %d was at %.0f px on the screen before the earlier messages came, and at %.0f px after: the log jumped", tb.name, first, at, now)
		}
		pages++
	}
	t.Fatalf("%s: after 20 pages the top of the log says %q, not the beginning", tb.name, tb.topOfLog())
	return pages
}

// TestOlderHistory: scrolled near the top, the page loads the page of
// messages before the first it shows, and keeps what the reader looks at
// in its place; at the beginning of the room it says so. Back at the
// bottom of a log past its bound, the oldest messages go again, and the
// top says there are earlier ones; scrolling up brings them back.
func TestOlderHistory(t *testing.T) {
	// No timing of its own: runs beside the waiting of the others.
	t.Parallel()
	d := deploy(t, setup{})
	const room, total = "older", 650
	d.post(t, room, "zed", "message 1") // creates the database
	// Seed as from the shell, quickly: messages 2 to 650, the first 300 of
	// them yesterday.
	d.exec(t, `WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 650)
		INSERT INTO messages (room, nick, text, created_at)
		SELECT 'older', 'zed', 'message ' || i,
			strftime('%Y-%m-%dT%H:%M:%fZ', 'now', CASE WHEN i <= 300 THEN '-1 day' ELSE '+0 seconds' END) FROM n`)
	d.exec(t, `UPDATE messages SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day') WHERE id = 1`)
	all := numbered("zed", "message", total)

	tb := newPerson(t, "reader").open(d.URL + "#" + room)
	tb.waitMessages(50) // CHAT_HISTORY
	tb.axe("the log before earlier messages are loaded")

	pages := readBackToTheBeginning(t, tb, room)
	checkLog(t, tb, all)
	t.Logf("read back to the beginning in %d pages", pages)
	// One line for each day: yesterday's above message 1, today's above
	// message 301.
	days := eval[[]int64](tb, `[...document.querySelectorAll("#log > .day")].map((d) => {
		let n = d.nextElementSibling;
		while (n !== null && !n.classList.contains("msg")) n = n.nextElementSibling;
		return n === null ? 0 : Number(n.dataset.id);
	})`)
	if fmt.Sprint(days) != "[1 301]" {
		t.Errorf("the log has day lines above messages %v, want [1 301]", days)
	}
	// Each request asked for the messages before the first one shown.
	shownFrom := map[string]bool{}
	for _, m := range tb.messages() {
		shownFrom[strconv.FormatInt(m.ID, 10)] = true
	}
	for _, r := range d.requests.older(room) {
		if !shownFrom[r.Query.Get("before")] || r.Query.Get("limit") != "100" {
			t.Errorf("a request for older messages asked before=%s&limit=%s, want the id of a message shown and 100", r.Query.Get("before"), r.Query.Get("limit"))
		}
		if r.Accept != "application/json" {
			t.Errorf("a request for older messages accepts %q, want application/json", r.Accept)
		}
	}
	tb.axe("the log read back to its beginning")
	tb.screenshot("older-history", 900, 480, false)

	t.Run("the bound drops them, and they come back", func(t *testing.T) {
		bound, chunk := chatConst(t, "logBound"), chatConst(t, "trimChunk")
		tb.do("scroll to the newest", chromedp.Evaluate[chromedp.Void](`document.querySelector("#scroller").scrollTop = document.querySelector("#scroller").scrollHeight`))
		tb.waitFor("the log to keep to its bound", fmt.Sprintf(`document.querySelectorAll("#log .msg").length <= %d`, bound), waitTimeout)
		kept := tb.messages()
		if want := total - (total - bound + chunk); len(kept) != want {
			t.Errorf("at the bottom the log keeps %d messages, want %d", len(kept), want)
		}
		checkLog(t, tb, all[total-len(kept):])
		if got, want := tb.topOfLog(), "Earlier messages are not shown here. Show earlier messages"; got != want {
			t.Errorf("the top of the log says %q, want %q", got, want)
		}
		start := time.Now()
		readBackToTheBeginning(t, tb, room)
		t.Logf("back to the beginning in %s", time.Since(start).Round(time.Millisecond))
		checkLog(t, tb, all)
	})

	t.Run("a new message goes below, not above", func(t *testing.T) {
		tb.scrollUp()
		m := d.post(t, room, "amy", "a new one while reading old ones")
		tb.waitFor("the new message", fmt.Sprintf(`document.querySelector('#log .msg[data-id="%d"]') !== null`, m.ID), waitTimeout)
		if got := eval[int64](tb, `Number([...document.querySelectorAll("#log .msg")].at(-1).dataset.id)`); got != m.ID {
			t.Errorf("the last message of the log is %d, want the new one, %d", got, m.ID)
		}
		if got := eval[string](tb, `document.querySelector("#jump").textContent`); got != "1 new message ↓" {
			t.Errorf("the new-messages button says %q, want %q", got, "1 new message ↓")
		}
	})
}

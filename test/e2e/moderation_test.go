package e2e

import (
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// queryInt runs a query that returns one number on the deployment's
// database, as a moderator would look something up in the sqlite3 shell.
func (d *deployment) queryInt(t *testing.T, query string, args ...any) int64 {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+d.DB+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("sqlite3 %s: %s: %v", d.DB, query, err)
	}
	return n
}

// noteRemoval makes the tab note the time (Date.now(), the machine's clock)
// when the message with id leaves its log, in window.removedAt.
func (tb *tab) noteRemoval(id int64) {
	tb.t.Helper()
	eval[bool](tb, fmt.Sprintf(`(() => {
		window.removedAt = 0;
		const gone = () => document.querySelector('#log .msg[data-id="%d"]') === null;
		new MutationObserver((_, o) => {
			if (gone()) {
				window.removedAt = Date.now();
				o.disconnect();
			}
		}).observe(document.querySelector("#log"), { childList: true });
		return !gone();
	})()`, id))
}

// TestDeletion: a moderator deletes a message with one SQL statement in
// the database; within a second it leaves every open page — two browsers,
// one with two tabs sharing a stream — and the other messages stay. The
// deletion moves the stream's resume point past it, and a page opened
// afterwards never shows the message.
func TestDeletion(t *testing.T) {
	d := deploy(t, setup{})
	// Enough earlier messages that the log scrolls.
	earlier := numbered("zed", "earlier", 30)
	for _, l := range earlier {
		d.post(t, "mod", l.Nick, l.Text)
	}
	posted := []line{{"zed", "first"}, {"troll", "this one is deleted"}, {"yan", "third"}}
	var ids []int64
	for _, l := range posted {
		ids = append(ids, d.post(t, "mod", l.Nick, l.Text).ID)
	}
	posted = append(earlier, posted...)
	url := d.URL + "#mod"
	ann := newPerson(t, "ann")
	annLeader := ann.open(url) // alone, so it holds the stream
	annFollower := ann.open(url)
	bo := newPerson(t, "bo").open(url)
	tabs := []*tab{annLeader, annFollower, bo}
	for _, tb := range tabs {
		tb.waitMessages(len(posted))
		checkLog(t, tb, posted)
		tb.noteRemoval(ids[1])
	}

	start := time.Now()
	d.exec(t, `DELETE FROM messages WHERE id = ?`, ids[1])
	want := slices.Concat(earlier, []line{posted[30], posted[32]})
	for _, tb := range tabs {
		tb.waitFor("the deleted message to leave the log", `window.removedAt > 0`, waitTimeout)
		took := time.UnixMilli(int64(eval[float64](tb, `window.removedAt`))).Sub(start)
		t.Logf("%s: the deleted message left the page %s after the DELETE began", tb.name, took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("%s: the deleted message left the page %s after the DELETE, want within 1 s", tb.name, took.Round(time.Millisecond))
		}
		checkLog(t, tb, want)
	}

	// The deletion is an event with an id of its own (the tombstone's):
	// a tab taking the stream over resumes after it, not before.
	tombstone := d.queryInt(t, `SELECT max(id) FROM messages`)
	if tombstone <= ids[2] {
		t.Fatalf("the newest row after the DELETE has id %d, want a tombstone after %d", tombstone, ids[2])
	}
	before := len(d.requests.streams("mod"))
	annLeader.close()
	deadline := time.Now().Add(waitTimeout)
	for len(d.requests.streams("mod")) == before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	streams := d.requests.streams("mod")
	if len(streams) != before+1 {
		t.Fatalf("after the leader tab closed: %d stream requests, want %d", len(streams), before+1)
	}
	if got, want := streams[len(streams)-1].Query.Get("lastEventId"), strconv.FormatInt(tombstone, 10); got != want {
		t.Errorf("the new leader resumed with lastEventId=%s, want the deletion's id %s", got, want)
	}

	// Later messages show as usual, and a reloaded page has no trace of
	// the deleted one.
	want = append(want, line{"zed", "after the deletion"})
	d.post(t, "mod", "zed", want[len(want)-1].Text)
	for _, tb := range []*tab{annFollower, bo} {
		tb.waitMessages(len(want))
		checkLog(t, tb, want)
	}
	bo.goTo(url)
	bo.waitMessages(len(want))
	checkLog(t, bo, want)

	t.Run("a deleted new message is no longer counted as new", func(t *testing.T) {
		bo.do("scroll up", chromedp.Evaluate[chromedp.Void](`document.querySelector("#scroller").scrollTop = 0`))
		a := d.post(t, "mod", "troll", "new while scrolled up, deleted")
		b := d.post(t, "mod", "zed", "new while scrolled up, kept")
		bo.waitMessages(len(want) + 2)
		jump := `document.querySelector("#jump").hidden ? "(hidden)" : document.querySelector("#jump").textContent`
		marker := `document.querySelector(".first-unseen")?.dataset.id ?? ""`
		if got := eval[string](bo, jump); got != "2 new messages ↓" {
			t.Fatalf("the new-messages button says %q, want %q", got, "2 new messages ↓")
		}
		d.exec(t, `DELETE FROM messages WHERE id = ?`, a.ID)
		bo.waitMessages(len(want) + 1)
		bo.waitFor("the message to go", fmt.Sprintf(`document.querySelector('#log .msg[data-id="%d"]') === null`, a.ID), waitTimeout)
		if got, w := eval[string](bo, jump), "1 new message ↓"; got != w {
			t.Errorf("after the deletion the button says %q, want %q", got, w)
		}
		if got, w := eval[string](bo, marker), strconv.FormatInt(b.ID, 10); got != w {
			t.Errorf("the new-messages line is above message %q, want %q", got, w)
		}
		d.exec(t, `DELETE FROM messages WHERE id = ?`, b.ID)
		bo.waitFor("the button to go", `document.querySelector("#jump").hidden`, waitTimeout)
		checkLog(t, bo, want)
		if got := eval[float64](bo, `document.querySelector("#scroller").scrollTop`); got != 0 {
			t.Errorf("the deletions moved the log to %v, want it kept at the top", got)
		}
	})
}

// presence returns the nicks the page lists as in the room, or nil while
// it lists none.
func (tb *tab) presence() []string {
	tb.t.Helper()
	return eval[[]string](tb, `document.querySelector("#presence").hidden ? null :
		[...document.querySelectorAll("#presence-list .presence-nick")].map((e) => e.textContent)`)
}

// waitPresence waits until the page shows its presence line, listing
// exactly nicks as in the room.
func (tb *tab) waitPresence(within time.Duration, nicks ...string) {
	tb.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := tb.presence()
		if got != nil && slices.Equal(got, nicks) {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: waited %s for the room to list %q; it lists %q (%q)", tb.name, within, nicks, got,
				eval[string](tb, `document.querySelector("#presence").textContent`))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chooseNick sets the nickname with the nick button's dialog.
func (tb *tab) chooseNick(nick string) {
	tb.t.Helper()
	tb.do("choose the nickname "+nick, chromedp.Click(chromedp.ID("nick-button")),
		chromedp.SetValue(chromedp.ID("nick-input"), nick), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
}

// TestPresence: the header lists who reads the room with a nickname, in
// every browser and every tab; someone who picks a nickname appears, and
// someone who leaves is gone after a while (with a 1 s heartbeat, a closed
// stream is noticed within a second or two and stays listed about 8 s so
// that reconnects do not blink).
func TestPresence(t *testing.T) {
	// Mostly waiting: runs beside the other parallel tests.
	t.Parallel()
	d := deploy(t, setup{env: []string{"CHAT_HEARTBEAT_SECONDS=1"}})
	url := d.URL + "#here"
	ada := newPerson(t, "ada")
	adaTab := ada.open(url)
	adaTab.waitPresence(waitTimeout) // a reader without a nickname is not listed
	if got, want := eval[string](adaTab, `document.querySelector("#presence").textContent`), "In the room: no one with a nickname yet"; got != want {
		t.Errorf("an empty room says %q, want %q", got, want)
	}
	adaTab.chooseNick("ada")
	adaTab.waitPresence(waitTimeout, "ada")

	bob := newPerson(t, "bob").open(url)
	bob.chooseNick("bob")
	adaFollower := ada.open(url) // shares ada's stream
	for _, tb := range []*tab{adaTab, adaFollower, bob} {
		tb.waitPresence(waitTimeout, "ada", "bob")
	}
	if got, want := eval[string](bob, `document.querySelector("#presence").textContent`), "In the room (2): ada, bob"; got != want {
		t.Errorf("the presence line says %q, want %q", got, want)
	}
	if got := eval[[]string](bob, `[...document.querySelectorAll("#presence .self")].map((e) => e.textContent)`); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("the page marks %q as its own nick in the list, want [bob]", got)
	}
	// One stream per browser, each reopened under its reader's nickname.
	for _, nick := range []string{"ada", "bob"} {
		n := 0
		for _, r := range d.requests.streams("here") {
			if r.Query.Get("nick") == nick {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d stream requests with nick=%s, want 1", n, nick)
		}
	}

	bob.close()
	left := time.Now()
	for _, tb := range []*tab{adaTab, adaFollower} {
		tb.waitPresence(30*time.Second, "ada")
	}
	t.Logf("bob left the list %s after closing the page", time.Since(left).Round(100*time.Millisecond))
}

// TestTrimmedNotice: a page whose stream comes back after retention
// removed messages it never received says so in its log — once, in every
// tab, where the gap is — and shows what is left. Retention runs during
// normal operation: the post that gets id 100 prunes the room to its
// newest CHAT_KEEP_MESSAGES.
func TestTrimmedNotice(t *testing.T) {
	d := deploy(t, setup{env: []string{"CHAT_KEEP_MESSAGES=3", "CHAT_STREAM_SECONDS=1"}})
	d.post(t, "old", "zed", "message 1") // creates the database
	// Seed as from the shell, quickly: messages 2 to 90.
	d.exec(t, `WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 90)
		INSERT INTO messages (room, nick, text, created_at)
		SELECT 'old', 'zed', 'message ' || i, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM n`)
	url := d.URL + "#old"
	cy := newPerson(t, "cy")
	tabs := []*tab{cy.open(url), cy.open(url)} // a leader and a follower
	for _, tb := range tabs {
		tb.waitMessages(50) // CHAT_HISTORY: messages 41 to 90
	}

	// The stream goes away (it ends every second and cannot come back),
	// and meanwhile the room goes on to message 100, which prunes it.
	tabs[0].expectConsoleError("ERR_EMPTY_RESPONSE")
	d.streamDown.Store(true)
	tabs[0].waitFor("the page to say it reconnects", `document.querySelector("#state").textContent === "Reconnecting…"`, waitTimeout)
	for i := 91; i <= 100; i++ {
		d.post(t, "old", "zed", fmt.Sprintf("message %d", i))
	}
	if got := d.queryInt(t, `SELECT min(id) FROM messages WHERE room = 'old'`); got != 98 {
		t.Fatalf("after message 100 the oldest message kept is %d, want 98 (CHAT_KEEP_MESSAGES=3)", got)
	}
	d.streamDown.Store(false)

	want := numbered("zed", "message", 100)
	want = append(want[40:90], want[97:]...)
	for _, tb := range tabs {
		tb.waitMessages(len(want))
		tb.waitLive()
		checkLog(t, tb, want)
	}
	// Let the stream reconnect once more (after message 100 now), then
	// look: one notice, between the last message received and the rest.
	n := len(d.requests.streams("old"))
	deadline := time.Now().Add(waitTimeout)
	for len(d.requests.streams("old")) <= n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	const notice = "Some messages from while this page was away are no longer kept by this chat (it keeps only recent ones), so they are missing here."
	for _, tb := range tabs {
		got := eval[[]string](tb, `[...document.querySelectorAll("#log > li")].map((li) =>
			li.classList.contains("msg") ? li.querySelector(".text").textContent : li.className + ": " + li.textContent)
			.filter((s) => !s.startsWith("day: "))`)
		wantLog := []string{}
		for _, l := range want[:50] {
			wantLog = append(wantLog, l.Text)
		}
		wantLog = append(wantLog, "notice trimmed: "+notice, "message 98", "message 99", "message 100")
		if !slices.Equal(got, wantLog) {
			t.Errorf("%s: the log reads\n%q\nwant\n%q", tb.name, got, wantLog)
		}
	}
	tabs[1].screenshot("trimmed-360px", 360, 640, false)
}

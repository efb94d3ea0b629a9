package e2e

import (
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	bo.reload()
	bo.waitMessages(len(want))
	checkLog(t, bo, want)

	t.Run("a deleted new message is no longer counted as new", func(t *testing.T) {
		bo.do("scroll up", chromedp.Evaluate[chromedp.Void](`document.querySelector("#scroller").scrollTop = 0`))
		// At the top, the page learns that the room begins there, and
		// says so above the first message, keeping the reader's place.
		bo.waitFor("the beginning of the room", `document.querySelector("#log > .top").classList.contains("beginning")`, waitTimeout)
		place := eval[float64](bo, `document.querySelector("#scroller").scrollTop`)
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
		if got := eval[float64](bo, `document.querySelector("#scroller").scrollTop`); got != place {
			t.Errorf("the deletions moved the log to %v, want it kept at %v", got, place)
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
	// The dialog asks the chat about the nick first.
	tb.waitShowing("the nickname dialog to close", `!document.querySelector("#nick-dialog").open`, waitTimeout, nickDialogShows)
}

// nickDialogShows says what the nickname dialog holds and says, and whether
// the tab is in front: what a failed wait on the dialog reports.
const nickDialogShows = `(() => {
	try {
		const input = document.querySelector("#nick-input");
		return "the dialog: " + JSON.stringify({
			visibility: document.visibilityState,
			focused: document.activeElement?.id ?? "",
			value: input.value,
			validation: input.validationMessage,
			status: document.querySelector("#nick-status").textContent,
			why: document.querySelector("#nick-why").textContent,
		});
	} catch (e) {
		return "the dialog could not be read: " + e;
	}
})()`

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
		got := eval[[]string](tb, `[...document.querySelectorAll("#log > li:not(.top)")].map((li) =>
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

// moderatorKey makes a moderator key labelled label for the deployment's
// database as its operator would over SSH (post -moderator-key), and
// returns it.
func (d *deployment) moderatorKey(t *testing.T, label string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "post"), "-moderator-key", label)
	cmd.Env = append(os.Environ(), "CHAT_DB="+d.DB)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("post -moderator-key %s: %v\n%s", label, err, out)
	}
	key := regexp.MustCompile(`cgmk_\S+`).Find(out)
	if key == nil {
		t.Fatalf("post -moderator-key %s printed no key:\n%s", label, out)
	}
	return string(key)
}

// messageID returns the id of the message of tb's log whose text is text.
func (tb *tab) messageID(text string) int64 {
	tb.t.Helper()
	for _, m := range tb.messages() {
		if m.Text == text {
			return m.ID
		}
	}
	tb.t.Fatalf("%s: no message %q in the log", tb.name, text)
	return 0
}

// messageAction returns what the button on message id offers ("mod",
// "own"), or "" when it has none.
func (tb *tab) messageAction(id int64) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf(`document.querySelector('#log .msg[data-id="%d"] .msg-act')?.dataset.kind ?? ""`, id))
}

// openActions clicks the button on message id and waits for its dialog.
func (tb *tab) openActions(id int64) {
	tb.t.Helper()
	tb.do("open the message's actions", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#log .msg[data-id="%d"] .msg-act`, id))))
	tb.waitFor("the message's actions", `document.querySelector("#act-dialog").open`, waitTimeout)
}

// TestModeratingFromThePage: a moderator enters the key made over SSH
// once (the page keeps no trace of it: not in the address, the page's text,
// a field or storage), and every message then offers what a moderator
// does. A deletion leaves two other browsers' pages within a second; a
// ban of the nick refuses its next message; a ban of the address refers to
// a message and shows no address; a released nick is free again; the
// moderation log lists it all. Logged out, the offers go.
func TestModeratingFromThePage(t *testing.T) {
	d := deploy(t, setup{})
	const room = "moderated"
	url := d.URL + "#" + room
	key := d.moderatorKey(t, "alice")
	troll := newPerson(t, "troll").open(url)
	troll.say("troll", "buy cheap stuff at example.com")
	bo := newPerson(t, "bo").open(url)
	bo.say("bo", "hello, anyone?")
	cy := newPerson(t, "cy").open(url)
	alice := newPerson(t, "alice").open(url)
	for _, tb := range []*tab{troll, bo, cy, alice} {
		tb.waitMessages(2)
	}
	spam := alice.messageID("buy cheap stuff at example.com")
	hello := alice.messageID("hello, anyone?")
	if got := alice.messageAction(spam); got != "" {
		t.Errorf("before logging in, a reader's page offers %q on another's message", got)
	}

	t.Run("logging in", func(t *testing.T) {
		alice.do("open Moderate", chromedp.Click(chromedp.ID("mod-button")))
		alice.waitFor("the dialog", `document.querySelector("#mod-dialog").open`, waitTimeout)
		alice.axe("the Moderate dialog")
		alice.typeInto("#mod-key", key)
		alice.do("log in", chromedp.Click(chromedp.ID("mod-submit")))
		alice.waitFor("the session", `document.querySelector("#mod-button").textContent === "Moderating as alice"`, waitTimeout)
		alice.waitFor("the dialog to close", `!document.querySelector("#mod-dialog").open`, waitTimeout)
		for _, id := range []int64{spam, hello} {
			if got := alice.messageAction(id); got != "mod" {
				t.Errorf("message %d offers %q to the moderator, want mod", id, got)
			}
		}
		type traces struct{ URL, Text, Fields, Storage, Cookie string }
		got := eval[traces](alice, `({
			url: location.href,
			text: document.documentElement.textContent + document.documentElement.innerText,
			fields: [...document.querySelectorAll("input, textarea")].map((e) => e.value).join(" "),
			storage: JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }),
			cookie: document.cookie,
		})`)
		for what, s := range map[string]string{"address": got.URL, "text": got.Text, "fields": got.Fields, "storage": got.Storage, "cookies a script can read": got.Cookie} {
			if strings.Contains(s, key) || strings.Contains(s, key[5:]) {
				t.Errorf("after logging in, the key is in the page's %s", what)
			}
		}
		if strings.Contains(got.Cookie, "cgichat_mod") {
			t.Errorf("a script can read the moderator's cookie: %q", got.Cookie)
		}
		for _, r := range append(d.requests.to("cgi-bin/post"), d.requests.to("cgi-bin/stream")...) {
			if strings.Contains(r.Query.Encode(), key[5:]) {
				t.Errorf("the key went in the address of a request to %s", r.Path)
			}
		}
		alice.axe("a moderator's page")
		alice.screenshot("moderator", 900, 480, false)
	})

	t.Run("a deletion reaches every page within a second", func(t *testing.T) {
		for _, tb := range []*tab{bo, cy, troll} {
			tb.noteRemoval(spam)
		}
		alice.openActions(spam)
		alice.axe("a message's actions for a moderator")
		alice.screenshot("moderating-a-message-360px", 360, 640, false)
		if got := eval[string](alice, `document.querySelector("#act-quote").textContent`); got != "buy cheap stuff at example.com" {
			t.Errorf("the dialog quotes %q", got)
		}
		eval[bool](alice, `(() => {
			window.clickedAt = 0;
			document.querySelector("#act-delete").addEventListener("click", () => { window.clickedAt = Date.now(); }, { capture: true, once: true });
			return true;
		})()`)
		alice.do("delete", chromedp.Click(chromedp.ID("act-delete")))
		alice.waitFor("the message to go", fmt.Sprintf(`document.querySelector('#log .msg[data-id="%d"]') === null`, spam), waitTimeout)
		// The deletion's event can come before the answer to the
		// moderator's request, which says it (for 10 s).
		alice.waitShowing("the page to say the deletion", `document.querySelector("#done").textContent === "Deleted the message from troll."`,
			waitTimeout, `document.querySelector("#done").textContent`)
		clicked := eval[float64](alice, `window.clickedAt`)
		for _, tb := range []*tab{bo, cy, troll} {
			tb.waitFor("the deleted message to leave the log", `window.removedAt > 0`, waitTimeout)
			took := time.Duration(eval[float64](tb, `window.removedAt`)-clicked) * time.Millisecond
			t.Logf("%s: the message left the page %s after the moderator's click", tb.name, took)
			if took > time.Second {
				t.Errorf("%s: the message left the page %s after the click, want within 1 s", tb.name, took)
			}
			checkLog(t, tb, []line{{"bo", "hello, anyone?"}})
		}
	})

	t.Run("a ban of the nick", func(t *testing.T) {
		troll.say("", "I am back")
		alice.waitMessages(2)
		back := alice.messageID("I am back")
		alice.openActions(back)
		alice.do("ban the nick for an hour", chromedp.Click(chromedp.CSS(`#act-dialog [data-action="ban-nick"][data-for="hour"]`)))
		alice.waitFor("the ban", `document.querySelector("#done").textContent === "Banned the nickname troll for an hour."`, waitTimeout)
		troll.expectConsoleError("status of 403")
		troll.typeText("still here?")
		troll.pressEnter()
		troll.waitFor("the refusal", `document.querySelector("#send-error").textContent.includes("(HTTP 403)")`, waitTimeout)
		if got := eval[string](troll, `document.querySelector("#text").value`); got != "still here?" {
			t.Errorf("after the ban the box holds %q, want the text back", got)
		}
		t.Logf("the banned nick is told %q", troll.sendError())
	})

	t.Run("a ban of the address", func(t *testing.T) {
		alice.openActions(hello)
		if got := eval[string](alice, `document.querySelector("#act-dialog").textContent`); strings.Contains(got, "127.0.0.1") {
			t.Errorf("the dialog shows the address: %q", got)
		}
		alice.do("ban the address for a day", chromedp.Click(chromedp.CSS(`#act-dialog [data-action="ban-address"][data-for="day"]`)))
		alice.waitFor("the ban", `document.querySelector("#done").textContent !== "" && document.querySelector("#done").textContent.startsWith("Banned the address")`, waitTimeout)
		// Every browser here is 127.0.0.1: anyone's post is refused now.
		status, body, err := d.postRaw(room, "dee", "from bo's address")
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusForbidden {
			t.Errorf("a post from the banned address gets %d %s, want 403", status, body)
		}
		d.exec(t, `DELETE FROM address_bans`) // the shell's way, so that the test goes on
	})

	t.Run("a released nick", func(t *testing.T) {
		alice.openActions(hello)
		alice.do("release the nick", chromedp.Click(chromedp.CSS(`#act-dialog [data-action="release-nick"]`)))
		alice.waitFor("the release", `document.querySelector("#done").textContent.startsWith("Released the nickname bo")`, waitTimeout)
		cy.do("open the nickname dialog", chromedp.Click(chromedp.ID("nick-button")))
		if got, want := cy.nickStatus("bo"), "Free: “bo” becomes yours with your first message."; got != want {
			t.Errorf("after the release the dialog says %q, want %q", got, want)
		}
		cy.do("cancel", chromedp.Click(chromedp.ID("nick-cancel")))
	})

	t.Run("the moderation log", func(t *testing.T) {
		alice.do("open Moderate", chromedp.Click(chromedp.ID("mod-button")))
		alice.do("open the log", chromedp.Click(chromedp.ID("mod-log-button")))
		alice.waitFor("the log", `document.querySelector("#modlog-dialog").open && document.querySelectorAll("#modlog li").length >= 4`, waitTimeout)
		lines := eval[[]string](alice, `[...document.querySelectorAll("#modlog li")].map((li) => li.textContent.replace(/^.*?\d\d:\d\d:\d\d /, ""))`)
		want := []string{
			"alice released the nickname bo.",
			fmt.Sprintf("alice banned the address that sent message %d (bo): ", hello),
			"alice banned the nickname troll (of message ",
			fmt.Sprintf("alice deleted message %d (troll).", spam),
		}
		if len(lines) < len(want) {
			t.Fatalf("the moderation log reads %q, want %d lines at least", lines, len(want))
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("line %d of the moderation log reads %q, want %q…", i, lines[i], w)
			}
		}
		for _, l := range lines {
			if strings.Contains(l, "127.0.0.1") {
				t.Errorf("the moderation log shows an address: %q", l)
			}
		}
		alice.axe("the moderation log")
		alice.screenshot("moderation-log-360px", 360, 640, false)
		alice.do("close", chromedp.Click(chromedp.ID("modlog-close")))
	})

	t.Run("logging out", func(t *testing.T) {
		alice.do("open Moderate", chromedp.Click(chromedp.ID("mod-button")))
		alice.do("log out", chromedp.Click(chromedp.ID("mod-logout")))
		alice.waitFor("the end of the session", `document.querySelector("#mod-button").textContent === "Moderate"`, waitTimeout)
		if got := alice.messageAction(hello); got != "" {
			t.Errorf("logged out, the page still offers %q", got)
		}
		alice.reload()
		if got := eval[string](alice, `document.querySelector("#mod-button").textContent`); got != "Moderate" {
			t.Errorf("after a reload the button says %q, want Moderate", got)
		}
	})
}

// TestDeletingOwnMessage: a reader's own recent messages offer Delete, and
// only theirs; the deletion leaves every page. Another's message cannot
// be deleted (the chat says 403), and a message older than the window no
// longer offers it.
func TestDeletingOwnMessage(t *testing.T) {
	// No timing of its own: runs beside the waiting of the others.
	t.Parallel()
	d := deploy(t, setup{})
	const room = "own"
	url := d.URL + "#" + room
	ann := newPerson(t, "ann").open(url)
	bo := newPerson(t, "bo").open(url)
	ann.say("ann", "oops, wrong room")
	bo.say("bo", "hi ann")
	for _, tb := range []*tab{ann, bo} {
		tb.waitMessages(2)
	}
	oops, hi := ann.messageID("oops, wrong room"), ann.messageID("hi ann")
	ann.waitFor("the offer", fmt.Sprintf(`document.querySelector('#log .msg[data-id="%d"] .msg-act') !== null`, oops), waitTimeout)
	for _, c := range []struct {
		tb   *tab
		id   int64
		want string
	}{{ann, oops, "own"}, {ann, hi, ""}, {bo, hi, "own"}, {bo, oops, ""}} {
		if got := c.tb.messageAction(c.id); got != c.want {
			t.Errorf("%s's page offers %q on message %d, want %q", c.tb.name, got, c.id, c.want)
		}
	}
	ann.axe("one's own message, with Delete")

	bo.noteRemoval(oops)
	ann.openActions(oops)
	if got := eval[string](ann, `document.querySelector("#act-own").textContent`); !regexp.MustCompile(`^You can delete your own messages for 10 minutes after sending them: this one until \d\d:\d\d\.$`).MatchString(got) {
		t.Errorf("the dialog says %q", got)
	}
	if eval[bool](ann, `document.querySelector("#act-mod").hidden === false`) {
		t.Errorf("a reader is offered a moderator's actions")
	}
	ann.axe("deleting one's own message")
	ann.do("delete", chromedp.Click(chromedp.ID("act-delete")))
	bo.waitFor("the message to go", `window.removedAt > 0`, waitTimeout)
	for _, tb := range []*tab{ann, bo} {
		tb.waitMessages(1)
		checkLog(t, tb, []line{{"bo", "hi ann"}})
	}

	// Another's message: the chat refuses, whatever the page offers.
	ann.expectConsoleError("status of 403")
	type answer struct {
		Status int
		Error  string
	}
	got := eval[answer](ann, fmt.Sprintf(`fetch("cgi-bin/post", { method: "POST", headers: { "Content-Type": "application/json" },
		body: JSON.stringify({ action: "delete", id: %d }) }).then(async (r) => ({ status: r.status, error: (await r.json()).error }))`, hi))
	if got.Status != http.StatusForbidden {
		t.Errorf("deleting another's message: %+v, want 403", got)
	}
	t.Logf("deleting another's message: %+v", got)
	time.Sleep(500 * time.Millisecond)
	checkLog(t, bo, []line{{"bo", "hi ann"}})

	// Past the window, no offer.
	d.exec(t, `UPDATE messages SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-11 minutes') WHERE id = ?`, hi)
	bo.reload()
	bo.waitMessages(1)
	if got := bo.messageAction(hi); got != "" {
		t.Errorf("an 11 minutes old message of one's own offers %q, want nothing", got)
	}
}

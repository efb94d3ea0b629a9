package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// atBottom is true when the log is scrolled to its newest message.
const atBottom = `(() => {
	const s = document.querySelector("#scroller");
	return s.scrollHeight - s.scrollTop - s.clientHeight < 2;
})()`

// TestReadingWhileMessagesArrive: the log follows new messages only while
// the reader is at the bottom; scrolled up, the place is kept and a button
// says how many new messages are below. While the tab is hidden, the title
// counts unread messages.
func TestReadingWhileMessagesArrive(t *testing.T) {
	d := deploy(t, setup{})
	want := numbered("zed", "earlier message", 40)
	for _, l := range want {
		d.post(t, "busy", l.Nick, l.Text)
	}
	reader := newPerson(t, "reader")
	tb := reader.openTab(chromedp.WithNewWindow(false))
	tb.goTo(d.URL + "#busy")
	tb.waitMessages(len(want))
	if !eval[bool](tb, atBottom) {
		t.Errorf("the page opens away from the newest message")
	}

	t.Run("at the bottom it follows", func(t *testing.T) {
		want = append(want, line{"zed", "one more"})
		d.post(t, "busy", "zed", "one more")
		tb.waitMessages(len(want))
		if !eval[bool](tb, atBottom) {
			t.Errorf("a new message arrived at the bottom and the log did not follow it")
		}
		if eval[bool](tb, `!document.querySelector("#jump").hidden`) {
			t.Errorf("the new-messages button shows while the reader is at the bottom")
		}
	})

	t.Run("scrolled up it keeps the place", func(t *testing.T) {
		tb.do("scroll up", chromedp.Evaluate[chromedp.Void](`document.querySelector("#scroller").scrollTop = 0`))
		// At the top, the page learns that the room begins there, and
		// says so above the first message, keeping the reader's place.
		tb.waitFor("the beginning of the room", `document.querySelector("#log > .top").classList.contains("beginning")`, waitTimeout)
		place := eval[float64](tb, `document.querySelector("#scroller").scrollTop`)
		first := d.post(t, "busy", "zed", "new while scrolled up 1")
		d.post(t, "busy", "zed", "new while scrolled up 2")
		want = append(want, line{"zed", "new while scrolled up 1"}, line{"zed", "new while scrolled up 2"})
		tb.waitMessages(len(want))
		if got := eval[float64](tb, `document.querySelector("#scroller").scrollTop`); got != place {
			t.Errorf("the log scrolled to %v while the reader was at the top, at %v", got, place)
		}
		if got, want := eval[string](tb, `document.querySelector("#jump").hidden ? "(hidden)" : document.querySelector("#jump").textContent`), "2 new messages ↓"; got != want {
			t.Errorf("the new-messages button says %q, want %q", got, want)
		}
		if got, want := eval[string](tb, `document.querySelector(".first-unseen")?.dataset.id ?? ""`), strconv.FormatInt(first.ID, 10); got != want {
			t.Errorf("the new-messages line is above message %q, want %q", got, want)
		}
		tb.do("click the new-messages button", chromedp.Click(chromedp.ID("jump")))
		if !eval[bool](tb, atBottom) || !eval[bool](tb, `document.querySelector("#jump").hidden`) {
			t.Errorf("after the click on the button: at the bottom %v, button hidden %v; want both",
				eval[bool](tb, atBottom), eval[bool](tb, `document.querySelector("#jump").hidden`))
		}
		checkLog(t, tb, want)
	})

	t.Run("hidden, the title counts unread messages", func(t *testing.T) {
		// Another tab in front of it, in the same window, hides it.
		front := reader.openTab(chromedp.WithNewWindow(false))
		if got := eval[string](tb, `document.visibilityState`); got != "hidden" {
			t.Fatalf("behind another tab the page is %q, want hidden", got)
		}
		for i := range 3 {
			text := fmt.Sprintf("while away %d", i+1)
			d.post(t, "busy", "zed", text)
			want = append(want, line{"zed", text})
		}
		tb.waitMessages(len(want))
		if got, want := eval[string](tb, `document.title`), "(3) #busy · cgichat"; got != want {
			t.Errorf("hidden, the title is %q, want %q", got, want)
		}
		id := chromedp.FromContext(tb.ctx).Target.TargetID
		tb.do("bring the tab to the front", call(target.ActivateTarget, target.ActivateTargetParams{TargetID: id}))
		tb.waitFor("the tab to be visible", `document.visibilityState === "visible"`, waitTimeout)
		if got, want := eval[string](tb, `document.title`), "#busy · cgichat"; got != want {
			t.Errorf("visible again, the title is %q, want %q", got, want)
		}
		front.close()
	})
}

// TestRooms: the room comes from #room, else ?room=, else is the lobby;
// an invalid name is said to be one; the room form switches rooms.
func TestRooms(t *testing.T) {
	d := deploy(t, setup{})
	for _, room := range []string{"lobby", "dev", "ops"} {
		d.post(t, room, "zed", "hello "+room)
	}
	tb := newPerson(t, "reader").openTab()

	cases := []struct {
		name    string
		address string // after the page's folder
		room    string
		notice  string // a line at the top of the log
	}{
		{"no room", "", "lobby", ""},
		{"query", "?room=dev", "dev", ""},
		{"hash", "#ops", "ops", ""},
		{"hash before query", "index.html?room=dev#ops", "ops", ""},
		{"invalid", "index.html#no%20spaces", "lobby", "“no spaces” is not a room name (1 to 32 letters, digits, - or _), so this is #lobby."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb.goTo(d.URL + c.address)
			if got, want := eval[string](tb, `document.querySelector("#room-name").textContent`), "#"+c.room; got != want {
				t.Errorf("the header says %q, want %q", got, want)
			}
			if got, want := eval[string](tb, `document.title`), "#"+c.room+" · cgichat"; got != want {
				t.Errorf("the title is %q, want %q", got, want)
			}
			checkLog(t, tb, []line{{"zed", "hello " + c.room}})
			if got := eval[string](tb, `document.querySelector("#log > .notice:not(.top)")?.textContent ?? ""`); got != c.notice {
				t.Errorf("the notice says %q, want %q", got, c.notice)
			}
		})
	}

	t.Run("switch with the form", func(t *testing.T) {
		tb.goTo(d.URL + "#ops")
		tb.do("join dev", chromedp.SetValue(chromedp.ID("room-input"), "dev"), chromedp.Click(chromedp.CSS("#room-form button")))
		tb.waitFor("the room dev", `document.querySelector("#room-name").textContent === "#dev"`, waitTimeout)
		tb.waitLive()
		if got, want := eval[string](tb, `location.hash`), "#dev"; got != want {
			t.Errorf("the address ends in %q, want %q", got, want)
		}
		tb.waitMessages(1)
		want := []line{{"zed", "hello dev"}, {"reader", "sent in dev"}}
		tb.say("reader", want[1].Text)
		tb.waitMessages(2)
		checkLog(t, tb, want)
		// The message went to dev: a late joiner of dev sees it.
		other := newPerson(t, "other").open(d.URL + "#dev")
		other.waitMessages(2)
		checkLog(t, other, want)
	})
}

// TestComposing: the send button is off while the box is empty or while
// sending; the nickname can be changed, and a refused one is explained.
func TestComposing(t *testing.T) {
	gate := make(chan struct{})
	d := deploy(t, setup{postGate: gate})
	tb := newPerson(t, "erin").open(d.URL + "#compose")
	disabled := `document.querySelector("#send").disabled`

	for _, c := range []struct {
		text string
		want bool
	}{{"", true}, {"  \n ", true}, {"hi", false}} {
		tb.do("fill the box", chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = ""`))
		tb.typeText(c.text)
		if got := eval[bool](tb, disabled); got != c.want {
			t.Errorf("box %q: send disabled %v, want %v", c.text, got, c.want)
		}
	}
	tb.do("empty the box", chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = ""`))
	tb.typeText(" ")
	tb.pressEnter()
	if n := len(d.requests.messagePosts()); n != 0 {
		t.Errorf("Enter on white space made %d posts, want none", n)
	}

	// Cancelling the nickname dialog sends nothing and keeps the text.
	tb.do("empty the box", chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = ""`))
	tb.typeText("hello")
	tb.pressEnter()
	tb.waitFor("the nickname dialog", `document.querySelector("#nick-dialog").open`, waitTimeout)
	tb.screenshot("nickname-dialog-360px", 360, 640, false)
	tb.do("cancel", chromedp.Click(chromedp.ID("nick-cancel")))
	if got := eval[string](tb, `document.querySelector("#text").value`); got != "hello" {
		t.Errorf("after cancelling the nickname the box holds %q, want %q", got, "hello")
	}
	if n := len(d.requests.messagePosts()); n != 0 {
		t.Errorf("cancelling the nickname made %d posts, want none", n)
	}

	// A nickname of spaces is refused in the dialog, with the reason.
	tb.do("open the nickname dialog", chromedp.Click(chromedp.ID("nick-button")))
	tb.do("try spaces", chromedp.SetValue(chromedp.ID("nick-input"), "   "), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
	if got, want := eval[string](tb, `document.querySelector("#nick-input").validationMessage`), "Please choose a nickname."; got != want {
		t.Errorf("the dialog says %q for a nick of spaces, want %q", got, want)
	}
	tb.do("choose erin", chromedp.SetValue(chromedp.ID("nick-input"), " erin "), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
	tb.waitFor("the dialog to close", `!document.querySelector("#nick-dialog").open`, waitTimeout)
	if got := eval[string](tb, `document.querySelector("#nick-button").textContent`); got != "erin" {
		t.Errorf("the nick button says %q, want %q", got, "erin")
	}

	// While a post is on its way, the message shows under the log as
	// being sent, and the box is free for the next one.
	tb.pressEnter()
	deadline := time.Now().Add(waitTimeout)
	for len(d.requests.messagePosts()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got, want := tb.outbox(), []waitingLine{{"erin", "hello", "sending…"}}; !slices.Equal(got, want) {
		t.Errorf("while sending, the page shows %+v under the log, want %+v", got, want)
	}
	if got := eval[string](tb, `document.querySelector("#text").value`); got != "" || eval[bool](tb, `document.querySelector("#text").readOnly`) {
		t.Errorf("while sending, the box holds %q (read-only: %v), want it empty and free", got, eval[bool](tb, `document.querySelector("#text").readOnly`))
	}
	checkLog(t, tb, nil)
	close(gate)
	tb.waitMessages(1)
	checkLog(t, tb, []line{{"erin", "hello"}})
	tb.waitFor("the message to leave the outbox", `document.querySelectorAll("#outbox .pending").length === 0`, waitTimeout)

	// A new nickname is used from the next message on. The dialog of a
	// reader who holds a nick offers, once the chat said so, to take it
	// to another device, at its end, where it moves nothing above it.
	tb.do("rename", chromedp.Click(chromedp.ID("nick-button")))
	tb.waitFor("the offer to take erin to another device", `!document.querySelector("#give").hidden`, waitTimeout)
	tb.do("choose erin2", chromedp.SetValue(chromedp.ID("nick-input"), "erin2"), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
	tb.waitFor("the dialog to close", `!document.querySelector("#nick-dialog").open`, waitTimeout)
	tb.say("", "renamed")
	tb.waitMessages(2)
	checkLog(t, tb, []line{{"erin", "hello"}, {"erin2", "renamed"}})
	if got := eval[string](tb, `localStorage.getItem("cgichat.nick")`); got != "erin2" {
		t.Errorf("the stored nick is %q, want %q", got, "erin2")
	}
}

// TestLinks: format.js, run in the browser, makes links of http(s) URLs
// only, leaves every other character of the text as it was, and stops a
// URL before the punctuation that follows it in prose.
func TestLinks(t *testing.T) {
	d := deploy(t, setup{})
	tb := newPerson(t, "reader").open(d.URL)
	type link struct{ Href, Text string }
	cases := []struct {
		name string
		text string
		want []link
	}{
		{"plain", "see https://example.org/a", []link{{"https://example.org/a", "https://example.org/a"}}},
		{"http and a port", "http://127.0.0.1:8080/x y", []link{{"http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"}}},
		{"sentence end", "Read https://example.org/x.", []link{{"https://example.org/x", "https://example.org/x"}}},
		{"in parentheses", "(see https://example.org/y)", []link{{"https://example.org/y", "https://example.org/y"}}},
		{"parentheses inside", "https://en.wikipedia.org/wiki/Go_(game)!", []link{{"https://en.wikipedia.org/wiki/Go_(game)", "https://en.wikipedia.org/wiki/Go_(game)"}}},
		{"query and fragment", "https://example.org/?a=1&b=2#top", []link{{"https://example.org/?a=1&b=2#top", "https://example.org/?a=1&b=2#top"}}},
		{"two", "a http://a.example b https://b.example/c", []link{{"http://a.example/", "http://a.example"}, {"https://b.example/c", "https://b.example/c"}}},
		{"upper case", "HTTPS://EXAMPLE.ORG/A", []link{{"https://example.org/A", "HTTPS://EXAMPLE.ORG/A"}}},
		{"in markup", `<a href="https://x.example/p">x</a>`, []link{{"https://x.example/p", "https://x.example/p"}}},
		{"javascript", "javascript:alert(1)", nil},
		{"data", "data:text/html,<script>alert(1)</script>", nil},
		{"no host", "https:// and http://", nil},
		{"scheme inside a word", "xhttps://example.org", nil},
		{"ftp", "ftp://example.org/file", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			arg, err := json.Marshal(c.text)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				Text  string
				Links []link
				Other int // elements other than links
			}
			got := eval[result](tb, `(async () => {
				const { messageText } = await import("./format.js");
				const div = document.createElement("div");
				div.append(messageText(document, `+string(arg)+`));
				return {
					text: div.textContent,
					links: [...div.querySelectorAll("a")].map((a) => ({href: a.href, text: a.textContent})),
					other: div.querySelectorAll(":not(a)").length,
				};
			})()`)
			if got.Text != c.text {
				t.Errorf("the text reads %q, want it unchanged: %q", got.Text, c.text)
			}
			if fmt.Sprint(got.Links) != fmt.Sprint(c.want) {
				t.Errorf("links %+v, want %+v", got.Links, c.want)
			}
			if got.Other != 0 {
				t.Errorf("%d elements other than links, want 0", got.Other)
			}
		})
	}
}

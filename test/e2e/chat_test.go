package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// line is one message of a conversation: who said what.
type line struct {
	Nick, Text string
}

// checkLog fails t unless tb shows exactly want, in order, each once, with
// increasing ids and the time in the reader's time zone.
func checkLog(t *testing.T, tb *tab, want []line) {
	t.Helper()
	got := tb.messages()
	if len(got) != len(want) {
		t.Errorf("%s shows %d messages, want %d: %+v", tb.name, len(got), len(want), got)
	}
	zone, err := time.LoadLocation(readerTimezone)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got {
		if i < len(want) && (m.Nick != want[i].Nick || m.Text != want[i].Text) {
			t.Errorf("%s message %d: got %s: %q, want %s: %q", tb.name, i, m.Nick, m.Text, want[i].Nick, want[i].Text)
		}
		if i > 0 && m.ID <= got[i-1].ID {
			t.Errorf("%s message %d: id %d after id %d, want increasing ids", tb.name, i, m.ID, got[i-1].ID)
		}
		sent, err := time.Parse(time.RFC3339Nano, m.Time)
		if err != nil {
			t.Errorf("%s message %d: datetime %q: %v", tb.name, i, m.Time, err)
			continue
		}
		if g, w := m.Clock, sent.In(zone).Format("15:04"); g != w {
			t.Errorf("%s message %d sent at %s: shows time %q, want %q (%s)", tb.name, i, m.Time, g, w, readerTimezone)
		}
	}
}

// TestConversation: two people, each in a browser of their own, talk in
// one room; each sees every message once, in order. Someone who comes later
// sees the history. Screenshots of the page are written as artifacts.
func TestConversation(t *testing.T) {
	d := deploy(t, setup{})
	room := d.URL + "#team"
	alice := newPerson(t, "alice").open(room)
	bob := newPerson(t, "bob").open(room)

	conversation := []struct {
		who *tab
		line
	}{
		{alice, line{"alice", "Morning! Is the new chat deployed?"}},
		{bob, line{"bob", "Yes: post and stream are in cgi-bin/,\nthe page is in public/."}},
		{alice, line{"alice", "Nice. The notes are at https://example.org/deploy?run=42."}},
		{bob, line{"bob", "Reloading never loses a message: the stream resumes by Last-Event-ID."}},
	}
	var want []line
	asked := map[*tab]int{}
	for _, c := range conversation {
		if c.who.say(c.Nick, c.Text) {
			asked[c.who]++
		}
		want = append(want, c.line)
		// Both see it before the next is said, so the order of the
		// conversation is the order of the ids.
		alice.waitMessages(len(want))
		bob.waitMessages(len(want))
	}

	t.Run("the nickname is asked on the first send only", func(t *testing.T) {
		for _, tb := range []*tab{alice, bob} {
			if asked[tb] != 1 {
				t.Errorf("%s was asked for a nickname %d times in 2 sends, want once", tb.name, asked[tb])
			}
		}
	})

	t.Run("each sees both, once, in order", func(t *testing.T) {
		for _, tb := range []*tab{alice, bob} {
			checkLog(t, tb, want)
		}
	})

	t.Run("links are safe", func(t *testing.T) {
		type link struct{ Href, Text, Rel, Target string }
		wantLinks := []link{{"https://example.org/deploy?run=42", "https://example.org/deploy?run=42", "noopener noreferrer", "_blank"}}
		for _, tb := range []*tab{alice, bob} {
			got := eval[[]link](tb, `[...document.querySelectorAll("#log a")].map((a) =>
				({href: a.href, text: a.textContent, rel: a.rel, target: a.target}))`)
			if fmt.Sprint(got) != fmt.Sprint(wantLinks) {
				t.Errorf("%s: links %+v, want %+v", tb.name, got, wantLinks)
			}
		}
	})

	t.Run("a late joiner sees the history", func(t *testing.T) {
		carol := newPerson(t, "carol").open(room)
		carol.waitMessages(len(want))
		checkLog(t, carol, want)
	})

	t.Run("the nickname is remembered", func(t *testing.T) {
		alice.reload()
		if got := eval[string](alice, `document.querySelector("#nick-button").textContent`); got != "alice" {
			t.Errorf("after a reload the nick button says %q, want %q", got, "alice")
		}
		alice.typeText("Back again.")
		alice.pressEnter()
		if eval[bool](alice, `document.querySelector("#nick-dialog").open`) {
			t.Fatal("after a reload the page asks for the nickname again")
		}
		want = append(want, line{"alice", "Back again."})
		alice.waitMessages(len(want))
		bob.waitMessages(len(want))
		checkLog(t, alice, want)
		checkLog(t, bob, want)
	})

	t.Run("axe", func(t *testing.T) {
		bob.axe("a conversation")
		bob.do("open the nickname dialog", chromedp.Click(chromedp.ID("nick-button")))
		bob.axe("the nickname dialog")
		bob.do("cancel", chromedp.Click(chromedp.ID("nick-cancel")))
	})

	t.Run("screenshots", func(t *testing.T) {
		bob.screenshot("conversation", 900, 480, false)
		bob.screenshot("conversation-dark", 900, 480, true)
		bob.screenshot("conversation-360px", 360, 740, false)
		bob.screenshot("conversation-360px-dark", 360, 740, true)
	})
}

// TestMarkupShowsAsText: markup in a nick or a message is shown as the
// characters it is made of. It runs nothing (no dialog, no script), creates
// no element and loads nothing, for the sender and for a reader.
func TestMarkupShowsAsText(t *testing.T) {
	d := deploy(t, setup{})
	room := d.URL + "#markup"
	mallory := newPerson(t, "mallory").open(room)
	reader := newPerson(t, "reader").open(room)

	const nick = "<b>mallory</b>"
	texts := []string{
		`<img src=x onerror=alert(1)>`,
		`<script>window.pwned = true; alert(2)</script>`,
		`<a href="javascript:alert(3)">click</a> javascript:alert(4)`,
		`"><svg onload=alert(5)></svg> &lt;b&gt; <iframe src="x"></iframe>`,
	}
	var want []line
	for _, text := range texts {
		mallory.say(nick, text)
		want = append(want, line{nick, text})
	}
	for _, tb := range []*tab{mallory, reader} {
		tb.waitMessages(len(want))
		checkLog(t, tb, want)
		if n := eval[int](tb, `document.querySelectorAll("#log *:not(li, time, span, button.msg-act)").length`); n != 0 {
			t.Errorf("%s: the log holds %d elements other than li, time, span and the buttons of one's own messages, want 0", tb.name, n)
		}
		if ran := eval[bool](tb, `"pwned" in window`); ran {
			t.Errorf("%s: a script from a message ran", tb.name)
		}
	}
	// Dialogs would be reported when the tabs close; a loaded image would
	// be a request for x next to the page.
	if got := d.requests.to("x"); len(got) != 0 {
		t.Errorf("the browser requested %d times the x that a message names, want never", len(got))
	}
}

// TestRejectedPost: when the server refuses a message, the page shows the
// server's own sentence and status, and keeps the typed text for another
// try; nothing appears in the log.
func TestRejectedPost(t *testing.T) {
	d := deploy(t, setup{})
	tb := newPerson(t, "dana").open(d.URL + "#rejects")
	tb.say("dana", "This one is fine.")
	want := []line{{"dana", "This one is fine."}}
	tb.waitMessages(1)

	// (A text over 2,000 characters never reaches the server: the page
	// refuses it itself, see TestSmallThings.)
	cases := []struct {
		name   string
		text   string
		status int
	}{
		{"a control character", "ring the bell \a please", http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// What the server says to this post, asked directly.
			status, body, err := d.postRaw("rejects", "dana", c.text)
			if err != nil {
				t.Fatal(err)
			}
			if status != c.status {
				t.Fatalf("the server answers %d (%s), want %d", status, body, c.status)
			}
			var refusal struct{ Error string }
			if err := json.Unmarshal(body, &refusal); err != nil || refusal.Error == "" {
				t.Fatalf("the server's answer %s has no error sentence (%v)", body, err)
			}

			tb.expectConsoleError(fmt.Sprintf("status of %d", c.status))
			tb.do("empty the message box", chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = ""`))
			tb.typeText(c.text)
			tb.do("click Send", chromedp.Click(chromedp.ID("send")))
			tb.waitFor("the error of the post", fmt.Sprintf(`document.querySelector("#send-error").textContent.includes("(HTTP %d)")`, c.status), waitTimeout)
			wantError := fmt.Sprintf("Not sent: %s (HTTP %d)", refusal.Error, c.status)
			if got := eval[string](tb, `document.querySelector("#send-error").hidden ? "" : document.querySelector("#send-error").textContent`); got != wantError {
				t.Errorf("the page says %q, want %q", got, wantError)
			}
			if got := eval[string](tb, `document.querySelector("#text").value`); got != c.text {
				t.Errorf("after the refusal the message box holds %d characters, want the %d typed", len([]rune(got)), len([]rune(c.text)))
			}
			checkLog(t, tb, want)
		})
	}
}

// TestServerErrorShown: a stream the server refuses (here a deployment
// with a broken setting) leaves the page offline, counting down to its next
// try, with the server's sentence under the header; it tries again.
func TestServerErrorShown(t *testing.T) {
	d := deploy(t, setup{env: []string{"CHAT_HISTORY=lots"}})
	status, body, err := d.postRaw("lobby", "x", "y")
	if err != nil {
		t.Fatal(err)
	}
	var refusal struct{ Error string }
	if json.Unmarshal(body, &refusal); status != http.StatusInternalServerError || refusal.Error == "" {
		t.Fatalf("a post to a broken deployment answers %d %s, want 500 with an error sentence", status, body)
	}
	tb := newPerson(t, "reader").openTab()
	tb.expectConsoleError("status of 500")
	tb.do("load the page", chromedp.Navigate(d.URL))
	tb.waitFor("the server's error", `document.querySelector("#trouble-text").textContent.includes("(HTTP 500)")`, waitTimeout)
	if got := tb.state(); !offlineState.MatchString(got) {
		t.Errorf("the page says %q, want “Offline — trying again in N s”", got)
	}
	if got, want := tb.trouble(), refusal.Error+" (HTTP 500)"; got != want {
		t.Errorf("under the header the page says %q, want %q", got, want)
	}
	tb.screenshot("server-error-360px", 360, 640, false)
	// It retries: a second stream request within the first back-off (1 s).
	deadline := time.Now().Add(waitTimeout)
	for len(d.requests.streams("lobby")) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(d.requests.streams("lobby")); n < 2 {
		t.Errorf("%d stream requests after the failure, want the page to retry", n)
	}
}

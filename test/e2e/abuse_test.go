package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// zalgo stacks n combining marks on every letter of s.
func zalgo(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		b.WriteRune(r)
		if r == ' ' {
			continue
		}
		for range n {
			b.WriteRune(rune(0x0300 + i%0x70)) // Combining Diacritical Marks
			i++
		}
	}
	return b.String()
}

// charsLeftToRight is JavaScript: whether the characters at the given
// indexes of the first text node of the element sel picks (the n-th match)
// are drawn left to right, in that order.
func charsLeftToRight(sel string, n int, indexes ...int) string {
	idx, _ := json.Marshal(indexes)
	return fmt.Sprintf(`(() => {
		const node = document.querySelectorAll(%q)[%d].firstChild;
		const r = document.createRange();
		const xs = %s.map((i) => { r.setStart(node, i); r.setEnd(node, i + 1); return r.getBoundingClientRect().left; });
		return xs.every((x, i) => i === 0 || x > xs[i - 1]);
	})()`, sel, n, idx)
}

// layoutJS lists what is wider than the screen or outside the log's box.
const layoutJS = `(() => {
	const bad = [];
	const width = document.documentElement.clientWidth;
	if (document.documentElement.scrollWidth > width) bad.push("the page is " + document.documentElement.scrollWidth + " px wide in " + width);
	const s = document.querySelector("#scroller");
	if (s.scrollWidth > s.clientWidth) bad.push("the log scrolls sideways: " + s.scrollWidth + " in " + s.clientWidth);
	const log = document.querySelector("#log").getBoundingClientRect();
	for (const li of document.querySelectorAll("#log .msg")) {
		const box = li.getBoundingClientRect();
		if (box.left < log.left - 0.5 || box.right > log.right + 0.5) bad.push("message " + li.dataset.id + " is outside the log");
		for (const part of li.querySelectorAll(".nick, .text")) {
			const b = part.getBoundingClientRect();
			if (b.left < box.left - 0.5 || b.right > box.right + 0.5) bad.push("the " + part.className + " of message " + li.dataset.id + " sticks out of it");
			if (part.scrollWidth > part.clientWidth + 1 && part.classList.contains("text")) bad.push("the text of message " + li.dataset.id + " overflows");
		}
	}
	const p = document.querySelector("#presence").getBoundingClientRect();
	if (p.right > width + 0.5) bad.push("the presence line is wider than the page");
	return bad;
})()`

// TestHostileMessages: messages made to break a page — markup, a
// right-to-left override in a nick and in a text, a 2,000-character word,
// emoji ZWJ sequences, stacks of combining marks, zero-width characters —
// show as text: nothing runs, no element or request appears, nothing is
// wider than a 360 px phone or a desktop window, each message stays in the
// log's box, and an override stays inside its own nick or text.
func TestHostileMessages(t *testing.T) {
	// No timing of its own: runs beside the waiting of TestPresence.
	t.Parallel()
	d := deploy(t, setup{})
	url := d.URL + "#hostile"
	reader := newPerson(t, "reader").open(url)
	reader.chooseNick("zoe")
	mallory := newPerson(t, "mallory").open(url)
	// A nick may not hold U+202E (the server refuses default-ignorable
	// characters in nicks, RFC 8266), but right-to-left letters.
	const rtlNick = "evil \u05e9\u05dc\u05d5\u05dd"
	const rtlText = "abc \u202Ereversed to the end"
	mallory.say(rtlNick, rtlText) // through the page: the nick is also in the room's presence list

	hostile := []line{
		{"mallory", `<script>window.pwned = true; alert(1)</script>`},
		{"mallory", `<img src=x onerror="window.pwned = true; alert(2)">`},
		{"plain", "abc def ghi"},
		{"long", strings.Repeat("word", 500)},
		{"family", "families 👩‍👩‍👧‍👦 👨‍👩‍👧 flags 🏳️‍🌈 🏴‍☠️ skin tones 👋🏽 🧑🏿‍💻 keycap 1️⃣"},
		{zalgo("zalg", 6), zalgo("he comes, the text that stacks marks", 30)},
		{"zwj", "zero\u200bwidth\u200cnon\u200djoiners\u2060and\ufeffmarks\u200e\u200f\u2066isolates\u2069"},
		{"last", "the end"},
	}
	for i, l := range hostile {
		// The nick as the server enforces it (NFKC composes marks).
		hostile[i].Nick = d.post(t, "hostile", l.Nick, l.Text).Nick
	}
	want := append([]line{{rtlNick, rtlText}}, hostile...)
	for _, tb := range []*tab{reader, mallory} {
		tb.waitMessages(len(want))
		checkLog(t, tb, want)
	}
	reader.waitPresence(waitTimeout, rtlNick, "zoe")

	t.Run("nothing runs, nothing is added, nothing is loaded", func(t *testing.T) {
		for _, tb := range []*tab{reader, mallory} {
			if eval[bool](tb, `"pwned" in window`) {
				t.Errorf("%s: a script from a message ran", tb.name)
			}
			// Each message is exactly a time, a nick, the hidden colon and
			// the text, and the text holds no element (none of these
			// messages has a link).
			if bad := eval[[]string](tb, `[...document.querySelectorAll("#log .msg")].filter((li) =>
				[...li.children].map((e) => e.tagName + "." + e.className).join(" ") !== "TIME. SPAN.nick " + li.querySelector(".nick").className.split(" ")[1] + " SPAN.visually-hidden SPAN.text" ||
				li.querySelector(".text").children.length > 0).map((li) => li.dataset.id)`); len(bad) != 0 {
				t.Errorf("%s: messages %v hold other elements than time, nick, colon and text", tb.name, bad)
			}
			if n := eval[int](tb, `document.querySelectorAll("script, img, iframe, svg, object, embed, style, link:not([rel=icon]):not([rel=stylesheet])").length`); n != 1 {
				t.Errorf("%s: the page holds %d script, image, frame or style elements, want its 1 module script", tb.name, n)
			}
		}
		// The browser asked for nothing but the page, its files and the
		// two programs (an <img src=x> would have asked for x).
		files := []string{"", "index.html", "chat.css", "chat.js", "feed.js", "stream.js", "answers.js", "format.js", "icon.svg", "cgi-bin/post", "cgi-bin/stream"}
		d.requests.mu.Lock()
		for _, r := range d.requests.list {
			if !slices.Contains(files, r.Path) {
				t.Errorf("the browser requested %q", r.Path)
			}
		}
		d.requests.mu.Unlock()
	})

	t.Run("direction overrides stay inside", func(t *testing.T) {
		for _, tb := range []*tab{reader, mallory} {
			for _, c := range []struct{ what, sel string }{
				{"nick", "#log .nick"}, {"text", "#log .text"}, {"presence", "#presence-list .presence-nick"},
			} {
				if got := eval[[]string](tb, fmt.Sprintf(`[...new Set([...document.querySelectorAll(%q)].map((e) => getComputedStyle(e).unicodeBidi))]`, c.sel)); !slices.Equal(got, []string{"isolate"}) {
					t.Errorf("%s: each %s has unicode-bidi %q, want isolate", tb.name, c.what, got)
				}
			}
			// The override does reverse its own text after it (so this
			// measures what it should) …
			if eval[bool](tb, charsLeftToRight("#log .text", 0, 5, 6, 7)) {
				t.Errorf("%s: the characters after U+202E run left to right; the measurement is broken", tb.name)
			}
			// … but not the text of the message whose nick holds one, nor
			// the next message, nor the next nick in the presence list.
			for _, c := range []struct {
				what, sel string
				n         int
			}{
				{"the text after a right-to-left nick", "#log .text", 0},
				{"the next message's nick", "#log .nick", 1},
				{"the message after a text with U+202E", "#log .text", 1},
				{"the nick listed after a right-to-left one", "#presence-list .presence-nick", 1},
			} {
				if !eval[bool](tb, charsLeftToRight(c.sel, c.n, 0, 1, 2)) {
					t.Errorf("%s: %s runs right to left: the override spilled out", tb.name, c.what)
				}
			}
		}
	})

	for _, c := range []struct {
		name   string
		width  int64
		shot   string
		height int64
	}{{"360px", 360, "hostile-360px", 740}, {"desktop", 1000, "hostile", 700}} {
		t.Run("layout "+c.name, func(t *testing.T) {
			for _, tb := range []*tab{reader, mallory} {
				tb.do("set the viewport", chromedp.EmulateViewport(c.width, c.height))
				if bad := eval[[]string](tb, layoutJS); len(bad) != 0 {
					t.Errorf("%s at %d px:\n%s", tb.name, c.width, strings.Join(bad, "\n"))
				}
				tb.do("reset the viewport", resetViewport, call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}))
			}
			reader.screenshot(c.shot, c.width, c.height, false)
		})
	}
}

// TestNickTaken: a nick belongs to the browser that used it first. Someone
// else who tries it is told so by the server (409); the page shows that,
// keeps the text, and asks for another nickname — refusing the taken one,
// whatever its case or width — and the message goes out under the new one.
func TestNickTaken(t *testing.T) {
	// No timing of its own: runs beside the waiting of TestPresence.
	t.Parallel()
	d := deploy(t, setup{})
	url := d.URL + "#names"
	ada := newPerson(t, "ada").open(url)
	ada.say("ada", "I am ada")
	eve := newPerson(t, "eve").open(url)
	eve.waitMessages(1)

	// What the server says to another browser posting as Ada.
	status, body, err := d.postRaw("names", "Ada", "me too")
	if err != nil {
		t.Fatal(err)
	}
	var refusal struct{ Error string }
	if json.Unmarshal(body, &refusal); status != http.StatusConflict || refusal.Error == "" {
		t.Fatalf("another client posting as Ada gets %d %s, want 409 with an error sentence", status, body)
	}

	eve.expectConsoleError("status of 409")
	const text = "Hello, I am ada too"
	eve.typeText(text)
	eve.pressEnter()
	eve.waitFor("the nickname dialog", `document.querySelector("#nick-dialog").open`, waitTimeout)
	eve.do("answer Ada", chromedp.SetValue(chromedp.ID("nick-input"), "Ada"), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
	eve.waitFor("the server's refusal", `document.querySelector("#send-error").textContent.includes("(HTTP 409)")`, waitTimeout)
	if got, want := eval[string](eve, `document.querySelector("#send-error").textContent`), "Not sent: "+refusal.Error+" (HTTP 409)"; got != want {
		t.Errorf("the page says %q, want %q", got, want)
	}
	if got := eval[string](eve, `document.querySelector("#text").value`); got != text {
		t.Errorf("after the refusal the message box holds %q, want %q", got, text)
	}
	eve.waitFor("the nickname dialog", `document.querySelector("#nick-dialog").open`, waitTimeout)
	type dialog struct{ Why, Value, Button, Offer string }
	got := eval[dialog](eve, `({
		why: document.querySelector("#nick-why").textContent,
		value: document.querySelector("#nick-input").value,
		button: document.querySelector("#nick-button").textContent,
		offer: document.querySelector("#renick").hidden ? "" : document.querySelector("#renick").textContent,
	})`)
	if w := (dialog{refusal.Error, "Ada", "choose a nickname", "Choose another nickname"}); got != w {
		t.Errorf("after the 409: %+v, want %+v", got, w)
	}
	eve.screenshot("nick-taken-360px", 360, 640, false)

	// Cancelled, the offer stays, and brings the dialog back.
	eve.do("cancel", chromedp.Click(chromedp.ID("nick-cancel")))
	eve.do("take the offer", chromedp.Click(chromedp.ID("renick")))
	eve.waitFor("the nickname dialog", `document.querySelector("#nick-dialog").open`, waitTimeout)

	// The taken nick, in another case or in full-width letters, is
	// refused in the dialog; another one sends the waiting message.
	for _, nick := range []string{"ada", "ＡＤＡ"} {
		eve.do("try "+nick, chromedp.SetValue(chromedp.ID("nick-input"), nick), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
		if msg := eval[string](eve, `document.querySelector("#nick-input").validationMessage`); !strings.Contains(msg, "in use by someone else") {
			t.Errorf("the dialog takes %q: it says %q", nick, msg)
		}
	}
	eve.do("choose eve", chromedp.SetValue(chromedp.ID("nick-input"), "eve"), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
	want := []line{{"ada", "I am ada"}, {"eve", text}}
	for _, tb := range []*tab{ada, eve} {
		tb.waitMessages(len(want))
		checkLog(t, tb, want)
	}
	eve.waitFor("the box to empty", `document.querySelector("#text").value === ""`, waitTimeout)
	if eval[bool](eve, `!document.querySelector("#send-error").hidden || !document.querySelector("#renick").hidden`) {
		t.Errorf("after sending, the error or the offer still shows")
	}

	// A nick asked for a message is told to the stream (for presence)
	// only once the server took a message with it: eve was never listed
	// as Ada, and is now listed as eve.
	ada.waitPresence(waitTimeout, "ada", "eve")
	for _, r := range d.requests.streams("names") {
		if n := r.Query.Get("nick"); n != "" && n != "ada" && n != "eve" {
			t.Errorf("a stream was opened as %q", n)
		}
	}
	if got := eval[string](eve, `localStorage.getItem("cgichat.nick")`); got != "eve" {
		t.Errorf("eve's browser remembers the nick %q, want eve", got)
	}
}

// TestRateLimited: over the rate limit the server answers 429; the page
// shows the server's sentence and when to try again, and keeps the text.
func TestRateLimited(t *testing.T) {
	// No timing of its own: runs beside the waiting of TestPresence.
	t.Parallel()
	d := deploy(t, setup{env: []string{"CHAT_RATE_LIMIT=2/60s"}})
	tb := newPerson(t, "rita").open(d.URL + "#fast")
	tb.say("rita", "one")
	tb.say("rita", "two")
	tb.expectConsoleError("status of 429")
	const text = "three, too fast"
	tb.typeText(text)
	tb.pressEnter()
	tb.waitFor("the server's refusal", `document.querySelector("#send-error").textContent.includes("(HTTP 429)")`, waitTimeout)

	// What the server says now to this address, asked directly (with a
	// nick of its own: rita's belongs to the browser).
	status, body, err := d.postRaw("fast", "someone", "four")
	if err != nil {
		t.Fatal(err)
	}
	var refusal struct{ Error string }
	if json.Unmarshal(body, &refusal); status != http.StatusTooManyRequests || refusal.Error == "" {
		t.Fatalf("a fourth post gets %d %s, want 429 with an error sentence", status, body)
	}
	got := eval[string](tb, `document.querySelector("#send-error").textContent`)
	if !regexp.MustCompile(`^` + regexp.QuoteMeta("Not sent: "+refusal.Error+" (HTTP 429)") + ` You can send again in [1-9][0-9]? s\.$`).MatchString(got) {
		t.Errorf("the page says %q, want “Not sent: %s (HTTP 429) You can send again in N s.”", got, refusal.Error)
	}
	if got := eval[string](tb, `document.querySelector("#text").value`); got != text {
		t.Errorf("after the refusal the message box holds %q, want %q", got, text)
	}
	if eval[bool](tb, `document.querySelector("#send").disabled`) {
		t.Errorf("the send button is off after the refusal; the reader should be able to try again")
	}
	tb.waitMessages(2)
	checkLog(t, tb, []line{{"rita", "one"}, {"rita", "two"}})
}

// TestStreamCap: over the cap of open streams per address, the stream
// answers 429; the page says so with the server's sentence and keeps
// retrying, and is live once a stream is free again.
func TestStreamCap(t *testing.T) {
	// No timing of its own: runs beside the waiting of TestPresence.
	t.Parallel()
	d := deploy(t, setup{env: []string{"CHAT_STREAMS_PER_CLIENT=1"}})
	first := newPerson(t, "first").open(d.URL + "#capped")
	second := newPerson(t, "second").openTab()
	second.expectConsoleError("status of 429")
	second.do("load the page", chromedp.Navigate(d.URL+"#capped"))
	second.waitFor("the server's refusal", `document.querySelector("#trouble-text").textContent.includes("(HTTP 429)")`, waitTimeout)
	if got := second.state(); !offlineState.MatchString(got) {
		t.Errorf("the page says %q, want “Offline — trying again in N s”", got)
	}
	if got := second.trouble(); !regexp.MustCompile(`^Too many open streams from your address \(at most 1\)\. .+ \(HTTP 429\)$`).MatchString(got) {
		t.Errorf("under the header the page says %q, want “Too many open streams from your address (at most 1). … (HTTP 429)”", got)
	}
	// The closed tab's stream process is killed by the CGI host, so its
	// slot is free once its row is stale (about 8 s with the 1 s
	// heartbeat); the page's retries are 1, 2, 4, 8, 16 s apart by then.
	first.close()
	second.waitFor("the stream once the other closed", `document.querySelector("#state").dataset.status === "live"`, 45*time.Second)
}

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// headerJS lists what keeps the header from being one line: the room
// name, the state and the Room button side by side, nothing else shown.
const headerJS = `(() => {
	const bad = [];
	const box = (id) => document.getElementById(id).getBoundingClientRect();
	const [room, state, more] = [box("room-name"), box("state"), box("more")];
	const line = parseFloat(getComputedStyle(document.getElementById("state")).lineHeight) || 20;
	for (const [name, r] of [["the room", room], ["the state", state], ["the Room button", more]]) {
		if (r.width === 0) bad.push(name + " is not shown");
		if (r.height > 2 * line) bad.push(name + " takes " + Math.round(r.height) + " px, more than a line");
	}
	if (Math.abs(room.top + room.height / 2 - (state.top + state.height / 2)) > line / 2 ||
		Math.abs(more.top + more.height / 2 - (state.top + state.height / 2)) > line) bad.push("the room, the state and the Room button are not on one line");
	if (state.right > document.documentElement.clientWidth) bad.push("the state runs past the screen");
	const bar = box("bar");
	if (bar.height > 3 * line) bad.push("the header is " + Math.round(bar.height) + " px high");
	return bad;
})()`

// bordersJS lists the fields whose border has less than 3:1 contrast
// against the field's own background or the background around it (WCAG
// 1.4.11).
const bordersJS = `(() => {
	const rgb = (c) => c.match(/[\d.]+/g).map(Number);
	const lum = ([r, g, b]) => {
		const f = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
		return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
	};
	const background = (el) => {
		for (let e = el; e !== null; e = e.parentElement) {
			const c = rgb(getComputedStyle(e).backgroundColor);
			if (c.length < 4 || c[3] > 0) return c;
		}
		return [255, 255, 255];
	};
	const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)]; return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
	const low = [];
	for (const el of document.querySelectorAll("input:not([type=checkbox]), textarea")) {
		if (el.getClientRects().length === 0) continue;
		const border = rgb(getComputedStyle(el).borderTopColor);
		for (const [where, bg] of [["its own background", background(el)], ["the background around it", background(el.parentElement)]]) {
			const r = ratio(border, bg);
			if (r < 3) low.push("#" + el.id + ": " + r.toFixed(2) + ":1 against " + where);
		}
	}
	return low;
})()`

// tap touches the element sel picks at its middle, as a finger would.
func (tb *tab) tap(sel string) {
	tb.t.Helper()
	xy := eval[[]float64](tb, fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`, sel))
	touch := func(typ input.DispatchTouchEventType, points []*input.TouchPoint) chromedp.Action[chromedp.Void] {
		return call(input.DispatchTouchEvent, input.DispatchTouchEventParams{Type: typ, TouchPoints: points})
	}
	tb.do("tap "+sel,
		touch(input.DispatchTouchEventTypeTouchStart, []*input.TouchPoint{{X: xy[0], Y: xy[1]}}),
		touch(input.DispatchTouchEventTypeTouchEnd, []*input.TouchPoint{}),
	)
}

// paste pastes text into the message box through the clipboard, as
// Ctrl+V does.
func (tb *tab) paste(text string) {
	tb.t.Helper()
	tb.do("paste", chromedp.Focus(chromedp.ID("text")),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
			const data = new DataTransfer();
			data.setData("text/plain", %q);
			const e = new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
			if (document.getElementById("text").dispatchEvent(e)) {
				document.execCommand("insertText", false, %q);
			}
		})()`, text, text)))
}

// TestSmallThings: on a 360 px phone the header is one line and the
// new-messages button too, and tapping it leaves the message box (and the
// phone's keyboard) alone; the message box counts characters near the
// limit and refuses a longer paste or message before sending; the room
// field says which names are allowed; the time column fits a 12-hour
// clock; field borders have 3:1 contrast; axe finds nothing serious.
func TestSmallThings(t *testing.T) {
	// No timing of its own: runs beside the waiting of the outage tests.
	t.Parallel()
	d := deploy(t, setup{})
	for i := range 30 {
		d.post(t, "phone", "zed", fmt.Sprintf("earlier message %d", i+1))
	}
	tb := newPerson(t, "pat").open(d.URL + "#phone")
	tb.waitMessages(30)

	t.Run("phone", func(t *testing.T) {
		tb.do("be a phone", chromedp.EmulateViewport(360, 640, chromedp.EmulateMobile, chromedp.EmulateTouch))
		defer tb.do("be a desktop again", resetViewport, call(emulation.SetTouchEmulationEnabled, emulation.SetTouchEmulationEnabledParams{Enabled: false}))
		if bad := eval[[]string](tb, headerJS); len(bad) != 0 {
			t.Errorf("at 360 px the header is not one line: %s", strings.Join(bad, "; "))
		}
		if eval[bool](tb, `document.querySelector("#room-form").getClientRects().length > 0`) {
			t.Errorf("at 360 px the room form shows in the header")
		}
		tb.axe("360 px")
		tb.screenshot("phone-360px", 360, 640, false)
		tb.do("be a phone again", chromedp.EmulateViewport(360, 640, chromedp.EmulateMobile, chromedp.EmulateTouch))

		// "Room" opens the room form and who is here, and joining closes them.
		tb.tap("#more")
		if got := eval[string](tb, `document.querySelector("#more").getAttribute("aria-expanded")`); got != "true" {
			t.Errorf("after a tap on Room, aria-expanded is %q, want true", got)
		}
		if !eval[bool](tb, `document.querySelector("#room-input").getClientRects().length > 0`) {
			t.Errorf("after a tap on Room, the room field does not show")
		}
		tb.axe("360 px, room form open")
		tb.do("tap Join", chromedp.Click(chromedp.CSS("#room-form button")))
		if got := eval[string](tb, `document.querySelector("#more").getAttribute("aria-expanded")`); got != "false" {
			t.Errorf("after Join, aria-expanded is %q, want false", got)
		}

		// The new-messages button: one line, and a tap does not focus the
		// message box.
		tb.do("scroll up", chromedp.Evaluate[chromedp.Void](`document.querySelector("#scroller").scrollTop = 0`))
		for i := range 12 {
			d.post(t, "phone", "zed", fmt.Sprintf("while scrolled up %d", i+1))
		}
		tb.waitMessages(42)
		tb.waitFor("the new-messages button", `!document.querySelector("#jump").hidden`, waitTimeout)
		if got := eval[[]float64](tb, `(() => { const b = document.querySelector("#jump"); return [b.getClientRects().length, b.getBoundingClientRect().height, parseFloat(getComputedStyle(b).lineHeight) || parseFloat(getComputedStyle(b).fontSize) * 1.5]; })()`); got[0] != 1 || got[1] > 2*got[2] {
			t.Errorf("the new-messages button is %v px high (line height %v): want one line", got[1], got[2])
		}
		tb.do("blur", chromedp.Evaluate[chromedp.Void](`document.activeElement.blur()`))
		tb.tap("#jump")
		tb.waitFor("the log at its end", atBottom, waitTimeout)
		if got := eval[string](tb, `document.activeElement.id`); got == "text" {
			t.Errorf("a tap on the new-messages button focused the message box (which opens a phone's keyboard)")
		}
	})

	t.Run("the length of a message", func(t *testing.T) {
		tb.do("empty the box", chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = ""`))
		count := func() string {
			return eval[string](tb, `document.querySelector("#count").hidden ? "" : document.querySelector("#count").textContent`)
		}
		tb.typeText(strings.Repeat("a", 1799))
		if got := count(); got != "" {
			t.Errorf("at 1,799 characters the counter says %q, want nothing yet", got)
		}
		tb.typeText("😀") // one character, as the server counts
		if got, want := count(), "1,800 of 2,000 characters"; got != want {
			t.Errorf("at 1,800 characters the counter says %q, want %q", got, want)
		}
		tb.axe("the counter")

		// A paste that would pass the limit is refused, with the reason.
		tb.paste(strings.Repeat("b", 300))
		if got := eval[int](tb, `[...document.querySelector("#text").value].length`); got != 1800 {
			t.Errorf("after a paste of 300 characters the box holds %d, want the 1,800 before (refused)", got)
		}
		if got, want := eval[string](tb, `document.querySelector("#send-error").textContent`), "Not pasted: with it the message would be 2,100 characters long, and at most 2,000 can be sent. Please paste a shorter part."; got != want {
			t.Errorf("after a long paste the page says %q, want %q", got, want)
		}
		// One that fits goes in.
		tb.paste(strings.Repeat("c", 200))
		if got := eval[int](tb, `[...document.querySelector("#text").value].length`); got != 2000 {
			t.Errorf("after a paste of 200 characters the box holds %d, want 2,000", got)
		}
		if got, want := count(), "2,000 of 2,000 characters"; got != want {
			t.Errorf("at the limit the counter says %q, want %q", got, want)
		}
		// Typed past the limit: said, and not sent.
		tb.typeText("dddd")
		if got, want := count(), "2,004 of 2,000 characters: 4 too many"; got != want {
			t.Errorf("past the limit the counter says %q, want %q", got, want)
		}
		posts := len(d.requests.messagePosts())
		tb.pressEnter()
		if got, want := eval[string](tb, `document.querySelector("#send-error").textContent`), "Too long to send: 2,004 characters, and a message holds at most 2,000. Please shorten it by 4."; got != want {
			t.Errorf("sending past the limit, the page says %q, want %q", got, want)
		}
		if n := len(d.requests.messagePosts()) - posts; n != 0 {
			t.Errorf("a message past the limit made %d posts, want none", n)
		}
		tb.axe("a message too long")
		tb.do("empty the box", chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = ""; document.querySelector("#text").dispatchEvent(new Event("input"))`))
		if eval[bool](tb, `!document.querySelector("#count").hidden || !document.querySelector("#send-error").hidden`) {
			t.Errorf("emptied, the box still shows its counter or the error")
		}
	})

	t.Run("room names", func(t *testing.T) {
		const rule = "Room names are 1 to 32 letters (A to Z, without accents), digits, hyphens (-) or underscores (_), with no spaces."
		tb.do("try a room with a space", chromedp.SetValue(chromedp.ID("room-input"), "no spaces"), chromedp.Click(chromedp.CSS("#room-form button")))
		if got := eval[string](tb, `document.querySelector("#room-input").validationMessage`); got != rule {
			t.Errorf("the room field says %q, want %q", got, rule)
		}
		if got := eval[string](tb, `document.getElementById(document.querySelector("#room-input").getAttribute("aria-describedby")).textContent`); got != rule {
			t.Errorf("the room field is described as %q, want %q", got, rule)
		}
		if got := eval[string](tb, `location.hash`); got != "#phone" {
			t.Errorf("an invalid room changed the address to %q", got)
		}
	})

	t.Run("field borders", func(t *testing.T) {
		for _, scheme := range []string{"light", "dark"} {
			tb.do("set the theme", call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			}))
			if low := eval[[]string](tb, bordersJS); len(low) != 0 {
				t.Errorf("%s: field borders below 3:1: %s", scheme, strings.Join(low, "; "))
			}
		}
		tb.do("reset the theme", call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}))
	})

	t.Run("a 12-hour clock fits", func(t *testing.T) {
		us := newPerson(t, "sam").openTab()
		us.do("read as in the United States",
			call(emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{}),
			call(emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: "en-US"}))
		us.goTo(d.URL + "#phone")
		us.waitMessages(42)
		type clockFit struct {
			Text      string
			Overflows bool
			Overlaps  bool
		}
		got := eval[clockFit](us, `(() => {
			const li = document.querySelector("#log .msg");
			const t = li.querySelector("time"), n = li.querySelector(".nick");
			return { text: t.textContent, overflows: t.scrollWidth > t.clientWidth,
				overlaps: t.getBoundingClientRect().right > n.getBoundingClientRect().left };
		})()`)
		if !regexp.MustCompile(`^\d\d:\d\d [AP]M$`).MatchString(got.Text) {
			t.Fatalf("in en-US the time reads %q, want a 12-hour clock like 07:04 AM", got.Text)
		}
		if got.Overflows || got.Overlaps {
			t.Errorf("the time %q does not fit its column: overflows %v, runs into the nick %v", got.Text, got.Overflows, got.Overlaps)
		}
	})
}

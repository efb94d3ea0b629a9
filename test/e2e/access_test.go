package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// contrastJS lists every visible piece of text on the page whose colour has
// less than 4.5:1 contrast (WCAG AA) against the background it sits on.
const contrastJS = `(() => {
	const rgb = (c) => {
		const p = c.match(/[\d.]+/g).map(Number);
		return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
	};
	const lum = ({ r, g, b }) => {
		const f = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
		return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
	};
	const background = (el) => {
		for (let e = el; e !== null; e = e.parentElement) {
			const c = rgb(getComputedStyle(e).backgroundColor);
			if (c.a > 0) return c;
		}
		return { r: 255, g: 255, b: 255, a: 1 };
	};
	const low = [];
	for (const el of document.body.querySelectorAll("*")) {
		const text = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join("").trim();
		if (text === "" || el.disabled || el.closest(".visually-hidden, [hidden], dialog:not([open])") || el.getClientRects().length === 0) continue;
		const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
		const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
		if (ratio < 4.5) low.push(el.tagName.toLowerCase() + "." + el.className + " “" + text.slice(0, 30) + "” " + ratio.toFixed(2) + ":1");
	}
	return low;
})()`

// TestAccessibility: in light and dark, wide and 360 px wide, with every
// kind of text on screen (all nick colours, a link, the state, an error,
// the new-messages button): no serious or critical finding of axe-core,
// enough contrast everywhere, nothing wider than the screen, every field
// labelled, the log a live region around the list, and a visible focus
// ring on each control reached with Tab.
func TestAccessibility(t *testing.T) {
	d := deploy(t, setup{})
	for i := range 30 {
		d.post(t, "a11y", fmt.Sprintf("nick%d", i%12), fmt.Sprintf("message %d with https://example.org/%d", i, i))
	}
	d.post(t, "a11y", "a-rather-long-nickname-of-32-chr", "a long word: "+strings.Repeat("w", 300))
	tb := newPerson(t, "ada").open(d.URL + "#a11y")
	tb.waitMessages(31)
	tb.say("ada", "hello")
	// Her message (with its Delete button) far from the last: Tab reaching
	// the button scrolls it into view, and within 40 px of the end of the
	// log that counts as reading the newest, which hides the new-messages
	// button this test reaches too.
	for i := range 8 {
		d.post(t, "a11y", "zed", fmt.Sprintf("after ada %d", i))
	}
	tb.waitMessages(40)
	// A refused post puts an error on screen.
	tb.expectConsoleError("status of 400")
	tb.typeText(strings.Repeat("x", 2001))
	tb.pressEnter()
	tb.waitFor("the error", `!document.querySelector("#send-error").hidden`, waitTimeout)
	// Scrolled up, a new message brings the new-messages button.
	tb.do("scroll up", chromedp.Evaluate[chromedp.Void](`document.querySelector("#scroller").scrollTop = 0`))
	d.post(t, "a11y", "zed", "below")
	tb.waitFor("the new-messages button", `!document.querySelector("#jump").hidden`, waitTimeout)

	for _, c := range []struct {
		scheme string
		width  int64
	}{{"light", 1000}, {"dark", 1000}, {"light", 360}, {"dark", 360}} {
		t.Run(fmt.Sprintf("%s %dpx", c.scheme, c.width), func(t *testing.T) {
			tb.do("set the viewport and theme", chromedp.EmulateViewport(c.width, 700),
				call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: c.scheme}},
				}))
			tb.axe(fmt.Sprintf("%s, %d px, with an error and the new-messages button", c.scheme, c.width))
			if got := eval[[]string](tb, contrastJS); len(got) != 0 {
				t.Errorf("text below 4.5:1 contrast:\n%s", strings.Join(got, "\n"))
			}
			if got := eval[int](tb, `document.documentElement.scrollWidth`); got > int(c.width) {
				t.Errorf("the page is %d px wide, want at most the %d px of the screen", got, c.width)
			}
			if got := eval[[]int](tb, `[document.querySelector("#scroller").scrollWidth, document.querySelector("#scroller").clientWidth]`); got[0] > got[1] {
				t.Errorf("the log is %d px wide in a %d px view: it scrolls sideways", got[0], got[1])
			}
		})
	}
	tb.do("reset the viewport", resetViewport, call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}))

	t.Run("labels and live region", func(t *testing.T) {
		if got := eval[[]string](tb, `[...document.querySelectorAll("input, textarea")].filter((e) => e.labels.length === 0).map((e) => e.id)`); len(got) != 0 {
			t.Errorf("fields without a label: %v", got)
		}
		// The role goes on a wrapper: on the <ol> it would hide the list
		// and leave every message a list item without a list.
		if got := eval[string](tb, `(() => { const l = document.querySelector("#log"); return l.parentElement.getAttribute("role") + " " + l.getAttribute("role"); })()`); got != "log null" {
			t.Errorf("the message list's wrapper and the list have roles %q, want %q", got, "log null")
		}
	})

	t.Run("keyboard focus is visible", func(t *testing.T) {
		want := []string{"room-input", "join", "scroller", "link", "jump", "nick-button", "alerts-button", "text", "send"}
		seen := map[string]bool{}
		var reached []string
		// Tab through the page (past 31 links in the log) until every
		// control was reached, at most 100 times.
		for i := 0; i < 100 && len(seen) < len(want); i++ {
			tb.do("press Tab", chromedp.KeyEvent("\t"))
			got := eval[[]string](tb, `(() => {
				const e = document.activeElement, s = getComputedStyle(e);
				const name = e === document.body ? "body" : e.id || (e.tagName === "A" ? "link" : e.textContent.trim().toLowerCase());
				return [name, s.outlineStyle, s.outlineWidth];
			})()`)
			if got[0] == "body" {
				continue // past the last control, before the first
			}
			reached = append(reached, got[0])
			if got[1] == "none" || got[2] == "0px" {
				t.Errorf("%s has the keyboard focus but no visible outline (%s %s)", got[0], got[1], got[2])
			}
			for _, w := range want {
				if got[0] == w {
					seen[w] = true
				}
			}
		}
		for _, w := range want {
			if !seen[w] {
				t.Errorf("Tab never reached %s; it reached %v", w, reached)
			}
		}
	})
}

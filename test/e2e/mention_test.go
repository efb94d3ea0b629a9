package e2e

import (
	"net/url"
	"slices"
	"testing"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// alertsJS runs in the page before its own scripts and records, in
// window.alertsSeen, every permission request (with whether the reader had
// just clicked or typed), every notification, every audio context and
// every tone; each still does what it would.
const alertsJS = `window.alertsSeen = { asked: [], notes: [], contexts: 0, tones: 0 };
if ("Notification" in window) {
	const Real = window.Notification;
	window.Notification = class extends Real {
		constructor(title, options) {
			super(title, options);
			window.alertsSeen.notes.push({ title, body: options?.body ?? "" });
		}
		static requestPermission(...args) {
			window.alertsSeen.asked.push(navigator.userActivation.isActive);
			return Real.requestPermission(...args);
		}
	};
}
{
	const Real = window.AudioContext;
	window.AudioContext = class extends Real {
		constructor(...args) {
			super(...args);
			window.alertsSeen.contexts++;
		}
	};
	const oscillator = Real.prototype.createOscillator;
	Real.prototype.createOscillator = function () {
		window.alertsSeen.tones++;
		return oscillator.call(this);
	};
}`

// alertsSeen is window.alertsSeen.
type alertsSeen struct {
	Asked    []bool
	Notes    []struct{ Title, Body string }
	Contexts int
	Tones    int
}

// setNotifications sets what the browser of p answers the chat at
// pageURL about notifications ("granted", "denied" or "prompt"), as a
// person would in the browser's settings.
func (p *person) setNotifications(pageURL string, setting cdpbrowser.PermissionSetting) {
	p.t.Helper()
	u, err := url.Parse(pageURL)
	if err != nil {
		p.t.Fatal(err)
	}
	c := chromedp.FromContext(p.ctx)
	if _, err := cdp.Call(p.ctx, c.Browser, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission:       &cdpbrowser.PermissionDescriptor{Name: "notifications"},
		Setting:          setting,
		Origin:           u.Scheme + "://" + u.Host,
		BrowserContextID: c.BrowserContextID,
	}); err != nil {
		p.t.Fatalf("%s: set the notifications permission: %v", p.name, err)
	}
}

// resetPermissions undoes setNotifications: the browser asks again.
func (p *person) resetPermissions() {
	p.t.Helper()
	c := chromedp.FromContext(p.ctx)
	if _, err := cdp.Call(p.ctx, c.Browser, cdpbrowser.ResetPermissions, cdpbrowser.ResetPermissionsParams{BrowserContextID: c.BrowserContextID}); err != nil {
		p.t.Fatalf("%s: reset the permissions: %v", p.name, err)
	}
}

// hide puts another tab of p in front of tb (in the same window), and
// returns it; closing it or activating tb shows tb again.
func (p *person) hide(tb *tab) *tab {
	p.t.Helper()
	front := p.openTab(chromedp.WithNewWindow(false))
	tb.waitFor("the tab to be hidden", `document.visibilityState === "hidden"`, waitTimeout)
	return front
}

// toFront brings tb to the front of its window.
func (tb *tab) toFront() {
	tb.t.Helper()
	id := chromedp.FromContext(tb.ctx).Target.TargetID
	tb.do("bring the tab to the front", call(target.ActivateTarget, target.ActivateTargetParams{TargetID: id}))
	tb.waitFor("the tab to be visible", `document.visibilityState === "visible"`, waitTimeout)
}

// mentioned returns the ids of the messages the page highlights as naming
// the reader.
func (tb *tab) mentioned() []int64 {
	tb.t.Helper()
	return eval[[]int64](tb, `[...document.querySelectorAll("#log .msg.mention")].map((li) => Number(li.dataset.id))`)
}

// TestMentions: a message that names the reader's nick — in any case, in
// full-width letters, next to punctuation, but not inside a longer word —
// is highlighted. While the tab is hidden, the title counts mentions apart
// from other messages. Nothing is asked or played until the reader opts in
// (after a click); then, in the background, a mention brings a browser
// notification and a tone, in this browser from now on.
func TestMentions(t *testing.T) {
	// No timing of its own: runs beside the waiting of the outage tests.
	t.Parallel()
	d := deploy(t, setup{})
	pageURL := d.URL + "#mentions"
	ada := newPerson(t, "ada")
	tb := ada.openTab(chromedp.WithNewWindow(false))
	tb.do("watch alerts", call(page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: alertsJS}))
	tb.goTo(pageURL)
	tb.chooseNick("Ada")
	seen := func() alertsSeen { return eval[alertsSeen](tb, `window.alertsSeen`) }

	t.Run("highlighted", func(t *testing.T) {
		texts := []struct {
			text    string
			mention bool
		}{
			{"hello ada", true},
			{"adam is someone else", false},
			{"ＡＤＡ, look at this", true},
			{"@Ada!", true},
			{"nothing for her here", false},
			{"madame", false},
		}
		var want []int64
		for _, c := range texts {
			m := d.post(t, "mentions", "zed", c.text)
			if c.mention {
				want = append(want, m.ID)
			}
		}
		tb.waitMessages(len(texts))
		if got := tb.mentioned(); !slices.Equal(got, want) {
			t.Errorf("highlighted messages %v, want %v", got, want)
		}
		// Her own message naming herself is not a mention.
		tb.say("Ada", "ada here")
		tb.waitMessages(len(texts) + 1)
		if got := tb.mentioned(); !slices.Equal(got, want) {
			t.Errorf("after her own message, highlighted messages %v, want %v", got, want)
		}
		tb.axe("a mention highlighted")
	})

	t.Run("hidden, the title counts mentions apart", func(t *testing.T) {
		front := ada.hide(tb)
		n := len(tb.messages())
		for _, text := range []string{"ada, lunch?", "one", "two", "Ada!!", "three"} {
			d.post(t, "mentions", "zed", text)
		}
		tb.waitMessages(n + 5)
		if got, want := eval[string](tb, `document.title`), "@2 (3) #mentions · cgichat"; got != want {
			t.Errorf("hidden, the title is %q, want %q", got, want)
		}
		if got := seen(); len(got.Asked) != 0 || len(got.Notes) != 0 || got.Contexts != 0 || got.Tones != 0 {
			t.Errorf("without opting in: %+v, want nothing asked, shown or played", got)
		}
		tb.toFront()
		front.close()
		if got, want := eval[string](tb, `document.title`), "#mentions · cgichat"; got != want {
			t.Errorf("visible again, the title is %q, want %q", got, want)
		}
	})

	t.Run("opting in", func(t *testing.T) {
		// Blocked in the browser's settings: the page says so.
		ada.setNotifications(pageURL, cdpbrowser.PermissionSettingDenied)
		tb.do("open the alerts", chromedp.Click(chromedp.ID("alerts-button")))
		tb.waitFor("the alerts dialog", `document.querySelector("#alerts-dialog").open`, waitTimeout)
		tb.do("tick notifications", chromedp.Click(chromedp.ID("alert-notify")))
		tb.waitFor("the problem", `!document.querySelector("#alerts-problem").hidden`, waitTimeout)
		if eval[bool](tb, `document.querySelector("#alert-notify").checked`) {
			t.Errorf("blocked by the browser, notifications are ticked")
		}
		tb.axe("the alerts dialog with its problem")
		// Not decided yet: the browser asks the reader, right after the
		// click (Chromium without a screen has no one to ask: no answer).
		ada.resetPermissions()
		tb.do("clear the last problem", chromedp.Evaluate[chromedp.Void](`document.querySelector("#alerts-problem").hidden = true`))
		tb.do("tick notifications", chromedp.Click(chromedp.ID("alert-notify")))
		tb.waitFor("the answer", `!document.querySelector("#alerts-problem").hidden`, waitTimeout)
		if got := seen().Asked; !slices.Equal(got, []bool{true}) {
			t.Errorf("permission requests %v, want one, right after the click", got)
		}
		// Allowed in the browser's settings, a tick takes.
		ada.setNotifications(pageURL, cdpbrowser.PermissionSettingGranted)
		tb.do("tick notifications", chromedp.Click(chromedp.ID("alert-notify")))
		tb.waitFor("notifications on", `document.querySelector("#alerts-button").textContent === "Alerts: notification"`, waitTimeout)
		if !eval[bool](tb, `document.querySelector("#alert-notify").checked && document.querySelector("#alerts-problem").hidden`) {
			t.Errorf("allowed, the box is not ticked or the dialog still says %q", eval[string](tb, `document.querySelector("#alerts-problem").textContent`))
		}
		tb.do("tick the sound", chromedp.Click(chromedp.ID("alert-sound")))
		if got := seen(); got.Contexts != 1 || got.Tones != 1 {
			t.Errorf("after ticking the sound: %d audio contexts and %d tones, want 1 and 1 (a sample)", got.Contexts, got.Tones)
		}
		tb.do("close the dialog", chromedp.Click(chromedp.CSS(`#alerts-form button[type=submit]`)))
		if got, want := eval[string](tb, `document.querySelector("#alerts-button").textContent`), "Alerts: notification and sound"; got != want {
			t.Errorf("the alerts button says %q, want %q", got, want)
		}
	})

	t.Run("in the background", func(t *testing.T) {
		front := ada.hide(tb)
		n := len(tb.messages())
		d.post(t, "mentions", "zed", "not for her")
		d.post(t, "mentions", "zed", "ada: are you there?")
		tb.waitMessages(n + 2)
		got := seen()
		if len(got.Notes) != 1 || got.Notes[0].Title != "zed mentioned you in #mentions" || got.Notes[0].Body != "ada: are you there?" {
			t.Errorf("notifications %+v, want one: “zed mentioned you in #mentions”, “ada: are you there?”", got.Notes)
		}
		if got.Tones != 2 {
			t.Errorf("%d tones, want 2 (the sample and the mention)", got.Tones)
		}
		tb.toFront()
		front.close()
	})

	t.Run("remembered", func(t *testing.T) {
		tb.do("reload", chromedp.Reload())
		tb.waitLive()
		if got, want := eval[string](tb, `document.querySelector("#alerts-button").textContent`), "Alerts: notification and sound"; got != want {
			t.Errorf("after a reload the alerts button says %q, want %q", got, want)
		}
		if got := seen(); len(got.Asked) != 0 {
			t.Errorf("after a reload the page asked for permission %d times, want none", len(got.Asked))
		}
	})
}

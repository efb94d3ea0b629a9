package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// typeInto replaces what the field sel holds with text, typed as a person
// would (so the page hears each change).
func (tb *tab) typeInto(sel, text string) {
	tb.t.Helper()
	tb.do("type into "+sel,
		chromedp.Focus(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).select()`, sel)),
		call(input.InsertText, input.InsertTextParams{Text: text}),
	)
}

// nickStatus types nick into the open nickname dialog and returns what the
// dialog says of it once the chat answered.
func (tb *tab) nickStatus(nick string) string {
	tb.t.Helper()
	tb.typeInto("#nick-input", nick)
	tb.waitFor("the check of "+nick, `document.querySelector("#nick-status").textContent !== ""`, waitTimeout)
	return eval[string](tb, `document.querySelector("#nick-status").textContent`)
}

// TestNickOnTwoDevices: the nickname dialog says at once how a nick stands
// — free, this browser's, someone else's, banned — and refuses the last
// two before anything is sent. The holder of a nick gets a code (and a
// link) for another device, shown with how long it works; the device
// that opens the link, or types the code, writes as that nick too.
func TestNickOnTwoDevices(t *testing.T) {
	// No timing of its own: runs beside the waiting of the others.
	t.Parallel()
	d := deploy(t, setup{})
	const room = "devices"
	url := d.URL + "#" + room
	laptop := newPerson(t, "ada's laptop").open(url)
	laptop.say("Ada", "from the laptop")
	d.exec(t, `INSERT INTO bans (nick) VALUES ('troll')`)

	t.Run("the nick is checked at once", func(t *testing.T) {
		eve := newPerson(t, "eve").open(url)
		eve.waitMessages(1)
		posts := len(d.requests.messagePosts())
		eve.do("open the nickname dialog", chromedp.Click(chromedp.ID("nick-button")))
		cases := []struct{ nick, want string }{
			{"eve", "Free: “eve” becomes yours with your first message."},
			{"ada", "“ada” is in use by someone else. Please choose another nickname."},
			{"ＡＤＡ", "“ADA” is in use by someone else. Please choose another nickname."},
			{"troll", "“troll” is banned from this chat. Please choose another nickname."},
		}
		for _, c := range cases {
			if got := eve.nickStatus(c.nick); got != c.want {
				t.Errorf("for %q the dialog says %q, want %q", c.nick, got, c.want)
			}
		}
		eve.axe("the nickname dialog, a banned nick")
		// Save refuses a taken nick before anything is sent.
		eve.nickStatus("Ada")
		eve.do("save", chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
		eve.waitFor("the refusal", `document.querySelector("#nick-input").validationMessage !== ""`, waitTimeout)
		if got := eval[string](eve, `document.querySelector("#nick-input").validationMessage`); !strings.Contains(got, "in use by someone else") {
			t.Errorf("saving Ada, the dialog says %q", got)
		}
		if !eval[bool](eve, `document.querySelector("#nick-dialog").open`) {
			t.Errorf("the dialog closed on a taken nick")
		}
		eve.nickStatus("eve")
		eve.do("save", chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
		eve.waitFor("the dialog to close", `!document.querySelector("#nick-dialog").open`, waitTimeout)
		if got := eval[string](eve, `document.querySelector("#nick-button").textContent`); got != "eve" {
			t.Errorf("the nick button says %q, want eve", got)
		}
		if n := len(d.requests.messagePosts()) - posts; n != 0 {
			t.Errorf("choosing a nick posted %d messages, want none", n)
		}
		laptop.do("open the nickname dialog", chromedp.Click(chromedp.ID("nick-button")))
		if got, want := laptop.nickStatus("Ada"), "Yours: this browser writes as “Ada”."; got != want {
			t.Errorf("the holder's dialog says %q, want %q", got, want)
		}
		laptop.do("close the dialog", chromedp.Click(chromedp.ID("nick-cancel")))
	})

	// code asks the laptop's nickname dialog for a code for another device,
	// and returns the code and its link.
	code := func(t *testing.T) (string, string) {
		t.Helper()
		laptop.do("open the nickname dialog", chromedp.Click(chromedp.ID("nick-button")))
		laptop.waitFor("the offer for another device", `!document.querySelector("#give").hidden`, waitTimeout)
		if got, want := eval[string](laptop, `document.querySelector("#give-nick").textContent`), "Ada"; got != want {
			t.Errorf("the offer names %q, want %q", got, want)
		}
		laptop.do("get a code", chromedp.Click(chromedp.ID("give-button")))
		laptop.waitFor("the code", `!document.querySelector("#give-code").hidden`, waitTimeout)
		c := eval[string](laptop, `document.querySelector("#give-code-text").textContent`)
		link := eval[string](laptop, `document.querySelector("#give-link").value`)
		if !regexp.MustCompile(`^[0-9A-Z]{5}-[0-9A-Z]{5}$`).MatchString(c) {
			t.Fatalf("the code reads %q, want XXXXX-XXXXX", c)
		}
		if want := d.URL + "#transfer=" + c + "&room=" + room; link != want {
			t.Errorf("the link is %q, want %q", link, want)
		}
		lasts := eval[string](laptop, `document.querySelector("#give-time").textContent`)
		if !regexp.MustCompile(`^Works once, for [45]:[0-5]\d more \(until \d\d:\d\d\)\. `).MatchString(lasts) {
			t.Errorf("the page says of the code %q, want how long it works", lasts)
		}
		return c, link
	}

	t.Run("a link to the other device", func(t *testing.T) {
		_, link := code(t)
		laptop.axe("a code for another device")
		laptop.screenshot("nick-on-another-device-360px", 360, 740, false)
		laptop.do("close the dialog", chromedp.Click(chromedp.ID("nick-cancel")))

		phone := newPerson(t, "ada's phone").open(link)
		phone.waitFor("the nick from the laptop", `document.querySelector("#nick-button").textContent === "Ada"`, waitTimeout)
		if got := eval[string](phone, `location.hash`); got != "#"+room {
			t.Errorf("after the code, the address ends in %q, want #%s (the code out of it)", got, room)
		}
		if got, want := eval[string](phone, `document.querySelector("#done").textContent`), "You write as Ada on this device now, as on the other."; got != want {
			t.Errorf("the phone says %q, want %q", got, want)
		}
		phone.say("", "from the phone")
		laptop.say("", "from the laptop again")
		want := []line{{"Ada", "from the laptop"}, {"Ada", "from the phone"}, {"Ada", "from the laptop again"}}
		for _, tb := range []*tab{laptop, phone} {
			tb.waitMessages(len(want))
			checkLog(t, tb, want)
		}
		if got := phone.sendError(); got != "" {
			t.Errorf("the phone says %q under the box", got)
		}

		// The link works once.
		other := newPerson(t, "someone else").openTab()
		other.expectConsoleError("status of 403")
		other.do("open the used link", chromedp.Navigate(link))
		other.waitFor("the refusal", `document.querySelector("#nick-dialog").open && document.querySelector("#redeem-status").textContent !== ""`, waitTimeout)
		t.Logf("a used link: %q", eval[string](other, `document.querySelector("#redeem-status").textContent`))
		if got := eval[string](other, `document.querySelector("#nick-button").textContent`); got == "Ada" {
			t.Errorf("a used code gave the nick")
		}
	})

	t.Run("a code typed on the other device", func(t *testing.T) {
		c, _ := code(t)
		laptop.do("close the dialog", chromedp.Click(chromedp.ID("nick-cancel")))
		tablet := newPerson(t, "ada's tablet").open(url)
		tablet.do("open the nickname dialog", chromedp.Click(chromedp.ID("nick-button")))
		// As a person may type it: small letters, a space for the hyphen.
		tablet.typeInto("#redeem-input", strings.ToLower(strings.Replace(c, "-", " ", 1)))
		tablet.do("use the code", chromedp.Click(chromedp.CSS(`#redeem-form button[type=submit]`)))
		tablet.waitFor("the nick", `document.querySelector("#nick-button").textContent === "Ada" && !document.querySelector("#nick-dialog").open`, waitTimeout)
		tablet.say("", "from the tablet")
		tablet.waitFor("the message", `[...document.querySelectorAll("#log .msg .text")].some((e) => e.textContent === "from the tablet")`, waitTimeout)
		if got := tablet.sendError(); got != "" {
			t.Errorf("the tablet says %q under the box", got)
		}
	})
}

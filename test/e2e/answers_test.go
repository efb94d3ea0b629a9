package e2e

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"
)

// Pages that answer where the chat should (TestRealHosts has the real
// servers' own: ModSecurity's 403, Apache's 500, nginx's 502, CloudLinux's
// 508).
const (
	// frontEndTooLarge is what nginx in front of a host answers a body
	// over its client_max_body_size.
	frontEndTooLarge = `<html>
<head><title>413 Request Entity Too Large</title></head>
<body>
<center><h1>413 Request Entity Too Large</h1></center>
<hr><center>nginx</center>
</body>
</html>
`
	// notFound is Apache's page for a file that is not there.
	notFound = `<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html><head>
<title>404 Not Found</title>
</head><body>
<h1>Not Found</h1>
<p>The requested URL was not found on this server.</p>
</body></html>
`
	// loginPage is what a Wi-Fi network's captive portal answers every
	// request with until the person logs in: its own page, as a 200.
	loginPage = `<!doctype html>
<html><head><title>Welcome to CoffeeNet</title></head>
<body><form method="post" action="/login"><p>Accept the terms to use the Wi-Fi.</p>
<button>Connect</button></form></body></html>
`
)

// TestHostAnswers: an answer that is not the chat's own JSON — a front
// end's 413, a 404 for programs that were not uploaded, a Wi-Fi login page
// — is said in words: who answered and what helps, never its status line
// alone, and never its HTML. The text of a message stays in the box, and a
// text the host refuses for its size is not sent again as it is.
func TestHostAnswers(t *testing.T) {
	// No timing of its own: runs beside the waiting of the others.
	t.Parallel()
	d := deploy(t, setup{})
	tb := newPerson(t, "reader").open(d.URL + "#answers")
	tb.say("reader", "first, a message that goes through")
	tb.waitMessages(1)

	posts := []struct {
		name string
		page hostPage
		want string
		// resend: sending the same text again could work
		resend bool
	}{
		{
			"a front end's 413", hostPage{http.StatusRequestEntityTooLarge, "text/html", frontEndTooLarge},
			"Not sent: The web host takes only shorter messages than this one. Please shorten it or send it in parts.",
			false,
		},
		{
			"404: cgi-bin not uploaded", hostPage{http.StatusNotFound, "text/html; charset=iso-8859-1", notFound},
			"Not sent: The chat's programs are not on this web server (its cgi-bin folder may not be uploaded). The site owner can fix this — see " + helpName + ".",
			true,
		},
		{
			"a Wi-Fi login page", hostPage{http.StatusOK, "text/html", loginPage},
			"Not sent: The network answered with a page of its own instead of the chat, perhaps a Wi-Fi login page. Log in there (open any web page), then send again.",
			true,
		},
	}
	for i, c := range posts {
		t.Run("post: "+c.name, func(t *testing.T) {
			d.postPage.Store(&c.page)
			defer d.postPage.Store(nil)
			if c.page.Status != http.StatusOK {
				tb.expectConsoleError(fmt.Sprintf("status of %d", c.page.Status))
			}
			text := fmt.Sprintf("message %d", i+1)
			before := eval[string](tb, `document.querySelector("#send-error").textContent`)
			tb.do("empty the message box", chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = ""`))
			tb.typeText(text)
			tb.pressEnter()
			tb.waitFor("the refusal", fmt.Sprintf(`!document.querySelector("#send-error").hidden && document.querySelector("#send-error").textContent !== %q`, before), waitTimeout)
			if got := eval[string](tb, `document.querySelector("#send-error").textContent`); got != c.want {
				t.Errorf("the page says %q, want %q", got, c.want)
			}
			if got := eval[string](tb, `document.querySelector("#text").value`); got != text {
				t.Errorf("after the refusal the message box holds %q, want %q", got, text)
			}
			if got := eval[bool](tb, `!document.querySelector("#send").disabled`); got != c.resend {
				t.Errorf("Send is on: %v, want %v", got, c.resend)
			}
		})
	}
	checkLog(t, tb, []line{{"reader", "first, a message that goes through"}})

	streams := []struct {
		name string
		page hostPage
		want string
	}{
		{
			"404: cgi-bin not uploaded", hostPage{http.StatusNotFound, "text/html; charset=iso-8859-1", notFound},
			"The chat's programs are not on this web server (its cgi-bin folder may not be uploaded). The site owner can fix this — see " + helpName + ".",
		},
		{
			"a Wi-Fi login page", hostPage{http.StatusOK, "text/html", loginPage},
			"The network answered with a page of its own instead of the chat, perhaps a Wi-Fi login page. Log in there (open any web page), then choose Retry now.",
		},
	}
	for _, c := range streams {
		t.Run("stream: "+c.name, func(t *testing.T) {
			d.streamPage.Store(&c.page)
			defer d.streamPage.Store(nil)
			tb := newPerson(t, "another").openTab()
			tb.expectConsoleError("MIME type")
			if c.page.Status != http.StatusOK {
				tb.expectConsoleError(fmt.Sprintf("status of %d", c.page.Status))
			}
			tb.do("load the page", chromedp.Navigate(d.URL+"#answers"))
			tb.waitFor("the page to say why it is offline", `document.querySelector("#state").dataset.status === "offline" && document.querySelector("#trouble-text").textContent !== ""`, waitTimeout)
			if got := tb.trouble(); got != c.want {
				t.Errorf("under the header the page says %q, want %q", got, c.want)
			}
			if got := tb.state(); !offlineState.MatchString(got) {
				t.Errorf("the page says %q, want “Offline — trying again in N s”", got)
			}
		})
	}
}

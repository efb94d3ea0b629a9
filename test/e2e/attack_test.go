package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
)

// TestHostileInput: the page holds against what a stranger can send it or
// make it open, and against a browser that cannot keep what it should. A
// message sent while localStorage is full still goes out; an answer for
// older messages that holds new or broken ones shows only the older ones;
// links that read as one site and lead to another are not links; a
// transfer link does not change the nick of a reader who has one, and a
// malformed one does not stop the page; and a page of another origin that
// frames the chat gets no chat to lay out under its own.
func TestHostileInput(t *testing.T) {
	// No timing of its own: runs beside the waiting of the others.
	t.Parallel()
	d := deploy(t, setup{})

	t.Run("a message sent while storage is full", func(t *testing.T) {
		const room = "full"
		ann := newPerson(t, "ann").open(d.URL + "#" + room)
		ann.say("ann", "before the storage fills")
		// Another application of this origin (a shared host's site is
		// one origin) filled localStorage up.
		filled := eval[int](ann, `(() => {
			let n = 0;
			for (let size = 1 << 20; size >= 1; ) {
				try {
					localStorage.setItem("other-app " + n, "x".repeat(size));
					n++;
				} catch {
					size >>= 1;
				}
			}
			return n;
		})()`)
		t.Logf("filled localStorage with %d entries", filled)
		ann.submit("", "sent while the storage is full")
		want := []line{{"ann", "before the storage fills"}, {"ann", "sent while the storage is full"}}
		ann.waitMessages(len(want))
		checkLog(t, ann, want)
		ann.waitFor("the outbox to empty", `document.querySelectorAll("#outbox .pending").length === 0`, waitTimeout)
		eval[bool](ann, `(localStorage.clear(), true)`)
	})

	t.Run("an answer for older messages that holds others", func(t *testing.T) {
		const room = "older"
		var sent []message
		for i := range 3 {
			sent = append(sent, d.post(t, room, "zed", fmt.Sprintf("message %d", i+1)))
		}
		next := sent[2].ID + 1
		amy := newPerson(t, "amy").openTab()
		// The page's request for messages before the first one gets an
		// answer (of a proxy's, or of a broken server) that holds an older
		// message, and beside it one of the ids still to come, one of
		// another room and one without a time.
		older := []message{
			{ID: next, Room: room, Nick: "mallory", Text: "from the future", Time: sent[0].Time},
			{ID: sent[0].ID - 1, Room: room, Nick: "mallory", Text: "no time", Time: "soon"},
			{ID: sent[0].ID - 1, Room: "elsewhere", Nick: "mallory", Text: "another room", Time: sent[0].Time},
			{ID: sent[0].ID - 1, Room: room, Nick: "amy", Text: "the older one", Time: sent[0].Time},
		}
		body, err := json.Marshal(map[string]any{"messages": older, "more": false})
		if err != nil {
			t.Fatal(err)
		}
		answered := make(chan string, 4)
		paused := chromedp.Events(amy.ctx, fetch.RequestPaused)
		go func() {
			for ev, err := range paused {
				if err != nil {
					return
				}
				answered <- ev.Request.URL
				chromedp.Call(amy.ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
					RequestID:       ev.RequestID,
					ResponseCode:    200,
					ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}},
					Body:            body,
				})
			}
		}()
		amy.do("answer the requests for older messages",
			call(fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*cgi-bin/stream?*before=*"}}}))
		amy.goTo(d.URL + "#" + room)
		select {
		case u := <-answered:
			t.Logf("answered %s", u)
		case <-time.After(waitTimeout):
			t.Fatalf("the page asked for no older messages")
		}
		amy.waitFor("the beginning of the room", `document.querySelector("#log .top").classList.contains("beginning")`, waitTimeout)
		want := []line{{"amy", "the older one"}, {"zed", "message 1"}, {"zed", "message 2"}, {"zed", "message 3"}}
		checkLog(t, amy, want)
		// The id given to "from the future" is the next message's: it shows.
		m := d.post(t, room, "zed", "message 4")
		if m.ID != next {
			t.Fatalf("the next message got id %d, want %d", m.ID, next)
		}
		amy.waitMessages(len(want) + 1)
		checkLog(t, amy, append(want, line{"zed", "message 4"}))
	})

	t.Run("links that read as one site and lead to another", func(t *testing.T) {
		const room = "links"
		d.post(t, room, "zed", "log in at https://bank.example@evil.example/login now")
		d.post(t, room, "zed", "see https://evil.example/\u202Egro.elpmaxe")
		bo := newPerson(t, "bo").open(d.URL + "#" + room)
		bo.waitMessages(2)
		type link struct{ Text, Href string }
		got := eval[[]link](bo, `[...document.querySelectorAll("#log .msg .text a")].map((a) => ({text: a.textContent, href: a.href}))`)
		want := []link{{"https://evil.example/", "https://evil.example/"}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("the links are %+v, want %+v", got, want)
		}
	})

	t.Run("a transfer link", func(t *testing.T) {
		const room = "transfer"
		// Mallory holds her nick and makes a code for it.
		d.post(t, room, "mallory", "hello")
		in := bytes.NewReader([]byte(`{"action":"transfer","nick":"mallory"}`))
		res, err := d.client("mallory").Post(d.URL+"cgi-bin/post", "application/json", in)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var c struct{ Code string }
		if res.StatusCode != http.StatusOK || json.Unmarshal(out, &c) != nil || c.Code == "" {
			t.Fatalf("transfer: %d %s", res.StatusCode, out)
		}

		cy := newPerson(t, "cy").open(d.URL + "#" + room)
		cy.say("cy", "I am cy")
		// Mallory's link, opened by cy: cy writes as cy until cy says
		// otherwise.
		cy.do("open mallory's link", chromedp.Navigate(d.URL+"#transfer="+c.Code+"&room="+room))
		cy.waitFor("the nickname dialog", `document.querySelector("#nick-dialog").open`, waitTimeout)
		if got := eval[string](cy, `document.querySelector("#nick-button").textContent`); got != "cy" {
			t.Errorf("after mallory's link, cy writes as %q", got)
		}
		if got := eval[string](cy, `document.querySelector("#redeem-input").value`); got != c.Code {
			t.Errorf("the dialog holds the code %q, want %q", got, c.Code)
		}
		t.Logf("the dialog says %q", eval[string](cy, `document.querySelector("#redeem-status").textContent`))
		cy.do("use the code", chromedp.Click(chromedp.CSS(`#redeem-form button[type=submit]`)))
		cy.waitFor("the nick from the link", `document.querySelector("#nick-button").textContent === "mallory"`, waitTimeout)

		// A malformed link: the page starts all the same.
		dee := newPerson(t, "dee").openTab()
		dee.expectConsoleError("status of 400")
		dee.goTo(d.URL + "#transfer=%E0%A4&room=" + room)
		dee.waitFor("the nickname dialog", `document.querySelector("#nick-dialog").open`, waitTimeout)
		if got := eval[string](dee, `location.hash`); got != "#"+room {
			t.Errorf("the address ends in %q, want #%s", got, room)
		}
	})

	t.Run("framed by a page of another origin", func(t *testing.T) {
		const room = "framed"
		// Another site on the same host name (another subdomain of a shared
		// host's domain, say): the browser sends the chat's cookies to the
		// frame.
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><title>a game</title><iframe src="%s#%s" style="opacity:0.01"></iframe>`, d.URL, room)
		}))
		t.Cleanup(other.Close)
		eve := newPerson(t, "eve").openTab()
		eve.do("open the other site", chromedp.Navigate(other.URL))
		ctx, cancel := context.WithTimeout(eve.ctx, stepTimeout)
		defer cancel()
		frames, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS("iframe")))
		if err != nil || len(frames) != 1 {
			t.Fatalf("the frame: %v (%d)", err, len(frames))
		}
		const says = "This chat works only in a tab of its own, not inside another site's page. Open the chat."
		deadline := time.Now().Add(waitTimeout)
		for {
			ctx, cancel := context.WithTimeout(eve.ctx, stepTimeout)
			got, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("body"), chromedp.FromNode(frames[0])))
			cancel()
			if err == nil && strings.TrimSpace(got) == says {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the framed chat shows %q (%v), want %q", got, err, says)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := len(d.requests.streams(room)); n != 0 {
			t.Errorf("the framed chat asked for the stream %d times, want none", n)
		}
	})
}

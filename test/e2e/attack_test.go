package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
)

// TestHostileInput: the page holds against what a stranger can send it or
// make it open, and against a browser that cannot keep what it should.
// A message sent while localStorage is full still goes out. An answer for
// older messages that holds new or broken ones shows only the older ones.
// Links that read as one site and lead to another are not links.
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
}

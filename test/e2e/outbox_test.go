package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// waitingLine is a message the page shows as on its way.
type waitingLine struct {
	Nick, Text, State string
}

// outbox returns the messages the page shows under the log as on their
// way, in order.
func (tb *tab) outbox() []waitingLine {
	tb.t.Helper()
	return eval[[]waitingLine](tb, `[...document.querySelectorAll("#outbox .pending")].map((li) => ({
		nick: li.querySelector(".nick").textContent,
		text: li.querySelector(".text").firstChild.textContent,
		state: li.querySelector(".sending").textContent.trim(),
	}))`)
}

// sendError returns what the line under the message box says, or "".
func (tb *tab) sendError() string {
	tb.t.Helper()
	return eval[string](tb, `document.querySelector("#send-error").hidden ? "" : document.querySelector("#send-error").textContent`)
}

// TestSendingWhileAway: messages sent while the chat does not answer wait
// under the log, marked as on their way, in order; they outlive a reload;
// once the chat answers again each goes out once, in order, with the key
// it had from the start, and shows once in every browser. A message whose
// answer was lost is stored once all the same.
func TestSendingWhileAway(t *testing.T) {
	// No timing of its own: runs beside the waiting of the others.
	t.Parallel()
	d := deploy(t, setup{})
	const room = "away"
	url := d.URL + "#" + room
	ann := newPerson(t, "ann").open(url)
	bo := newPerson(t, "bo").open(url)
	ann.say("ann", "before the outage")
	want := []line{{"ann", "before the outage"}}
	bo.waitMessages(1)

	t.Run("sent while the chat is down", func(t *testing.T) {
		// Every request to the programs gets no answer: posts, actions,
		// the stream, older history.
		ann.expectConsoleError("ERR_EMPTY_RESPONSE")
		bo.expectConsoleError("ERR_EMPTY_RESPONSE")
		d.postDown.Store(true)
		d.streamDown.Store(true)
		texts := []string{"one, sent while the chat is down", "two, sent while the chat is down", "three, sent while the chat is down"}
		for _, text := range texts {
			ann.submit("", text) // the box empties at once: the message waits
		}
		var waiting []waitingLine
		for _, text := range texts {
			waiting = append(waiting, waitingLine{"ann", text, "sending…"})
		}
		ann.waitFor("the messages to wait", fmt.Sprintf(`document.querySelectorAll("#outbox .pending").length === %d`, len(texts)), waitTimeout)
		if got := ann.outbox(); !slices.Equal(got, waiting) {
			t.Errorf("under the log the page shows %+v, want %+v", got, waiting)
		}
		checkLog(t, ann, want)
		ann.waitFor("the page to say why they wait", `!document.querySelector("#send-error").hidden`, waitTimeout)
		if got, w := ann.sendError(), "Not sent yet: the chat could not be reached. Your messages wait here and go out by themselves as soon as it answers."; got != w {
			t.Errorf("under the box the page says %q, want %q", got, w)
		}
		ann.axe("messages waiting to be sent")
		ann.screenshot("sending-while-away", 900, 480, false)

		// A reload keeps them.
		ann.do("reload the page", chromedp.Reload())
		ann.waitFor("the waiting messages after the reload", fmt.Sprintf(`document.querySelectorAll("#outbox .pending").length === %d`, len(texts)), waitTimeout)
		if got := ann.outbox(); !slices.Equal(got, waiting) {
			t.Errorf("after a reload the page shows %+v under the log, want %+v", got, waiting)
		}
		ann.submit("", "four, sent after the reload")
		texts = append(texts, "four, sent after the reload")
		time.Sleep(2 * time.Second) // a few tries meanwhile

		d.postDown.Store(false)
		d.streamDown.Store(false)
		for _, text := range texts {
			want = append(want, line{"ann", text})
		}
		for _, tb := range []*tab{ann, bo} {
			tb.waitMessages(len(want))
			checkLog(t, tb, want)
		}
		ann.waitFor("the outbox to empty", `document.querySelectorAll("#outbox .pending").length === 0`, waitTimeout)
		ann.waitFor("the line under the box to go", `document.querySelector("#send-error").hidden`, waitTimeout)
		if n := d.queryInt(t, `SELECT count(*) FROM messages WHERE room = ? AND kind = 'message'`, room); n != int64(len(want)) {
			t.Errorf("the room holds %d messages, want %d", n, len(want))
		}
		// Each message kept its key on every try, and had a key of its own.
		keys := map[string]string{}
		tries := map[string]int{}
		for _, p := range d.requests.messagePosts() {
			if p.Room != room || p.Nick != "ann" {
				continue
			}
			if p.IdempotencyKey == "" {
				t.Errorf("%q was posted without an Idempotency-Key", p.Text)
			}
			if k, ok := keys[p.Text]; ok && k != p.IdempotencyKey {
				t.Errorf("%q was posted with the keys %s and %s, want one", p.Text, k, p.IdempotencyKey)
			}
			keys[p.Text] = p.IdempotencyKey
			tries[p.Text]++
		}
		seen := map[string]bool{}
		for text, k := range keys {
			if seen[k] {
				t.Errorf("two messages were posted with the key %s", k)
			}
			seen[k] = true
			t.Logf("%q: %d tries", text, tries[text])
		}
		if tries[texts[0]] < 2 {
			t.Errorf("%q was tried %d times, want it tried again after the outage", texts[0], tries[texts[0]])
		}
	})

	t.Run("an answer lost on the way", func(t *testing.T) {
		for _, tb := range []*tab{ann, bo} {
			tb.expectConsoleError("ERR_EMPTY_RESPONSE")
			tb.expectConsoleError("ERR_INCOMPLETE_CHUNKED_ENCODING") // the stream cut
		}
		// The stream brings the message before the page knows: the page
		// shows it once, and its retry gets the same message back.
		d.loseAnswers.Store(1)
		ann.say("", "stored, but its answer was lost")
		want = append(want, line{"ann", "stored, but its answer was lost"})
		ann.waitMessages(len(want))
		ann.waitFor("the outbox to empty", `document.querySelectorAll("#outbox .pending").length === 0`, waitTimeout)
		// The stream is away too: only the retry with the key tells.
		d.streamDown.Store(true)
		d.srv.CloseClientConnections()
		ann.waitFor("the stream to be away", `document.querySelector("#state").dataset.status !== "live"`, waitTimeout)
		d.loseAnswers.Store(1)
		ann.say("", "stored, answer lost, no stream")
		want = append(want, line{"ann", "stored, answer lost, no stream"})
		ann.waitMessages(len(want))
		d.streamDown.Store(false)
		for _, tb := range []*tab{ann, bo} {
			tb.waitMessages(len(want))
			checkLog(t, tb, want)
		}
		ann.waitFor("the outbox to empty", `document.querySelectorAll("#outbox .pending").length === 0`, waitTimeout)
		if n := d.queryInt(t, `SELECT count(*) FROM messages WHERE room = ? AND kind = 'message'`, room); n != int64(len(want)) {
			t.Errorf("the room holds %d messages, want %d: a message was stored twice", n, len(want))
		}
		// Each was posted twice: once stored with its answer lost, once
		// more with its key, answered with the same message.
		for _, text := range []string{"stored, but its answer was lost", "stored, answer lost, no stream"} {
			n := 0
			for _, p := range d.requests.messagePosts() {
				if p.Text == text {
					n++
				}
			}
			t.Logf("%q: %d tries", text, n)
			if n < 2 {
				t.Errorf("%q was posted %d times, want its answer lost once and the message posted again", text, n)
			}
		}
	})
}

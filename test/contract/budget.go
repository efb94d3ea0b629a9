package contract

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// ready is the data of a ready event.
type ready struct {
	Mode  string `json:"mode"`
	Retry int    `json:"retry"` // milliseconds, as the stream's retry:
}

// readyOf reads s to its ready event and returns the messages before it
// and the event's data.
func readyOf(t *testing.T, s *Stream) ([]int64, ready) {
	t.Helper()
	var ids []int64
	for {
		ev, ok := s.Next(t, 10*time.Second)
		if !ok {
			t.Fatal("the stream ended before its ready event")
		}
		switch ev.Type {
		case "message":
			id, _ := strconv.ParseInt(ev.ID, 10, 64)
			ids = append(ids, id)
		case "ready":
			var r ready
			if err := json.Unmarshal([]byte(ev.Data), &r); err != nil {
				t.Fatalf("ready data %q: %v", ev.Data, err)
			}
			return ids, r
		}
	}
}

// testBudgetPolls holds a host to a budget of one live stream: the next
// reader is answered as a poll (what is pending, ready with mode poll and
// a retry: of at least a second, then the end), resumes from its
// Last-Event-ID with nothing lost and nothing twice, and streams live once
// the slot is free.
func testBudgetPolls(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_MAX_STREAMS": "1", "CHAT_STREAMS_PER_CLIENT": "0"})
	seeded := d.Seed(t, "lobby", 2)
	live := Open(t, d.StreamURL(url.Values{"reader": {"live-1"}}), nil)
	if _, r := readyOf(t, live); r.Mode != "live" {
		t.Fatalf("the first reader: mode %q, want live", r.Mode)
	}

	poll := Open(t, d.StreamURL(url.Values{"reader": {"poller-1"}}), nil)
	ids, r := readyOf(t, poll)
	if r.Mode != "poll" || r.Retry < 1000 || r.Retry > 10000 {
		t.Errorf("past the budget: mode %q, retry %d ms; want poll, 1000 to 10000", r.Mode, r.Retry)
	}
	if poll.FirstRetry != r.Retry {
		t.Errorf("retry: %d, ready says %d: want the same", poll.FirstRetry, r.Retry)
	}
	if len(ids) != 2 || ids[0] != seeded[0].ID || ids[1] != seeded[1].ID {
		t.Errorf("the poll's backlog: %v, want the history %d, %d", ids, seeded[0].ID, seeded[1].ID)
	}
	if ms, _ := poll.Rest(t, 5*time.Second); len(ms) != 0 {
		t.Errorf("the poll sent %d messages after ready, want it to end", len(ms))
	}

	m := d.Post(t, "lobby", "ada", "while polling")
	h := http.Header{"Last-Event-Id": {strconv.FormatInt(seeded[1].ID, 10)}}
	again := Open(t, d.StreamURL(url.Values{"reader": {"poller-1"}}), h)
	if ids, r := readyOf(t, again); r.Mode != "poll" || len(ids) != 1 || ids[0] != m.ID {
		t.Errorf("the next poll: mode %q, ids %v; want poll with %d only", r.Mode, ids, m.ID)
	}
	again.Rest(t, 5*time.Second)

	// The live reader leaves; the poller gets the slot once its stream is
	// gone (a CGI stream notices at its next heartbeat).
	live.Close()
	h.Set("Last-Event-Id", strconv.FormatInt(m.ID, 10))
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := Open(t, d.StreamURL(url.Values{"reader": {"poller-1"}}), h)
		ids, r := readyOf(t, s)
		if len(ids) != 0 {
			t.Fatalf("a resume after %d sent %v again", m.ID, ids)
		}
		if r.Mode == "live" {
			break
		}
		s.Rest(t, 5*time.Second)
		if time.Now().After(deadline) {
			t.Fatal("the freed slot never went to the poller")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testReaderSupersedes holds an address to one open stream: the same
// reader reconnecting is never refused and ends its older stream; another
// reader from the address is refused.
func testReaderSupersedes(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_STREAMS_PER_CLIENT": "1"})
	first := Open(t, d.StreamURL(url.Values{"reader": {"tab-1"}}), nil)
	readyOf(t, first)
	for i := range 3 {
		s := Open(t, d.StreamURL(url.Values{"reader": {"tab-1"}}), nil)
		if _, r := readyOf(t, s); r.Mode != "live" {
			t.Errorf("reconnect %d: mode %q, want live", i, r.Mode)
		}
		// The older stream ends by itself.
		first.Rest(t, 15*time.Second)
		first = s
	}
	res, err := http.Get(d.StreamURL(url.Values{"reader": {"tab-2"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("another reader from the address: %d, want 429", res.StatusCode)
	}
}

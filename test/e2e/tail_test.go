package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tailEvery is how often the page reads a tail file: the "every" of the
// poll's ready event.
const tailEvery = 2 * time.Second

// tailFiles serves dir, the chat's tail/ folder, as a web server serves
// static files, with the strong ETag Apache gives a file (its
// modification time, to the microsecond, and its size): Go's file server
// sends only Last-Modified, to the second, and would answer 304 to a file
// rewritten within the second it was last read. While held is set, each
// request waits for it to be released first.
func tailFiles(dir string, held *atomic.Pointer[chan struct{}], fail *atomic.Int32) http.Handler {
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for n := fail.Load(); n > 0; n = fail.Load() {
			if fail.CompareAndSwap(n, n-1) {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
		}
		if c := held.Load(); c != nil {
			select {
			case <-*c:
			case <-r.Context().Done():
				return
			}
		}
		if tag := etag(filepath.Join(dir, filepath.FromSlash(path.Clean("/"+r.URL.Path)))); tag != "" {
			w.Header().Set("ETag", tag)
		}
		files.ServeHTTP(w, r)
	})
}

// etag returns the ETag tailFiles gives the file at name, or "" when it
// is no file.
func etag(name string) string {
	fi, err := os.Stat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixMicro())
}

// holdTails makes every read of a tail file wait until the returned
// function is called.
func (d *deployment) holdTails() (release func()) {
	c := make(chan struct{})
	d.tailsHeld.Store(&c)
	return func() {
		d.tailsHeld.Store(nil)
		close(c)
	}
}

// tails returns the requests for tail files, oldest first.
func (l *requestLog) tails() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []request
	for _, r := range l.list {
		if strings.HasPrefix(r.Path, "tail/") {
			out = append(out, r)
		}
	}
	return out
}

// between returns the requests among rs made after from and before to.
func between(rs []request, from, to time.Time) []request {
	return slices.DeleteFunc(slices.Clone(rs), func(r request) bool {
		return !r.At.After(from) || !r.At.Before(to)
	})
}

// readyData opens a stream of room as reader from Go and returns the
// data of its ready event and the response, still open.
func readyData(ctx context.Context, d *deployment, room, reader string) (string, *http.Response, error) {
	q := url.Values{"room": {room}, "reader": {reader}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+"cgi-bin/stream?"+q.Encode(), nil)
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", nil, err
	}
	lines := bufio.NewScanner(res.Body)
	inReady := false
	for lines.Scan() {
		switch line := lines.Text(); {
		case line == "event: ready":
			inReady = true
		case inReady && strings.HasPrefix(line, "data: "):
			return strings.TrimPrefix(line, "data: "), res, nil
		}
	}
	res.Body.Close()
	return "", nil, fmt.Errorf("stream of %s as %s: no ready event (%v)", room, reader, lines.Err())
}

// holdLiveSlot takes the host's one live stream (CHAT_MAX_STREAMS=1) for
// the rest of the test, as a reader in another room, so that the page is
// answered as a poll.
func holdLiveSlot(t *testing.T, d *deployment) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	data, res, err := readyData(ctx, d, "elsewhere", "holder")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(data, `"mode":"live"`) {
		t.Fatalf("the stream holding the budget's one slot: ready says %s, want live", data)
	}
	// Its heartbeats are read, so that it stays open.
	go func() {
		defer res.Body.Close()
		buf := make([]byte, 4096)
		for {
			if _, err := res.Body.Read(buf); err != nil {
				return
			}
		}
	}()
}

// crowd records n readers of another room as having just polled this web
// host, as the streams table keeps them (each poll ended, and what it
// cost): the load of the 1,000-reader target. The program spaces polls by
// how many there are, so the next poll's retry: is its longest, 30 s, and
// within a test of less than that the page calls the program only when a
// tail file asks it to.
func (d *deployment) crowd(t *testing.T, n int) {
	t.Helper()
	d.exec(t, `WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?)
		INSERT INTO streams (owner, room, reader, host, addr, kind, open, seen_at, cost)
		SELECT 'crowd', 'elsewhere', 'crowd-' || i, (SELECT host FROM streams WHERE reader = 'holder'),
			'192.0.2.1', 'poll', 0, (julianday('now') - 2440587.5) * 86400, 0.05 FROM k`, n)
}

// deleteOwn deletes message id as nick, who posted it (the nick's cookie).
func (d *deployment) deleteOwn(t *testing.T, nick string, id int64) {
	t.Helper()
	in, _ := json.Marshal(map[string]any{"action": "delete", "id": id})
	res, err := d.client(nick).Post(d.URL+"cgi-bin/post", "application/json", strings.NewReader(string(in)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("delete %d as %s: status %d, want 200", id, nick, res.StatusCode)
	}
}

// TestTailPolling: on a host whose stream budget is full, a reader is
// answered as a poll that names the room's tail file (issue 12). The page
// then reads the room from that static file every 2 s and says so, and
// calls the stream program only at the poll's retry:. A message posted
// meanwhile and a deletion arrive through the tail, with no program run in
// between; more messages at once than the file holds make the page call
// the program at once, and it shows each of them once, in order.
func TestTailPolling(t *testing.T) {
	// Mostly waiting: runs beside the other parallel tests.
	t.Parallel()
	d := deploy(t, setup{env: []string{"CHAT_MAX_STREAMS=1", "CHAT_STREAMS_PER_CLIENT=0"}})
	const room = "tailed"
	want := []line{{"zed", "before the page opened"}}
	d.post(t, room, want[0].Nick, want[0].Text)
	holdLiveSlot(t, d)
	d.crowd(t, 1000)
	// What a poll says now, asked from Go in the crowd's room (which
	// needs a message to have a tail file).
	d.post(t, "elsewhere", "zed", "in the crowd's room")
	data, res, err := readyData(t.Context(), d, "elsewhere", "probe")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var said struct {
		Mode  string
		Retry int
		Tail  string
		Every int
	}
	if err := json.Unmarshal([]byte(data), &said); err != nil || said.Mode != "poll" || said.Tail == "" || said.Every != int(tailEvery.Milliseconds()) {
		t.Fatalf("a poll past the budget says %s, want mode poll, a tail, every %d", data, tailEvery.Milliseconds())
	}
	retry := time.Duration(said.Retry) * time.Millisecond
	if retry < 20*time.Second {
		t.Fatalf("with 1,000 pollers a poll says retry %s, want the longest (30 s): the test would see program calls at its rhythm", retry)
	}

	tb := newPerson(t, "reader").open(d.URL + "#" + room)
	tb.waitMessages(1)
	if got := eval[string](tb, `document.querySelector("#state").dataset.mode`); got != "poll" {
		t.Fatalf("past the stream budget the page is in mode %q, want poll", got)
	}
	if got, want := tb.state(), "Live, checking every 2 s"; got != want {
		t.Errorf("reading the tail, the page says %q, want %q", got, want)
	}
	// The tail is read: the page's first read, within 2 s ± 20 %.
	deadline := time.Now().Add(3 * tailEvery)
	for len(d.requests.tails()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no request for a tail file within %s of the page opening", 3*tailEvery)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A message: within a tail read or two, with no program run between.
	posted := time.Now()
	m := d.post(t, room, "zed", "through the tail")
	want = append(want, line{"zed", "through the tail"})
	tb.waitMessages(len(want))
	shown := time.Now()
	t.Logf("a message reached the page %s after its post", shown.Sub(posted).Round(time.Millisecond))
	if n := len(between(d.requests.streams(room), posted, shown)); n != 0 {
		t.Errorf("%d stream requests between the post and the page showing it, want none (read from the tail)", n)
	}
	checkLog(t, tb, want)

	// A deletion: the same way.
	deleted := time.Now()
	d.deleteOwn(t, "zed", m.ID)
	want = want[:len(want)-1]
	tb.waitFor("the deleted message to leave the log", fmt.Sprintf(`!document.querySelector('#log .msg[data-id="%d"]')`, m.ID), waitTimeout)
	gone := time.Now()
	t.Logf("a deletion reached the page %s after it was made", gone.Sub(deleted).Round(time.Millisecond))
	if n := len(between(d.requests.streams(room), deleted, gone)); n != 0 {
		t.Errorf("%d stream requests between the deletion and the page showing it, want none (read from the tail)", n)
	}

	// More than the file holds, while the page cannot read it: the tail
	// then does not reach back to the page's last event, and the page
	// asks the program for the rest at once. Four posters at a time keep
	// the hold short; the ids say the order. The page's last event before
	// is the deletion's, a row of its own.
	last := strconv.FormatInt(d.queryInt(t, "SELECT max(id) FROM messages WHERE room = ?", room), 10)
	release := d.holdTails()
	burst := make([]message, 60)
	errs := make(chan error, len(burst))
	for w := range 4 {
		go func() {
			for i := w; i < len(burst); i += 4 {
				var err error
				burst[i], err = d.send(room, "zed", fmt.Sprintf("burst %d", i+1))
				errs <- err
			}
		}()
	}
	for range burst {
		if err := <-errs; err != nil {
			release()
			t.Fatal(err)
		}
	}
	released := time.Now()
	release()
	slices.SortFunc(burst, func(a, b message) int { return cmp.Compare(a.ID, b.ID) })
	for _, b := range burst {
		want = append(want, line{b.Nick, b.Text})
	}
	tb.waitMessages(len(want))
	t.Logf("%d messages at once reached the page %s after the tail could be read again", len(burst), time.Since(released).Round(time.Millisecond))
	checkLog(t, tb, want)

	// An unchanged file is not read again: the browser asks whether its
	// copy is current (If-None-Match with the file's ETag), and the server
	// answers 304.
	file := filepath.Join(d.Tails, strings.TrimPrefix(d.requests.tails()[0].Path, "tail/"))
	shown = time.Now()
	deadline = time.Now().Add(3 * tailEvery / 2)
	for len(since(d.requests.tails(), shown)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no tail read within %s of the last", 3*tailEvery/2)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r, tag := since(d.requests.tails(), shown)[0], etag(file); r.IfNoneMatch != tag {
		t.Errorf("the page read the unchanged tail file with If-None-Match %q, want its ETag %s (a 304)", r.IfNoneMatch, tag)
	}

	// The program's rhythm: each stream request a retry: after the one
	// before, but the one the burst needed, which resumed from the last
	// event the page had.
	polls := d.requests.streams(room)
	rushed := 0
	for i := 1; i < len(polls); i++ {
		if !polls[i].At.Before(released) && polls[i].resumesAfter() == last {
			rushed++
			continue
		}
		if gap := polls[i].At.Sub(polls[i-1].At); gap < retry*8/10 {
			t.Errorf("stream request %d came %s after the one before, want at least the retry: of %s (less a fifth)", i+1, gap.Round(time.Millisecond), retry)
		}
	}
	if rushed != 1 {
		t.Errorf("%d stream requests resumed after %s once the tail lacked the burst, want 1", rushed, last)
	}
	t.Logf("%d stream requests and %d tail reads in %s", len(polls), len(d.requests.tails()), time.Since(polls[0].At).Round(time.Millisecond))

	// A tail file gone (404): the page stops reading it, says the
	// program's rhythm, and waits for the program's next word.
	tb.expectConsoleError("status of 404")
	if err := os.Remove(file); err != nil {
		t.Fatalf("remove the tail file the page reads: %v", err)
	}
	removed := time.Now()
	tb.waitFor("the header to say the program's rhythm", fmt.Sprintf(`document.querySelector("#state").textContent === "Live, checking every %d s"`, retry.Round(time.Second)/time.Second), 3*tailEvery/2)
	stopped := time.Now()
	time.Sleep(2 * tailEvery * 6 / 5)
	if n := len(since(d.requests.tails(), stopped)); n != 0 {
		t.Errorf("%d tail reads after the file was gone, want none until the program's next poll", n)
	}
	if n := len(since(d.requests.streams(room), removed)); n != 0 {
		t.Errorf("%d stream requests after the tail file was gone, want none before the poll's retry:", n)
	}
}

// tailReader deploys the programs with a budget of one live stream, held,
// and a crowd of 1,000 pollers (so that retry: is the longest), and opens
// a page on room, which holds one message: the page reads the room's tail.
// It returns the deployment, the page and what its log shows.
func tailReader(t *testing.T, room string) (*deployment, *tab, []line) {
	t.Helper()
	d := deploy(t, setup{env: []string{"CHAT_MAX_STREAMS=1", "CHAT_STREAMS_PER_CLIENT=0"}})
	want := []line{{"zed", "before the page opened"}}
	d.post(t, room, want[0].Nick, want[0].Text)
	holdLiveSlot(t, d)
	d.crowd(t, 1000)
	tb := newPerson(t, "reader").open(d.URL + "#" + room)
	tb.waitMessages(1)
	if got, want := tb.state(), "Live, checking every 2 s"; got != want {
		t.Fatalf("reading the tail, the page says %q, want %q", got, want)
	}
	return d, tb, want
}

// shownSoon waits for the log's second message, what was posted at since,
// and wants it shown within a few tail periods, not at the program's
// retry:; late, it says what the page said meanwhile and what it asked
// the server (d's requests).
func shownSoon(t *testing.T, d *deployment, tb *tab, since time.Time, what string) {
	t.Helper()
	state := ""
	for eval[int](tb, `document.querySelectorAll("#log .msg").length`) < 2 {
		if time.Since(since) > 4*tailEvery && state == "" {
			state = tb.state()
		}
		if time.Since(since) > 90*time.Second {
			t.Fatalf("%s: not shown within 90 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := time.Since(since); took > 4*tailEvery {
		t.Errorf("%s was shown %s later, want within %s (a few tail reads); meanwhile the page said %q; the requests from 10 s before:\n%s",
			what, took.Round(time.Millisecond), 4*tailEvery, state, strings.Join(d.requests.since(since.Add(-10*time.Second)), "\n"))
	}
}

// TestTailTransientFailure: one tail read answered 503 (a busy host, a
// proxy's hiccup) must cost the page a tail read, not every message until
// the program's next retry: (30-60 s with 1,000 pollers): the page reads
// on, less often while reads fail.
func TestTailTransientFailure(t *testing.T) {
	t.Parallel()
	const room = "blip"
	d, tb, want := tailReader(t, room)
	tb.expectConsoleError("status of 503")
	// The next tail read fails once.
	d.tailsFail.Store(1)
	deadline := time.Now().Add(3 * tailEvery)
	for d.tailsFail.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("no tail read within 3 tail periods")
		}
		time.Sleep(20 * time.Millisecond)
	}
	failed := time.Now()
	d.post(t, room, "zed", "after the blip")
	want = append(want, line{"zed", "after the blip"})
	// Within a few tail periods, not at the program's retry:.
	shownSoon(t, d, tb, failed, "the message posted after one failed tail read")
	checkLog(t, tb, want)
}

// holdWhile holds each request while held is set, until its channel
// closes.
func holdWhile(held *atomic.Pointer[chan struct{}], h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := held.Load(); c != nil {
			select {
			case <-*c:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// TestTailNickDuringPoll: a nickname chosen while a poll is under way
// (here one the browser's "online" event started) closes the poll; while
// the page waits for the poll's retry: (30-60 s) before it asks again, it
// must read the tail, so that a message posted then shows within seconds.
func TestTailNickDuringPoll(t *testing.T) {
	t.Parallel()
	const room = "renamed"
	d, tb, want := tailReader(t, room)
	c := make(chan struct{})
	d.streamsHeld.Store(&c)
	before := len(d.requests.streams(room))
	eval[bool](tb, `window.dispatchEvent(new Event("online"))`)
	time.Sleep(time.Second)
	tb.chooseNick("ada")
	d.streamsHeld.Store(nil)
	close(c)
	t.Logf("%d stream requests since the hold", len(d.requests.streams(room))-before)
	chosen := time.Now()
	d.post(t, room, "zed", "after the new nick")
	want = append(want, line{"zed", "after the new nick"})
	shownSoon(t, d, tb, chosen, "the message posted after a nick chosen during a poll")
	checkLog(t, tb, want)
}

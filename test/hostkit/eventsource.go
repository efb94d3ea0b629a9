package hostkit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"cgichat/internal/sse"
)

// tailTimeout bounds one fetch of a tail file: a static file answers in
// milliseconds, and a fetch still running then is a failure.
const tailTimeout = 10 * time.Second

// EventSource reads an event stream the way a browser's EventSource does:
// when a response ends it waits the stream's retry: and reconnects with
// Last-Event-ID; after a failed request (an error, a status other than
// 200) it backs off as the page does (public/stream.js): one second
// doubling to thirty, each wait spread by a fifth either way, so that
// readers refused together do not all come back together, and never
// sooner than retry:. Tests and the benchmark read streams through it.
//
// It reads a room's tail file as the page does: after
// a response whose ready event names one ({"mode":"poll","tail":URL,
// "every":T}), until retry: has passed it fetches the file every T (±20 %)
// with If-None-Match, and passes on every event with an id above its last
// event id, as if the stream had sent it. A file that does not reach back
// to the last event id sends it back to the program at once; a failed
// fetch (a status, an error, a file without its tail event) at retry:.
type EventSource struct {
	URL    string       // the stream's URL, with its query
	Client *http.Client // nil: http.DefaultClient
	// Connects bounds the requests Run makes to the stream (0: 1,000).
	Connects int
	// TailFetches bounds the fetches of tail files Run makes (0: 10,000);
	// once they are spent it reads the stream alone.
	TailFetches int
	// OnEvent, when set, is called for every event and comment, with the
	// time it arrived, on Run's goroutine: the stream's, and the events a
	// tail file added.
	OnEvent func(ev sse.Event, at time.Time)

	mu          sync.Mutex
	stats       EventSourceStats
	lastErr     string
	lastTailErr string
	statuses    map[int]int
}

// EventSourceStats is what an EventSource counted.
type EventSourceStats struct {
	Requests int // responses asked for
	Ended    int // responses that ended cleanly (the stream's rule, a poll)
	Failed   int // requests that failed: no response, a status, a broken body

	TailRequests  int // fetches of a tail file
	TailUnchanged int // of which answered 304 Not Modified
	TailEvents    int // events passed on from tail files
	TailGaps      int // files that did not reach back to the last event id
	TailFailed    int // fetches that failed: an error, a status, a bad file
}

// Add adds o's counts to s, for the sum over many readers.
func (s *EventSourceStats) Add(o EventSourceStats) {
	s.Requests += o.Requests
	s.Ended += o.Ended
	s.Failed += o.Failed
	s.TailRequests += o.TailRequests
	s.TailUnchanged += o.TailUnchanged
	s.TailEvents += o.TailEvents
	s.TailGaps += o.TailGaps
	s.TailFailed += o.TailFailed
}

// tail is where and how often a poll response said to read the room's
// tail file.
type tail struct {
	url   *url.URL
	every time.Duration
}

// tailCache is what the last fetch of a tail file left: its validators,
// for a conditional request, and the oldest id its events follow.
type tailCache struct {
	url          string
	etag         string
	lastModified string
	after        int64
}

// tailEvent is the data of a tail file's first event.
type tailEvent struct {
	Room  string `json:"room"`
	After *int64 `json:"after"`
	Last  int64  `json:"last"`
}

// errTailGap says a tail file does not reach back to the last event id.
var errTailGap = errors.New("tail: the file begins after the last event id")

// Run reads until ctx ends or the requests are spent.
func (e *EventSource) Run(ctx context.Context) {
	client := e.Client
	if client == nil {
		client = http.DefaultClient
	}
	connects := e.Connects
	if connects == 0 {
		connects = 1000
	}
	fetches := e.TailFetches
	if fetches == 0 {
		fetches = 10000
	}
	var cache tailCache
	// retry is the server's retry: (0 until one comes); a stream that
	// ends cleanly without one is reconnected after a second.
	lastID, retry, backoff := "", time.Duration(0), time.Duration(0)
	for range connects {
		tl, err := e.connect(ctx, client, &lastID, &retry)
		if ctx.Err() != nil {
			return
		}
		wait := cmp.Or(retry, time.Second)
		e.mu.Lock()
		if err != nil {
			e.stats.Failed++
			e.lastErr = err.Error()
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			wait = max(retry, min(time.Duration(float64(backoff)*(0.8+0.4*rand.Float64())), 30*time.Second))
		} else {
			e.stats.Ended++
			backoff = 0
		}
		e.mu.Unlock()
		if err == nil && tl != nil && fetches > 0 {
			// Until retry: has passed the tail file tells what is new; a
			// gap calls the program at once, a failure at retry:.
			until := time.Now().Add(wait)
			if e.readTail(ctx, client, *tl, until, &cache, &lastID, &fetches) {
				continue
			}
			wait = time.Until(until)
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// sleep waits d, or less when ctx ends first; it says whether ctx is
// still going.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// connect reads one response to its end; nil means it ended cleanly. It
// returns the tail file its ready event named, if any.
func (e *EventSource) connect(ctx context.Context, client *http.Client, lastID *string, retry *time.Duration) (*tail, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	e.mu.Lock()
	e.stats.Requests++
	e.mu.Unlock()
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.mu.Lock()
		if e.statuses == nil {
			e.statuses = make(map[int]int)
		}
		e.statuses[resp.StatusCode]++
		e.mu.Unlock()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("stream: status %d: %s", resp.StatusCode, body)
	}
	var tl *tail
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		// The last event id persists across responses: a response that
		// set none (its opening, a poll without messages) keeps it; an id
		// that came without an event sets it too, as in a browser.
		if id := r.LastID(); id != "" {
			*lastID = id
		}
		if err == io.EOF {
			return tl, nil
		}
		if err != nil {
			return nil, err
		}
		if ev.Retry > 0 {
			*retry = time.Duration(ev.Retry) * time.Millisecond
		}
		if ev.Type == "ready" {
			tl = readyTail(resp.Request.URL, ev.Data)
		}
		if e.OnEvent != nil {
			e.OnEvent(ev, time.Now())
		}
	}
}

// readyTail returns the tail file a ready event's data names, resolved
// against the stream's URL, or nil when it names none (a live or batch
// stream, a poll without a tail, data it cannot read).
func readyTail(stream *url.URL, data string) *tail {
	var ready struct {
		Mode  string `json:"mode"`
		Tail  string `json:"tail"`
		Every int64  `json:"every"`
	}
	if json.Unmarshal([]byte(data), &ready) != nil || ready.Mode != "poll" || ready.Tail == "" || ready.Every <= 0 {
		return nil
	}
	ref, err := url.Parse(ready.Tail)
	if err != nil {
		return nil
	}
	return &tail{url: stream.ResolveReference(ref), every: time.Duration(ready.Every) * time.Millisecond}
}

// readTail fetches tl every tl.every (±20 %) until until, passing on what
// is new. It returns true when a file did not reach back to the last
// event id (call the program now), false at until, when a fetch failed
// or the fetches were spent (call it at until), or when ctx ended.
func (e *EventSource) readTail(ctx context.Context, client *http.Client, tl tail, until time.Time, cache *tailCache, lastID *string, fetches *int) bool {
	if cache.url != tl.url.String() {
		*cache = tailCache{url: tl.url.String()}
	}
	for *fetches > 0 {
		wait := time.Duration(float64(tl.every) * (0.8 + 0.4*rand.Float64()))
		if time.Now().Add(wait).After(until) || !sleep(ctx, wait) {
			return false
		}
		*fetches--
		err := e.fetchTail(ctx, client, cache, lastID)
		if ctx.Err() != nil {
			return false
		}
		e.mu.Lock()
		switch {
		case errors.Is(err, errTailGap):
			e.stats.TailGaps++
		case err != nil:
			e.stats.TailFailed++
			e.lastErr, e.lastTailErr = err.Error(), err.Error()
		}
		e.mu.Unlock()
		if errors.Is(err, errTailGap) {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// fetchTail fetches the tail file once, conditionally, and passes on the
// events with an id above the last event id, in order. It returns
// errTailGap when the file begins after the last event id.
func (e *EventSource) fetchTail(ctx context.Context, client *http.Client, cache *tailCache, lastID *string) error {
	last, err := eventID(*lastID)
	if err != nil {
		return fmt.Errorf("tail: last event id %q: %w", *lastID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, tailTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cache.url, nil)
	if err != nil {
		return err
	}
	// As a browser revalidates what it has: the ETag first, the date
	// for a server that sends none.
	if cache.etag != "" {
		req.Header.Set("If-None-Match", cache.etag)
	}
	if cache.lastModified != "" {
		req.Header.Set("If-Modified-Since", cache.lastModified)
	}
	e.mu.Lock()
	e.stats.TailRequests++
	e.mu.Unlock()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		// The same file as last time: everything above the last event
		// id was taken then, unless it begins after it.
		e.mu.Lock()
		e.stats.TailUnchanged++
		e.mu.Unlock()
		if cache.after > last {
			return errTailGap
		}
		return nil
	case http.StatusOK:
	default:
		*cache = tailCache{url: cache.url}
		return fmt.Errorf("tail: status %d", resp.StatusCode)
	}
	// A file that fails to read is not revalidated next time.
	*cache = tailCache{url: cache.url}
	r := sse.NewReader(resp.Body)
	first, err := r.Next()
	if err != nil {
		return fmt.Errorf("tail: the file's first event: %w", err)
	}
	var head tailEvent
	if first.Type != "tail" || json.Unmarshal([]byte(first.Data), &head) != nil || head.After == nil {
		return fmt.Errorf("tail: the file does not begin with a tail event: %q %q", first.Type, first.Data)
	}
	if *head.After > last {
		cache.etag, cache.lastModified, cache.after = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), *head.After
		return errTailGap
	}
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		if ev.Comment != "" {
			continue
		}
		id, err := eventID(ev.ID)
		if err != nil || id <= last {
			continue
		}
		last = id
		*lastID = ev.ID
		e.mu.Lock()
		e.stats.TailEvents++
		e.mu.Unlock()
		if e.OnEvent != nil {
			e.OnEvent(ev, time.Now())
		}
	}
	cache.etag, cache.lastModified, cache.after = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), *head.After
	return nil
}

// eventID reads an event id as a number; no id yet is 0.
func eventID(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// Stats returns the counts so far.
func (e *EventSource) Stats() EventSourceStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

// Statuses returns how many requests were answered with each status
// other than 200.
func (e *EventSource) Statuses() map[int]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[int]int, len(e.statuses))
	for k, v := range e.statuses {
		out[k] = v
	}
	return out
}

// LastError returns the last failure, for messages.
func (e *EventSource) LastError() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr
}

// LastTailError returns the last failure to read a tail file.
func (e *EventSource) LastTailError() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastTailErr
}

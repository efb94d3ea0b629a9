package hostkit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"cgichat/internal/sse"
)

// EventSource reads an event stream the way a browser's EventSource does:
// when a response ends it waits the stream's retry: and reconnects with
// Last-Event-ID; after a failed request (an error, a status other than
// 200) it backs off, one second doubling to thirty, never sooner than
// retry:. Tests and the benchmark read streams through it.
type EventSource struct {
	URL    string       // the stream's URL, with its query
	Client *http.Client // nil: http.DefaultClient
	// Connects bounds the requests Run makes (0: 1,000).
	Connects int
	// OnEvent, when set, is called for every event and comment, with the
	// time it arrived, on Run's goroutine.
	OnEvent func(ev sse.Event, at time.Time)

	mu       sync.Mutex
	stats    EventSourceStats
	lastErr  string
	statuses map[int]int
}

// EventSourceStats is what an EventSource counted.
type EventSourceStats struct {
	Requests int // responses asked for
	Ended    int // responses that ended cleanly (the stream's rule, a poll)
	Failed   int // requests that failed: no response, a status, a broken body
}

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
	lastID, retry, backoff := "", time.Second, time.Duration(0)
	for range connects {
		err := e.connect(ctx, client, &lastID, &retry)
		if ctx.Err() != nil {
			return
		}
		wait := retry
		e.mu.Lock()
		if err != nil {
			e.stats.Failed++
			e.lastErr = err.Error()
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			wait = max(wait, backoff)
		} else {
			e.stats.Ended++
			backoff = 0
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// connect reads one response to its end; nil means it ended cleanly.
func (e *EventSource) connect(ctx context.Context, client *http.Client, lastID *string, retry *time.Duration) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL, nil)
	if err != nil {
		return err
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
		return err
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
		return fmt.Errorf("stream: status %d: %s", resp.StatusCode, body)
	}
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
			return nil
		}
		if err != nil {
			return err
		}
		if ev.Retry > 0 {
			*retry = time.Duration(ev.Retry) * time.Millisecond
		}
		if e.OnEvent != nil {
			e.OnEvent(ev, time.Now())
		}
	}
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

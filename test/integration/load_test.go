package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"sync"
	"testing"
	"time"

	"cgichat/internal/store"
	"cgichat/test/contract"
	"cgichat/test/dbtest"
)

// TestConcurrentCGIPosts runs 20 posters, each sending 50 messages through
// real CGI processes, while one CGI stream watches, on each backend: every
// message must be stored exactly once and reach the stream once, in order.
// On a database server, where the posting processes commit side by side,
// an id that became visible after a larger one would reach the stream late
// or never: the stream must see 1, 2, 3, … with no gap.
func TestConcurrentCGIPosts(t *testing.T) {
	for _, b := range dbtest.Backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			testConcurrentCGIPosts(t, on(b, startCGI))
		})
	}
}

func testConcurrentCGIPosts(t *testing.T, start contract.Start) {
	const posters, each = 20, 50
	// The stream is read only once every post is in: let it live as long
	// as a stream may, for a slow machine.
	d := start(t, map[string]string{"CHAT_STREAM_SECONDS": "299"})
	s := contract.Open(t, d.StreamURL(nil), nil)
	s.Until(t, "ready", 10*time.Second)

	var wg sync.WaitGroup
	errs := make(chan error, posters*each)
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each poster keeps its cookies, and so its nick, as a browser.
			jar, _ := cookiejar.New(nil)
			client := &http.Client{Jar: jar}
			for i := 0; i < each; i++ {
				body := fmt.Sprintf(`{"nick":"poster%d","text":"%d"}`, p, i)
				res, err := client.Post(d.PostURL(), "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					errs <- err
					continue
				}
				res.Body.Close()
				if res.StatusCode != http.StatusCreated {
					errs <- fmt.Errorf("poster %d message %d: status %d", p, i, res.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	db, err := store.Connect(d.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, ids int
	var maxID int64
	db.QueryRow("SELECT count(*), count(DISTINCT id), max(id) FROM messages").Scan(&rows, &ids, &maxID)
	if rows != posters*each || ids != rows || maxID != int64(rows) {
		t.Errorf("rows %d, distinct ids %d, max id %d; want %d of each", rows, ids, maxID, posters*each)
	}

	// Each poster's own messages must arrive in the order it sent them.
	next := make(map[string]int)
	for got := 0; got < posters*each; got++ {
		m := s.NextMessage(t, 20*time.Second)
		if m.ID != int64(got+1) {
			t.Fatalf("message %d has id %d, want %d: a gap or a repeat", got, m.ID, got+1)
		}
		if want := fmt.Sprint(next[m.Nick]); m.Text != want {
			t.Fatalf("%s's message %q arrived when %q was due", m.Nick, m.Text, want)
		}
		next[m.Nick]++
	}
}

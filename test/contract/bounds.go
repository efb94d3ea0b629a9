package contract

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/store"
)

// boundsTests are posts that are stored exactly once, and the bounds on
// what the database keeps, run by Run.
var boundsTests = []contractTest{
	{"IdempotencyKey", testIdempotencyKey},
	{"IdempotencyKeyConcurrent", testIdempotencyKeyConcurrent},
	{"IdempotencyKeyGivesTheClaimAgain", testIdempotencyKeyGivesTheClaimAgain},
	{"NewRoomsPerDay", testNewRoomsPerDay},
	{"TotalBound", testTotalBound},
}

// PostWithKey sends a JSON message with an Idempotency-Key (none when key
// is empty) through client and returns the response with its body.
func (d *Deployment) PostWithKey(t testing.TB, client *http.Client, key, room, nick, text string) (*http.Response, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"room": room, "nick": nick, "text": text})
	req, _ := http.NewRequest("POST", d.PostURL(), strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b := readAnswer(t, res)
	return res, b
}

func testIdempotencyKey(t *testing.T, start Start) {
	d := start(t, nil)
	const key = `"8e03978e-40d5-43e8-bc93-6894a57f9324"`
	first, firstBody := d.PostWithKey(t, http.DefaultClient, key, "lobby", "ada", "once")
	m := message(t, first, firstBody)
	if first.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("the first post says it was replayed")
	}
	// The page sends the key again when the answer was lost.
	again, againBody := d.PostWithKey(t, http.DefaultClient, key, "lobby", "ada", "once")
	if again.StatusCode != http.StatusCreated || string(againBody) != string(firstBody) {
		t.Errorf("the same key again: %d %s, want 201 %s", again.StatusCode, againBody, firstBody)
	}
	if again.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed = %q, want true", again.Header.Get("Idempotent-Replayed"))
	}
	bad := []struct {
		name, key, text string
		want            int
		wantError       string
	}{
		{"another text", key, "twice", 422, "another message"},
		{"too short", `"abc"`, "x", 400, "Idempotency-Key"},
		{"bad character", `"8e03978e 40d5 43e8 bc93 6894a57f9324"`, "x", 400, "Idempotency-Key"},
		{"two keys", key + ", " + key, "x", 400, "one Idempotency-Key"},
	}
	for _, tt := range bad {
		res, b := d.PostWithKey(t, http.DefaultClient, tt.key, "lobby", "ada", tt.text)
		var e struct{ Error string }
		json.Unmarshal(b, &e)
		if res.StatusCode != tt.want || !strings.Contains(e.Error, tt.wantError) {
			t.Errorf("%s: %d %q, want %d saying %q", tt.name, res.StatusCode, e.Error, tt.want, tt.wantError)
		}
	}
	if n := d.Count(t); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
	// Without a key every post is a message of its own.
	d.PostWithKey(t, http.DefaultClient, "", "lobby", "bob", "once")
	if n := d.Count(t); n != 2 {
		t.Errorf("rows after a post without a key = %d, want 2", n)
	}
	// The repeat reached the streams as one message.
	s := Open(t, d.StreamURL(nil), nil)
	if got := s.Until(t, "ready", 5*time.Second); len(got) != 2 || got[0] != m {
		t.Errorf("the room holds %+v, want %+v and the one without a key", got, m)
	}
}

func testIdempotencyKeyConcurrent(t *testing.T, start Start) {
	d := start(t, nil)
	const posters = 16
	var wg sync.WaitGroup
	bodies := make(chan string, posters)
	for range posters {
		wg.Go(func() {
			res, b := d.PostWithKey(t, http.DefaultClient, "concurrent-0123456789", "lobby", "ada", "at once")
			if res.StatusCode != http.StatusCreated {
				t.Errorf("status %d %s, want 201", res.StatusCode, b)
			}
			bodies <- string(b)
		})
	}
	wg.Wait()
	close(bodies)
	seen := map[string]int{}
	for b := range bodies {
		seen[b]++
	}
	if len(seen) != 1 {
		t.Errorf("%d posts of one key got %d different answers: %v", posters, len(seen), seen)
	}
	if n := d.Count(t); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
}

// testIdempotencyKeyGivesTheClaimAgain: the answer that was lost may have
// carried the claim on a new nick; the repeat carries it again, so the
// writer keeps the nick.
func testIdempotencyKeyGivesTheClaimAgain(t *testing.T, start Start) {
	d := start(t, nil)
	const key = "claim-key-0123456789"
	claim := func(res *http.Response) *http.Cookie {
		for _, c := range res.Cookies() {
			if c.Name == "cgichat_claims" {
				return c
			}
		}
		return nil
	}
	first, b := d.PostWithKey(t, http.DefaultClient, key, "lobby", "zed", "hello")
	message(t, first, b)
	if claim(first) == nil {
		t.Fatal("the first post of a nick set no claim")
	}
	again, b := d.PostWithKey(t, http.DefaultClient, key, "lobby", "zed", "hello")
	message(t, again, b)
	c := claim(again)
	if c == nil {
		t.Fatal("the repeat set no claim")
	}
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(d.PostURL())
	jar.SetCookies(u, []*http.Cookie{c})
	owner := &http.Client{Jar: jar}
	if res, b := d.PostWithKey(t, owner, "", "lobby", "zed", "still me"); res.StatusCode != http.StatusCreated {
		t.Errorf("with the repeat's claim: %d %s, want 201", res.StatusCode, b)
	}
	if res, _ := d.PostWithKey(t, http.DefaultClient, "", "lobby", "zed", "impostor"); res.StatusCode != http.StatusConflict {
		t.Errorf("without it: %d, want 409", res.StatusCode)
	}
}

// testNewRoomsPerDay: with the default cap (20), one address starts 20
// rooms; the 21st is refused with a sentence and Retry-After, while rooms
// with messages and other addresses go on.
func testNewRoomsPerDay(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_TRUSTED_PROXIES": "127.0.0.1,::1"})
	from := func(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }
	for i := range config.DefaultRoomsPerDay {
		if res, msg := d.postAs(t, http.DefaultClient, from("192.0.2.1"), fmt.Sprint("room", i), fmt.Sprint("n", i), "first"); res.StatusCode != 201 {
			t.Fatalf("new room %d: %d %q", i, res.StatusCode, msg)
		}
	}
	res, msg := d.postAs(t, http.DefaultClient, from("192.0.2.1"), "one-too-many", "n", "first")
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(msg, "20 new rooms") {
		t.Errorf("room 21: %d %q, want 429 saying 20 new rooms", res.StatusCode, msg)
	}
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 23*3600 || ra > 24*3600 {
		t.Errorf("Retry-After = %q, want about a day in seconds", res.Header.Get("Retry-After"))
	}
	if res, msg := d.postAs(t, http.DefaultClient, from("192.0.2.1"), "room7", "again", "again"); res.StatusCode != 201 {
		t.Errorf("a room with messages: %d %q, want 201", res.StatusCode, msg)
	}
	if res, msg := d.postAs(t, http.DefaultClient, from("192.0.2.2"), "one-too-many", "m", "first"); res.StatusCode != 201 {
		t.Errorf("another address: %d %q, want 201", res.StatusCode, msg)
	}
	if n := d.Count(t); n != config.DefaultRoomsPerDay+2 {
		t.Errorf("rows = %d, want %d", n, config.DefaultRoomsPerDay+2)
	}
}

// testTotalBound fills the database with 299 messages of the longest kind
// (8,000 bytes each) in three rooms, beyond CHAT_KEEP_TOTAL_MB=1; the next
// post, the 300th, prunes: the oldest go first, whatever their room, until
// the rest fit, and a reader of an old room learns of the trim.
func testTotalBound(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_KEEP_TOTAL_MB": "1"})
	text := strings.Repeat("😀", chat.MaxTextLen)
	st, err := store.Open(context.Background(), d.DB, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 299 {
		if _, err := st.Insert(context.Background(), fmt.Sprint("r", i%3), "seed", text); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	last := d.Post(t, "r2", "ada", "the 300th")
	var total int64
	if err := d.sqlDB(t, false).Get(&total, "SELECT bytes FROM sizes WHERE name = 'messages'"); err != nil {
		t.Fatal(err)
	}
	if total > 1<<20 || total < 1<<20-8100 {
		t.Errorf("messages of %d bytes kept, want at most 1 MiB, and within a message of it", total)
	}
	var oldest int64
	d.sqlDB(t, false).Get(&oldest, "SELECT min(id) FROM messages")
	// A row counts its text, room, nick and address hash (posts have one,
	// the seeded rows none), and 64 bytes more: the last post, and as many
	// of the seeded before it as fit.
	var hash int
	d.sqlDB(t, false).Get(&hash, d.sqlDB(t, false).Rebind("SELECT COALESCE(length(addr_hash), 0) FROM messages WHERE id = ?"), last.ID)
	kept := 1 + (1<<20-(len(last.Text)+len("r2")+len("ada")+hash+64))/(len(text)+len("r0")+len("seed")+64)
	if oldest != 300-int64(kept)+1 {
		t.Errorf("the oldest row kept is %d, want %d: the newest %d rows fit", oldest, 300-kept+1, kept)
	}
	s := Open(t, d.StreamURL(url.Values{"room": {"r0"}, "lastEventId": {"0"}}), nil)
	if ev := s.NextOf(t, "trimmed", 5*time.Second); !strings.Contains(ev.Data, `"room":"r0"`) {
		t.Errorf("trimmed event %q, want one for r0", ev.Data)
	}
	r2 := Open(t, d.StreamURL(url.Values{"room": {"r2"}}), nil).Until(t, "ready", 5*time.Second)
	if len(r2) == 0 || r2[len(r2)-1] != last {
		t.Errorf("room r2 ends with %+v, want the newest message", r2)
	}
}

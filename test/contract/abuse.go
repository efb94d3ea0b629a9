package contract

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/store"
)

// abuseTests are the defences of a public chat, run by Run.
var abuseTests = []contractTest{
	{"RateLimit", testRateLimit},
	{"CrossSitePosts", testCrossSitePosts},
	{"NickOwnership", testNickOwnership},
	{"Bans", testBans},
	{"DeleteReachesStreams", testDeleteReachesStreams},
	{"RetentionTrims", testRetentionTrims},
	{"Presence", testPresence},
	{"StreamCap", testStreamCap},
	{"SecurityHeaders", testSecurityHeaders},
}

// postAs sends a JSON message through client with extra headers and
// returns the response, its JSON error (if any) and its body.
func (d *Deployment) postAs(t testing.TB, client *http.Client, header http.Header, room, nick, text string) (*http.Response, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"room": room, "nick": nick, "text": text})
	req, _ := http.NewRequest("POST", d.PostURL(), strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e struct{ Error string }
	b := readAnswer(t, res)
	json.Unmarshal(b, &e)
	return res, e.Error
}

// exec runs SQL with ? placeholders on the deployment's database, as a
// moderator in the database's shell would.
func (d *Deployment) exec(t testing.TB, query string, args ...any) {
	t.Helper()
	db := d.sqlDB(t, true)
	if _, err := db.Exec(db.Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func testRateLimit(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_RATE_LIMIT": "2/30s"})
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	for i := 0; i < 2; i++ {
		if res, msg := d.postAs(t, client, nil, "lobby", "ada", "x"); res.StatusCode != 201 {
			t.Fatalf("post %d within the limit: %d %s", i, res.StatusCode, msg)
		}
	}
	res, msg := d.postAs(t, client, nil, "lobby", "ada", "x")
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(msg, "too fast") {
		t.Fatalf("third post: %d %q, want 429 saying too fast", res.StatusCode, msg)
	}
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 15 {
		t.Errorf("Retry-After = %q, want whole seconds up to 15", res.Header.Get("Retry-After"))
	}
	// The limit is per address too: another nick from here waits as well.
	if res, _ := d.postAs(t, http.DefaultClient, nil, "lobby", "bob", "x"); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("another nick from the same address: %d, want 429", res.StatusCode)
	}
	if n := d.Count(t); n != 2 {
		t.Errorf("rows = %d, want 2", n)
	}
}

func testCrossSitePosts(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_ALLOWED_ORIGINS": "https://friend.example"})
	self := strings.TrimSuffix(d.URL, "/")
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"Same origin", http.Header{"Origin": {self}}, 201},
		{"Same origin by Referer", http.Header{"Referer": {self + "/index.html"}}, 201},
		{"No browser headers", nil, 201},
		{"Allowed origin", http.Header{"Origin": {"https://friend.example"}}, 201},
		{"Other site", http.Header{"Origin": {"https://evil.example"}}, 403},
		{"Other site by Referer", http.Header{"Referer": {"https://evil.example/x.html"}}, 403},
		{"Origin beats Referer", http.Header{"Origin": {"https://evil.example"}, "Referer": {self + "/"}}, 403},
		{"Opaque origin", http.Header{"Origin": {"null"}}, 403},
		{"Same host other port", http.Header{"Origin": {"http://127.0.0.1:1"}}, 403},
	}
	created := 0
	for i, tt := range tests {
		res, msg := d.postAs(t, http.DefaultClient, tt.header, "lobby", fmt.Sprint("n", i), "x")
		if res.StatusCode != tt.want {
			t.Errorf("%s: %d %q, want %d", tt.name, res.StatusCode, msg, tt.want)
		}
		if res.StatusCode == 403 && !strings.Contains(msg, "own page") {
			t.Errorf("%s: message %q, want one about the chat's own page", tt.name, msg)
		}
		if tt.want == 201 {
			created++
		}
	}
	if n := d.Count(t); n != created {
		t.Errorf("rows = %d, want %d", n, created)
	}
}

func testNickOwnership(t *testing.T, start Start) {
	d := start(t, nil)
	jar, _ := cookiejar.New(nil)
	owner := &http.Client{Jar: jar}
	res, msg := d.postAs(t, owner, nil, "lobby", "Ada", "first")
	if res.StatusCode != 201 {
		t.Fatalf("first post: %d %s", res.StatusCode, msg)
	}
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "cgichat_claims" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Value == "" {
		t.Fatalf("claim cookie = %+v, want HttpOnly, SameSite=Strict", cookie)
	}
	for _, nick := range []string{"Ada", "ADA", "ａｄａ", "\u0410da"} {
		res, msg := d.postAs(t, http.DefaultClient, nil, "lobby", nick, "impostor")
		if res.StatusCode != http.StatusConflict || !strings.Contains(msg, "in use") {
			t.Errorf("%q without the claim: %d %q, want 409 saying it is in use", nick, res.StatusCode, msg)
		}
	}
	// Invisible characters are no disguise: the nick is refused.
	if res, msg := d.postAs(t, http.DefaultClient, nil, "lobby", "A\u200bda", "impostor"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("A\u200bda: %d %q, want 400", res.StatusCode, msg)
	}
	forged := &http.Client{}
	req, _ := http.NewRequest("POST", d.PostURL(), strings.NewReader(`{"nick":"ada","text":"forged"}`))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: "cgichat_claims", Value: cookie.Value[:len(cookie.Value)-2] + "AA"})
	if res, err := forged.Do(req); err != nil || res.StatusCode != http.StatusConflict {
		t.Errorf("a forged claim: %v %v, want 409", res.StatusCode, err)
	}
	if res, msg := d.postAs(t, owner, nil, "lobby", "ada", "still me"); res.StatusCode != 201 {
		t.Errorf("owner again: %d %s", res.StatusCode, msg)
	}
	if n := d.Count(t); n != 2 {
		t.Errorf("rows = %d, want 2", n)
	}
}

func testBans(t *testing.T, start Start) {
	d := start(t, nil)
	d.Post(t, "lobby", "ada", "creates the tables")
	d.exec(t, `INSERT INTO bans (nick) VALUES ('Troll')`)
	d.exec(t, `INSERT INTO bans (addr, until) VALUES ('127.0.0.1', ?)`, time.Now().Add(2*time.Second).UTC().Format(chat.TimeFormat))
	res, msg := d.postAs(t, http.DefaultClient, nil, "lobby", "bob", "x")
	if res.StatusCode != http.StatusForbidden || !strings.Contains(msg, "until") {
		t.Errorf("banned address: %d %q, want 403 naming the end", res.StatusCode, msg)
	}
	time.Sleep(2100 * time.Millisecond)
	if res, msg := d.postAs(t, http.DefaultClient, nil, "lobby", "bob", "x"); res.StatusCode != 201 {
		t.Errorf("after the address ban ended: %d %q, want 201", res.StatusCode, msg)
	}
	for _, nick := range []string{"TROLL", "tr\u043ell"} {
		if res, _ := d.postAs(t, http.DefaultClient, nil, "lobby", nick, "x"); res.StatusCode != http.StatusForbidden {
			t.Errorf("banned nick as %+q: %d, want 403", nick, res.StatusCode)
		}
	}
	if n := d.Count(t); n != 2 {
		t.Errorf("rows = %d, want 2", n)
	}
}

func testDeleteReachesStreams(t *testing.T, start Start) {
	d := start(t, nil)
	keep := d.Post(t, "lobby", "ada", "keep")
	bad := d.Post(t, "lobby", "troll", "spam")
	s := Open(t, d.StreamURL(nil), nil)
	s.Until(t, "ready", 5*time.Second)
	d.exec(t, store.ModeratorDelete(d.DB), bad.ID)
	deleted := time.Now()
	ev := s.NextOf(t, "delete", 5*time.Second)
	if took := time.Since(deleted); took > time.Second {
		t.Errorf("the deletion reached the stream after %v, want within 1s", took)
	}
	var tomb struct {
		ID, Target int64
		Room       string
	}
	json.Unmarshal([]byte(ev.Data), &tomb)
	if tomb.Target != bad.ID || tomb.ID <= bad.ID || ev.ID != fmt.Sprint(tomb.ID) || tomb.Room != "lobby" {
		t.Errorf("delete event %+v (id %s), want target %d with a new id", tomb, ev.ID, bad.ID)
	}
	// A client resuming from before learns of it too; a new one sees only
	// what is left.
	r := Open(t, d.StreamURL(url.Values{"lastEventId": {fmt.Sprint(keep.ID)}}), nil)
	if ev := r.NextOf(t, "delete", 5*time.Second); ev.ID != fmt.Sprint(tomb.ID) {
		t.Errorf("resumed stream: delete event id %s, want %d", ev.ID, tomb.ID)
	}
	fresh := Open(t, d.StreamURL(nil), nil)
	if got := fresh.Until(t, "ready", 5*time.Second); len(got) != 1 || got[0].ID != keep.ID {
		t.Errorf("history after the delete = %s, want only %d", texts(got), keep.ID)
	}
}

func testRetentionTrims(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_KEEP_MESSAGES": "3"})
	// Pruning runs every 100th post, during normal operation.
	d.Seed(t, "lobby", 98)
	d.Post(t, "lobby", "ada", "99")
	last := d.Post(t, "lobby", "ada", "100")
	s := Open(t, d.StreamURL(url.Values{"lastEventId": {"5"}}), nil)
	ev := s.NextOf(t, "trimmed", 5*time.Second)
	if !strings.Contains(ev.Data, `"through":97`) || ev.ID != "97" {
		t.Errorf("trimmed event %q with id %q, want through 97 with id 97", ev.Data, ev.ID)
	}
	got := s.Until(t, "ready", 5*time.Second)
	if len(got) != 3 || got[2] != last {
		t.Errorf("after the trim: %s, want the newest 3", texts(got))
	}
	// Resuming from the trimmed event's id says nothing more about it.
	again := Open(t, d.StreamURL(url.Values{"lastEventId": {ev.ID}}), nil)
	for ev, _ := again.Next(t, 5*time.Second); ev.Type != "ready"; ev, _ = again.Next(t, 5*time.Second) {
		if ev.Type == "trimmed" {
			t.Errorf("a resume from the trimmed event's id got another: %q", ev.Data)
		}
	}
	if n := d.Count(t); n != 3 {
		t.Errorf("rows = %d, want 3 (and no tombstones)", n)
	}
}

func testPresence(t *testing.T, start Start) {
	d := start(t, nil)
	a := Open(t, d.StreamURL(url.Values{"nick": {"ada"}}), nil)
	a.Until(t, "ready", 5*time.Second)
	if ev := a.NextOf(t, "presence", 5*time.Second); !strings.Contains(ev.Data, `"nicks":["ada"]`) {
		t.Errorf("first presence %q, want ada", ev.Data)
	}
	b := Open(t, d.StreamURL(url.Values{"nick": {"bob"}}), nil)
	b.Until(t, "ready", 5*time.Second)
	// The list may be sent again unchanged before bob shows up in it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := a.NextOf(t, "presence", time.Until(deadline))
		if strings.Contains(ev.Data, `"nicks":["ada","bob"]`) {
			break
		}
		if !strings.Contains(ev.Data, `"nicks":["ada"]`) {
			t.Fatalf("presence %q while bob joined, want ada, then ada and bob", ev.Data)
		}
	}
	other := Open(t, d.StreamURL(url.Values{"nick": {"eve"}, "room": {"dev"}}), nil)
	other.Until(t, "ready", 5*time.Second)
	// A nick someone else holds is read under no name: ada's claim is in
	// d's cookie jar after a post, not in this client's.
	d.Post(t, "lobby", "ada", "claims the nick")
	spoof := Open(t, d.StreamURL(url.Values{"nick": {"ADA"}, "room": {"dev"}}), nil)
	spoof.Until(t, "ready", 5*time.Second)
	if ev := spoof.NextOf(t, "presence", 5*time.Second); !strings.Contains(ev.Data, `"nicks":["eve"]`) {
		t.Errorf("presence in dev with a spoofed ADA %q, want only eve", ev.Data)
	}
	res, err := http.Get(d.StreamURL(url.Values{"nick": {"a\x07"}}))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Errorf("a nick with a control character: %d, want 400", res.StatusCode)
	}
}

func testStreamCap(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_STREAMS_PER_CLIENT": "2"})
	for i := 0; i < 2; i++ {
		Open(t, d.StreamURL(nil), nil).Until(t, "ready", 5*time.Second)
	}
	res, err := http.Get(d.StreamURL(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d, Retry-After %q; want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	checkErrorBody(t, res, "too many open streams")
}

func testSecurityHeaders(t *testing.T, start Start) {
	d := start(t, nil)
	res, _ := d.postAs(t, http.DefaultClient, nil, "lobby", "ada", "x")
	s := Open(t, d.StreamURL(nil), nil)
	for name, h := range map[string]http.Header{"post": res.Header, "stream": s.Res.Header} {
		for k, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
			"Content-Security-Policy": "frame-ancestors 'none'",
		} {
			if got := h.Get(k); !strings.Contains(got, want) {
				t.Errorf("%s: %s = %q, want %q", name, k, got, want)
			}
		}
	}
}

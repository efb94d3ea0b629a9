package contract

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"cgichat/internal/chat"
	"cgichat/internal/web"
)

// requestTests are requests as real servers and clients deliver them, and
// readers as the Unicode standards tell them apart, run by Run.
var requestTests = []contractTest{
	{"BodiesWithoutLength", testBodiesWithoutLength},
	{"MaximumMessage", testMaximumMessage},
	{"FetchMetadata", testFetchMetadata},
	{"DNSRebinding", testDNSRebinding},
	{"SecureCookieBehindProxy", testSecureCookieBehindProxy},
	{"RoomsInOneCase", testRoomsInOneCase},
	{"NicksByTheStandards", testNicksByTheStandards},
	{"IPv6Clients", testIPv6Clients},
}

// sent is one request of these tests: a POST to post unless method says
// otherwise.
type sent struct {
	contentType, body string
	chunked           bool        // no Content-Length: Transfer-Encoding: chunked
	host              string      // the Host header, when not the server's
	header            http.Header // more headers
}

// send makes the request through client and returns the response with
// its body read.
func (d *Deployment) send(t testing.TB, client *http.Client, s sent) (*http.Response, []byte) {
	t.Helper()
	var body io.Reader = strings.NewReader(s.body)
	if s.chunked {
		body = io.MultiReader(body) // hides the length
	}
	req, err := http.NewRequest("POST", d.PostURL(), body)
	if err != nil {
		t.Fatal(err)
	}
	if s.chunked && req.ContentLength != 0 {
		t.Fatalf("request length %d, want none (chunked)", req.ContentLength)
	}
	req.Header.Set("Content-Type", s.contentType)
	for k, vs := range s.header {
		req.Header[k] = vs
	}
	if s.host != "" {
		req.Host = s.host
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b := readAnswer(t, res)
	return res, b
}

// message decodes a 201's body, failing the test otherwise.
func message(t testing.TB, res *http.Response, b []byte) chat.Message {
	t.Helper()
	var m chat.Message
	if res.StatusCode != http.StatusCreated || json.Unmarshal(b, &m) != nil {
		t.Fatalf("status %d, body %.300s; want 201 with the message", res.StatusCode, b)
	}
	return m
}

// jsonEscaped writes s with every character as a \u escape, characters
// outside the Basic Multilingual Plane as a surrogate pair: the longest
// JSON for s.
func jsonEscaped(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > 0xFFFF {
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
		} else {
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// percentEncoded writes every byte of s as %XX: the longest form for s.
func percentEncoded(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

const (
	typeJSON = "application/json"
	typeForm = "application/x-www-form-urlencoded"
)

// testBodiesWithoutLength posts bodies sent chunked, as curl -T - and many
// HTTP libraries send them: Apache mod_cgid hands such a body to a CGI
// program without CONTENT_LENGTH, as test/integration's CGI host does.
func testBodiesWithoutLength(t *testing.T, start Start) {
	d := start(t, nil)
	huge := `{"nick":"a","text":"` + strings.Repeat("x", web.MaxBody) + `"}`
	tests := []struct {
		name string
		sent
		want     int
		wantText string
	}{
		{"JSON, chunked", sent{contentType: typeJSON, body: `{"room":"dev","nick":"ada","text":"chunked"}`, chunked: true}, 201, "chunked"},
		{"Form, chunked", sent{contentType: typeForm, body: "room=dev&nick=ada&text=form+chunked", chunked: true}, 201, "form chunked"},
		{"Empty, chunked", sent{contentType: typeJSON, chunked: true}, 400, ""},
		{"Too large, chunked", sent{contentType: typeJSON, body: huge, chunked: true}, 413, ""},
		{"Too large, announced", sent{contentType: typeJSON, body: huge}, 413, ""},
	}
	created := 0
	for _, tt := range tests {
		res, b := d.send(t, d.client(), tt.sent)
		if res.StatusCode != tt.want {
			t.Errorf("%s: status %d (%.200s), want %d", tt.name, res.StatusCode, b, tt.want)
			continue
		}
		if tt.want == 201 {
			created++
			if m := message(t, res, b); m.Text != tt.wantText || m.Room != "dev" {
				t.Errorf("%s: stored %+v, want text %q in dev", tt.name, m, tt.wantText)
			}
		}
	}
	if n := d.Count(t); n != created {
		t.Errorf("rows = %d, want %d", n, created)
	}
}

// testMaximumMessage posts the longest valid message — 2,000 characters of
// text, a 32-character nick, a 32-character room — in every encoding the
// types allow, with the length announced and chunked: each fits.
func testMaximumMessage(t *testing.T, start Start) {
	d := start(t, nil)
	room := strings.Repeat("r", chat.MaxRoomLen)
	created := 0
	for _, ch := range []string{"中", "😀"} {
		text, nick := strings.Repeat(ch, chat.MaxTextLen), strings.Repeat(ch, chat.MaxNickLen)
		plain, _ := json.Marshal(map[string]string{"room": room, "nick": nick, "text": text})
		encodings := []struct{ name, contentType, body string }{
			{"JSON", typeJSON, string(plain)},
			{"JSON escapes", typeJSON, `{"room":"` + jsonEscaped(room) + `","nick":"` + jsonEscaped(nick) + `","text":"` + jsonEscaped(text) + `"}`},
			{"Form", typeForm, url.Values{"room": {room}, "nick": {nick}, "text": {text}}.Encode()},
			{"Form, every byte escaped", typeForm, "room=" + percentEncoded(room) + "&nick=" + percentEncoded(nick) + "&text=" + percentEncoded(text)},
		}
		for _, e := range encodings {
			for _, chunked := range []bool{false, true} {
				res, b := d.send(t, d.client(), sent{contentType: e.contentType, body: e.body, chunked: chunked})
				if res.StatusCode != 201 {
					t.Errorf("%s of %s (%d bytes, chunked %v): status %d (%.200s), want 201", e.name, ch, len(e.body), chunked, res.StatusCode, b)
					continue
				}
				created++
				if m := message(t, res, b); m.Text != text || m.Nick != nick || m.Room != room {
					t.Errorf("%s of %s: the message came back changed", e.name, ch)
				}
			}
		}
	}
	if n := d.Count(t); n != created {
		t.Errorf("rows = %d, want %d", n, created)
	}
}

// testFetchMetadata posts with the Sec-Fetch-Site header browsers send
// since 2023, which decides before Origin does.
func testFetchMetadata(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_ALLOWED_ORIGINS": "https://friend.example"})
	self := strings.TrimSuffix(d.URL, "/")
	tests := []struct {
		name, site, origin string
		want               int
	}{
		{"same-origin", "same-origin", self, 201},
		{"same-origin, whatever Origin says", "same-origin", "http://127.0.0.1:1", 201},
		{"none: the user's own request", "none", "", 201},
		{"cross-site", "cross-site", "https://evil.example", 403},
		{"cross-site naming this origin", "cross-site", self, 403},
		{"cross-site from an allowed origin", "cross-site", "https://friend.example", 201},
		{"same-site: a sibling subdomain", "same-site", "http://other.localhost", 403},
	}
	created := 0
	for i, tt := range tests {
		h := http.Header{"Sec-Fetch-Site": {tt.site}}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		res, msg := d.postAs(t, http.DefaultClient, h, "lobby", fmt.Sprint("n", i), "x")
		if res.StatusCode != tt.want {
			t.Errorf("%s: %d %q, want %d", tt.name, res.StatusCode, msg, tt.want)
		}
		if tt.want == 201 {
			created++
		}
	}
	if n := d.Count(t); n != created {
		t.Errorf("rows = %d, want %d", n, created)
	}
}

// testDNSRebinding posts and reads as a page of a foreign site whose name
// was made to resolve to the chat: Host and Origin agree, and name that
// site. The test client is on this machine, so without CHAT_ALLOWED_HOSTS
// the host must be named by address or as localhost; with it, only the
// names listed pass. A stream that names a foreign host is refused as a
// post is: such a page reads it as its own.
func testDNSRebinding(t *testing.T, start Start) {
	tests := []struct {
		name    string
		allowed string // CHAT_ALLOWED_HOSTS
		host    string // with the server's port
		fetch   string // Sec-Fetch-Site
		want    int
	}{
		{"Foreign name", "", "evil.example", "same-origin", 403},
		{"Foreign name, older browser", "", "evil.example", "", 403},
		{"localhost", "", "localhost", "same-origin", 201},
		{"The address", "", "127.0.0.1", "", 201},
		{"Listed name", "chat.test,*.chat.test", "chat.test", "same-origin", 201},
		{"Listed by wildcard", "chat.test,*.chat.test", "eu.chat.test", "", 201},
		{"Foreign name with a list", "chat.test,*.chat.test", "evil.example", "same-origin", 403},
		{"The address, not listed", "chat.test,*.chat.test", "127.0.0.1", "", 403},
	}
	deployments := map[string]*Deployment{}
	created := map[string]int{}
	for i, tt := range tests {
		d := deployments[tt.allowed]
		if d == nil {
			var env map[string]string
			if tt.allowed != "" {
				env = map[string]string{"CHAT_ALLOWED_HOSTS": tt.allowed}
			}
			d = start(t, env)
			deployments[tt.allowed] = d
		}
		u, _ := url.Parse(d.URL)
		host := tt.host + ":" + u.Port()
		h := http.Header{"Origin": {"http://" + host}}
		if tt.fetch != "" {
			h.Set("Sec-Fetch-Site", tt.fetch)
		}
		body, _ := json.Marshal(map[string]string{"nick": fmt.Sprint("n", i), "text": "x"})
		res, b := d.send(t, http.DefaultClient, sent{contentType: typeJSON, body: string(body), host: host, header: h})
		if res.StatusCode != tt.want {
			t.Errorf("%s: status %d (%s), want %d", tt.name, res.StatusCode, b, tt.want)
		}
		if res.StatusCode == 403 && !strings.Contains(string(b), "CHAT_ALLOWED_HOSTS") {
			t.Errorf("%s: %s, want a sentence naming CHAT_ALLOWED_HOSTS", tt.name, b)
		}
		if tt.want == 201 {
			created[tt.allowed]++
		}
		// The stream and its older history, by the same name.
		for _, query := range []url.Values{nil, {"before": {"1000"}}} {
			req, _ := http.NewRequest("GET", d.StreamURL(query), nil)
			req.Host = host
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if want := map[int]int{201: 200, 403: 403}[tt.want]; res.StatusCode != want {
				t.Errorf("%s: the stream (%s) answered %d, want %d", tt.name, query.Encode(), res.StatusCode, want)
			}
		}
	}
	for allowed, d := range deployments {
		if n := d.Count(t); n != created[allowed] {
			t.Errorf("CHAT_ALLOWED_HOSTS=%q: rows = %d, want %d", allowed, n, created[allowed])
		}
	}
}

// testSecureCookieBehindProxy posts through what looks like a
// TLS-terminating proxy: its word marks the claims cookie Secure only when
// the proxy is trusted.
func testSecureCookieBehindProxy(t *testing.T, start Start) {
	tests := []struct {
		name    string
		trusted bool // CHAT_TRUSTED_PROXIES names the test client
		header  http.Header
		secure  bool
	}{
		{"X-Forwarded-Proto: https", true, http.Header{"X-Forwarded-Proto": {"https"}}, true},
		{"Forwarded: proto=https", true, http.Header{"Forwarded": {"for=198.51.100.1;proto=https"}}, true},
		{"X-Forwarded-Proto: http", true, http.Header{"X-Forwarded-Proto": {"http"}}, false},
		{"No word from the proxy", true, nil, false},
		{"X-Forwarded-Proto from an untrusted client", false, http.Header{"X-Forwarded-Proto": {"https"}}, false},
		{"Forwarded from an untrusted client", false, http.Header{"Forwarded": {"proto=https"}}, false},
	}
	deployments := map[bool]*Deployment{}
	for i, tt := range tests {
		d := deployments[tt.trusted]
		if d == nil {
			var env map[string]string
			if tt.trusted {
				env = map[string]string{"CHAT_TRUSTED_PROXIES": "127.0.0.1,::1"}
			}
			d = start(t, env)
			deployments[tt.trusted] = d
		}
		res, msg := d.postAs(t, http.DefaultClient, tt.header, "lobby", fmt.Sprint("n", i), "x")
		var cookie *http.Cookie
		for _, c := range res.Cookies() {
			if c.Name == "cgichat_claims" {
				cookie = c
			}
		}
		if res.StatusCode != 201 || cookie == nil {
			t.Errorf("%s: %d %q, cookie %v; want 201 with a claims cookie", tt.name, res.StatusCode, msg, cookie)
			continue
		}
		if cookie.Secure != tt.secure {
			t.Errorf("%s: cookie Secure = %v, want %v", tt.name, cookie.Secure, tt.secure)
		}
	}
}

// testRoomsInOneCase posts into #Dev and reads #dev and #DEV: one room.
func testRoomsInOneCase(t *testing.T, start Start) {
	d := start(t, nil)
	before := d.Post(t, "Dev", "ada", "before")
	s := Open(t, d.StreamURL(url.Values{"room": {"DEV"}}), nil)
	if got := s.Until(t, "ready", 5*time.Second); len(got) != 1 || got[0] != before || before.Room != "dev" {
		t.Errorf("history of #DEV = %s (posted to #Dev as room %q), want the message in room dev", texts(got), before.Room)
	}
	after := d.Post(t, "dEv", "ada", "after")
	if got := s.NextMessage(t, 5*time.Second); got != after || got.Room != "dev" {
		t.Errorf("live message %+v, want %+v in room dev", got, after)
	}
}

// testNicksByTheStandards claims a nick and bans another, then posts under
// nicks a reader would take for them: look-alikes meet the same owner and
// the same ban (PRECIS Nickname and the UTS #39 skeleton), invisible
// characters are refused.
func testNicksByTheStandards(t *testing.T, start Start) {
	d := start(t, nil)
	jar, _ := cookiejar.New(nil)
	owner := &http.Client{Jar: jar}
	if res, msg := d.postAs(t, owner, nil, "lobby", "ada", "first"); res.StatusCode != 201 {
		t.Fatalf("first post: %d %s", res.StatusCode, msg)
	}
	d.exec(t, `INSERT INTO bans (nick) VALUES ('troll')`)
	tests := []struct {
		name, nick string
		client     *http.Client
		want       int
		wantError  string
	}{
		{"Capitals", "ADA", http.DefaultClient, 409, "in use"},
		{"Full width", "ａｄａ", http.DefaultClient, 409, "in use"},
		{"Cyrillic а", "\u0430da", http.DefaultClient, 409, "in use"},
		{"Greek α and Cyrillic а", "\u0430d\u03b1", http.DefaultClient, 409, "in use"},
		{"Variation selector after", "ada\ufe0f", http.DefaultClient, 400, "U+FE0F"},
		{"Variation selector inside", "a\ufe00da", http.DefaultClient, 400, "U+FE00"},
		{"Khmer inherent vowel", "ada\u17b5", http.DefaultClient, 400, "U+17B5"},
		{"Zero-width space", "A\u200bda", http.DefaultClient, 400, "U+200B"},
		{"Braille blank after", "ada\u2800", http.DefaultClient, 400, "U+2800"},
		{"The owner, in Cyrillic", "\u0430DA", owner, 201, ""},
		{"Banned, Cyrillic о", "tr\u043ell", http.DefaultClient, 403, "may not post"},
		{"Banned, capitals", "TROLL", http.DefaultClient, 403, "may not post"},
		{"Another nick", "bob", http.DefaultClient, 201, ""},
	}
	created := 1
	for _, tt := range tests {
		res, msg := d.postAs(t, tt.client, nil, "lobby", tt.nick, "x")
		if res.StatusCode != tt.want || !strings.Contains(msg, tt.wantError) {
			t.Errorf("%s (%+q): %d %q, want %d saying %q", tt.name, tt.nick, res.StatusCode, msg, tt.want, tt.wantError)
		}
		if tt.want == 201 {
			created++
		}
	}
	// A nick is shown as the profile enforces it.
	res, b := d.send(t, http.DefaultClient, sent{contentType: typeJSON, body: `{"nick":"  Ｅｖｅ\u3000 Lovelace ","text":"x"}`})
	created++
	if m := message(t, res, b); m.Nick != "Eve Lovelace" {
		t.Errorf("nick shown as %q, want %q", m.Nick, "Eve Lovelace")
	}
	if n := d.Count(t); n != created {
		t.Errorf("rows = %d, want %d", n, created)
	}
}

// testIPv6Clients posts and opens streams from many addresses of a few
// IPv6 networks, through a trusted proxy (the test client) that names them
// in X-Forwarded-For: a client is its /64 for the rate limit, the cap on
// streams and address bans, or its address with CHAT_IPV6_PREFIX=128.
func testIPv6Clients(t *testing.T, start Start) {
	// No budget: past it readers poll, which the cap (on live streams)
	// does not count.
	env := map[string]string{"CHAT_TRUSTED_PROXIES": "127.0.0.1,::1", "CHAT_RATE_LIMIT": "5/60s", "CHAT_STREAMS_PER_CLIENT": "10", "CHAT_MAX_STREAMS": "0"}
	from := func(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }
	t.Run("Rate limit per /64", func(t *testing.T) {
		d := start(t, env)
		got := map[int]int{}
		began := time.Now()
		for i := 1; i <= 50; i++ {
			res, _ := d.postAs(t, http.DefaultClient, from(fmt.Sprintf("2001:db8:5::%x", i)), "lobby", fmt.Sprint("n", i), "x")
			got[res.StatusCode]++
		}
		// The bucket holds 5 and gets one back every 12 s: a slow machine
		// that took longer than that over the 50 posts let one more through
		// for each 12 s.
		took := time.Since(began)
		most := 5 + int(took/(12*time.Second))
		if got[201] < 5 || got[201] > most || got[201]+got[429] != 50 {
			t.Errorf("50 posts from 50 addresses of one /64 in %s: statuses %v, want 5 × 201 (at most %d in that time) and the rest 429",
				took.Round(time.Millisecond), got, most)
		}
		if res, msg := d.postAs(t, http.DefaultClient, from("2001:db8:5:1::1"), "lobby", "other", "x"); res.StatusCode != 201 {
			t.Errorf("the next /64: %d %q, want 201", res.StatusCode, msg)
		}
	})
	t.Run("Bans", func(t *testing.T) {
		d := start(t, env)
		d.Post(t, "lobby", "ada", "creates the tables")
		d.exec(t, `INSERT INTO bans (addr) VALUES ('2001:db8:5::1'), ('2001:db8:6::/48')`)
		tests := []struct {
			addr string
			want int
		}{
			{"2001:db8:5::2", 403},
			{"2001:db8:5::1", 403},
			{"2001:db8:5:1::1", 201},
			{"2001:db8:6:ab::9", 403},
			{"2001:db8:7::1", 201},
		}
		for i, tt := range tests {
			if res, msg := d.postAs(t, http.DefaultClient, from(tt.addr), "lobby", fmt.Sprint("n", i), "x"); res.StatusCode != tt.want {
				t.Errorf("from %s: %d %q, want %d", tt.addr, res.StatusCode, msg, tt.want)
			}
		}
	})
	t.Run("Stream cap per /64", func(t *testing.T) {
		d := start(t, env)
		for i := 1; i <= 15; i++ {
			h := from(fmt.Sprintf("2001:db8:9::%x", i))
			if i <= 10 {
				Open(t, d.StreamURL(nil), h).Until(t, "ready", 5*time.Second)
				continue
			}
			req, _ := http.NewRequest("GET", d.StreamURL(nil), nil)
			req.Header = h
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusTooManyRequests {
				t.Errorf("stream %d from the /64: status %d, want 429", i, res.StatusCode)
			}
		}
		Open(t, d.StreamURL(nil), from("2001:db8:9:1::1")).Until(t, "ready", 5*time.Second)
	})
	t.Run("Whole addresses with prefix 128", func(t *testing.T) {
		env128 := map[string]string{"CHAT_IPV6_PREFIX": "128"}
		for k, v := range env {
			env128[k] = v
		}
		d := start(t, env128)
		d.Post(t, "lobby", "ada", "creates the tables")
		d.exec(t, `INSERT INTO bans (addr) VALUES ('2001:db8:5::1')`)
		for i, tt := range []struct {
			addr string
			want int
		}{{"2001:db8:5::1", 403}, {"2001:db8:5::2", 201}, {"2001:db8:5::3", 201}} {
			if res, msg := d.postAs(t, http.DefaultClient, from(tt.addr), "lobby", fmt.Sprint("n", i), "x"); res.StatusCode != tt.want {
				t.Errorf("from %s: %d %q, want %d", tt.addr, res.StatusCode, msg, tt.want)
			}
		}
	})
}

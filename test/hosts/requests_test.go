package hosts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"cgichat/internal/web"
	"cgichat/test/dbtest"
	"cgichat/test/hostkit"
)

// postRequest is one post as a client sends it.
type postRequest struct {
	body    string      // JSON
	chunked bool        // without Content-Length: Transfer-Encoding: chunked, or HTTP/2 without content-length
	host    string      // the Host header, when not the server's
	header  http.Header // Origin, Sec-Fetch-Site
}

// do sends p, called name in failures, to base's post through hc and
// returns the status and body.
func (p postRequest) do(t *testing.T, name string, hc *http.Client, base string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var body io.Reader = strings.NewReader(p.body)
	if p.chunked {
		body = io.MultiReader(body) // hides the length
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/cgi-bin/post", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range p.header {
		req.Header[k] = vs
	}
	if p.host != "" {
		req.Host = p.host
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s: post: %v", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s: the answer %d did not arrive whole: %v", name, resp.StatusCode, err)
	}
	return resp, string(b)
}

// jsonPost returns a JSON post of text by nick in room.
func jsonPost(room, nick, text string) string {
	b, _ := json.Marshal(map[string]string{"room": room, "nick": nick, "text": text})
	return string(b)
}

// escapedEmoji is n times 😀 as JSON escapes, 12 bytes each.
func escapedEmoji(n int) string {
	hi, lo := utf16.EncodeRune('😀')
	return strings.Repeat(fmt.Sprintf(`\u%04x\u%04x`, hi, lo), n)
}

// testRequests posts to a deployed host as real clients do: chunked
// bodies (curl -T -, many HTTP libraries), the longest message, a browser's
// Origin with the host's (non-default) port, which nginx's stock
// fastcgi_params drop from the Host they pass on, and a page of a foreign
// site whose name resolves here (DNS rebinding).
// notStored, as a wanted status, is any answer but 201.
const notStored = -1

func testRequests(t *testing.T, h *hostkit.Host, c *client) {
	room := hostkit.NewRoom("requests")
	self := h.URL // http://127.0.0.1:PORT, as a browser's Origin
	rebound := fmt.Sprintf("evil.example:%d", h.Port)
	tests := []struct {
		name string
		postRequest
		want int
	}{
		{"Chunked", postRequest{body: jsonPost(room, "ada", "chunked"), chunked: true}, 201},
		{"Chunked, too large", postRequest{body: jsonPost(room, "ada", strings.Repeat("x", web.MaxBody)), chunked: true}, 413},
		{"Announced, too large", postRequest{body: jsonPost(room, "ada", strings.Repeat("x", web.MaxBody))}, 413},
		// Refused by the chat (413) or by the host's own bound on bodies
		// (nginx's client_max_body_size 1m, mod_fcgid's
		// FcgidMaxRequestLen): whole either way.
		{"Announced, 2 MB", postRequest{body: jsonPost(room, "ada", strings.Repeat("x", 2<<20))}, notStored},
		{"Chunked, 2 MB", postRequest{body: jsonPost(room, "ada", strings.Repeat("x", 2<<20)), chunked: true}, notStored},
		{"The longest message, escaped", postRequest{body: `{"room":"` + room + `","nick":"ada","text":"` + escapedEmoji(2000) + `"}`}, 201},
		{"The longest message, chunked", postRequest{body: `{"room":"` + room + `","nick":"ada","text":"` + escapedEmoji(2000) + `"}`, chunked: true}, 201},
		{"Browser, Origin with the port", postRequest{body: jsonPost(room, "ada", "from the page"), header: http.Header{"Origin": {self}}}, 201},
		{"Browser, Fetch Metadata", postRequest{body: jsonPost(room, "ada", "from the page"), header: http.Header{"Origin": {self}, "Sec-Fetch-Site": {"same-origin"}}}, 201},
		{"Browser, another port", postRequest{body: jsonPost(room, "ada", "x"), header: http.Header{"Origin": {"http://127.0.0.1:1"}}}, 403},
		{"Browser, another site", postRequest{body: jsonPost(room, "ada", "x"), header: http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}}, 403},
		// Refused by the chat (403) or by a host that serves its site by
		// name only and answers a foreign name itself (lighttpd's 404,
		// Caddy's empty 200): never stored.
		{"DNS rebinding", postRequest{body: jsonPost(room, "ada", "x"), host: rebound, header: http.Header{"Origin": {"http://" + rebound}, "Sec-Fetch-Site": {"same-origin"}}}, notStored},
	}
	// A connection of its own for each post: a POST is not sent again on
	// a kept-alive connection that the server closed as it was reused
	// (Apache's KeepAliveTimeout is 5 s), which is a client's race, not
	// what is tested here.
	tr := c.http.Transport.(*http.Transport).Clone() // HTTP/2 for an h2c host
	tr.DisableKeepAlives = true
	fresh := &http.Client{Timeout: c.http.Timeout, Transport: tr, Jar: c.http.Jar}
	// A refusal is sent several times: a program that exits before it
	// read the body loses its answer now and then, not every time (under
	// mod_cgid over HTTP/2 a 500, or a 403 whose stream never ends).
	const refusals = 8
	for _, tt := range tests {
		times := 1
		if tt.want != http.StatusCreated {
			times = refusals
		}
		for range times {
			resp, body := tt.do(t, tt.name, fresh, h.URL)
			switch {
			case tt.want == notStored && resp.StatusCode == http.StatusCreated:
				t.Errorf("%s: status 201 (%.200s), want it refused", tt.name, body)
			case tt.want != notStored && resp.StatusCode != tt.want:
				t.Errorf("%s: status %d (%.200s), want %d", tt.name, resp.StatusCode, body, tt.want)
			}
		}
	}
}

// h2c makes Apache speak HTTP/2 over plain TCP (prior knowledge and
// upgrade) besides HTTP/1.1.
const h2c = `
LoadModule http2_module {{modules}}/mod_http2.so
Protocols h2c http/1.1
`

// h2Case is one post over HTTP/2 and its answer.
type h2Case struct {
	name string
	postRequest
	want      int
	wantError string // part of the body
}

// TestHTTP2Bodies posts over HTTP/2 to the programs under Apache mod_cgid
// and mod_fcgid: an HTTP/2 request body may come without content-length,
// which reached the programs with no CONTENT_LENGTH.
func TestHTTP2Bodies(t *testing.T) {
	hostkit.RequireTools(t, hostkit.ApacheBin)
	hostkit.WarmBuild(t)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, name := range []string{"apache-mod_cgid", "apache-mod_fcgid"} {
		s := lookupSetup(t, name)
		wg.Go(func() {
			t.Run(name, func(t *testing.T) {
				h := newHost(t, s, dbtest.SQLite)
				h.ApacheConf = h2c
				h.Deploy(t)
				h.Start(t)
				jar, _ := cookiejar.New(nil)
				hc := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Jar: jar}
				room := hostkit.NewRoom("h2")
				tests := []h2Case{
					{"With content-length", postRequest{body: jsonPost(room, "ada", "h2")}, 201, ""},
					{"Without content-length", postRequest{body: jsonPost(room, "ada", "h2 streamed"), chunked: true}, 201, ""},
					{"The longest message, without content-length", postRequest{body: `{"room":"` + room + `","nick":"ada","text":"` + escapedEmoji(2000) + `"}`, chunked: true}, 201, ""},
					{"Too large, without content-length", postRequest{body: jsonPost(room, "ada", strings.Repeat("x", web.MaxBody)), chunked: true}, 413, ""},
				}
				if name == "apache-mod_fcgid" {
					// mod_fcgid 2.3.9 under mod_http2 sets CONTENT_LENGTH to
					// the size of a body sent without one but passes no
					// byte of it (FCGI_STDIN is empty; seen with raw
					// records): no program can answer 201. The program
					// says what happened, unless Apache answers first:
					// on a loaded machine mod_fcgid now and then fails to
					// write to the program that has already answered
					// ("error writing data to FastCGI server") and sends
					// its own 500 instead.
					tests = append(tests[:1:1], h2Case{"Without content-length", postRequest{body: jsonPost(room, "ada", "h2 streamed"), chunked: true}, 400, "did not arrive whole"})
				}
				for _, tt := range tests {
					resp, body := tt.do(t, tt.name, hc, h.URL)
					if resp.ProtoMajor != 2 {
						t.Fatalf("%s: answered over %s, want HTTP/2", tt.name, resp.Proto)
					}
					apacheOwn := name == "apache-mod_fcgid" && resp.StatusCode == http.StatusInternalServerError && strings.Contains(body, "<title>500 Internal Server Error</title>")
					if (resp.StatusCode != tt.want || !strings.Contains(body, tt.wantError)) && !(tt.want == 400 && apacheOwn) {
						t.Errorf("%s: status %d (%.200s), want %d %s", tt.name, resp.StatusCode, body, tt.want, tt.wantError)
					}
				}
				// Whatever answered, the room holds exactly the posts
				// that got a 201.
				var stored int
				for _, tt := range tests {
					if tt.want == http.StatusCreated {
						stored++
					}
				}
				if got := sqliteRows(t, h, "SELECT count(*) FROM messages WHERE room = '"+room+"'"); len(got) != 1 || got[0] != fmt.Sprint(stored) {
					t.Errorf("the room holds %v messages, want %d (the posts answered 201)", got, stored)
				}
			})
		})
	}
}

// TestBodyCutShort posts a form without a length (chunked) to the programs
// under Apache mod_cgid and leaves in the middle of it, closing the
// connection or resetting it. Apache passes on the part it got, as a body
// without a length that simply ends; a part that parses ("hello wor") was
// stored, with a 201 nobody read. The room must hold only the whole post
// sent after them.
func TestBodyCutShort(t *testing.T) {
	hostkit.RequireTools(t, hostkit.ApacheBin)
	hostkit.WarmBuild(t)
	h := newHost(t, lookupSetup(t, "apache-mod_cgid"), dbtest.SQLite)
	h.Deploy(t)
	h.Start(t)
	room := hostkit.NewRoom("cut")
	for _, reset := range []bool{false, true} {
		conn, err := net.Dial("tcp", h.Addr())
		if err != nil {
			t.Fatal(err)
		}
		part := "room=" + room + "&nick=cut&text=hello+wor"
		fmt.Fprintf(conn, "POST /cgi-bin/post HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
			"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", h.Addr(), len(part), part)
		// Apache starts the program as the body begins; the client leaves
		// once it has the database open, about to read the body (Apache
		// stops a program it finds starting up).
		hostkit.WaitFor(t, nil, h.MainLog(), "post reading", 10*time.Second, func() bool {
			pids := hostkit.PIDsRunning(h.PostBin)
			return len(pids) > 0 && hostkit.HasOpen(pids[0], h.DB)
		})
		if reset {
			conn.(*net.TCPConn).SetLinger(0)
		}
		conn.Close()
		hostkit.WaitFor(t, nil, h.MainLog(), "post ending", 10*time.Second, func() bool { return len(hostkit.PIDsRunning(h.PostBin)) == 0 })
	}
	c := clientFor(h)
	whole, _ := c.post(t, room, "ada", "whole")
	s := c.openStream(room, "")
	defer s.close()
	var got []message
	for ev := range s.events {
		if ev.Type == "ready" {
			break
		}
		if ev.Type == "message" {
			got = append(got, decode(t, ev))
		}
	}
	if len(got) != 1 || got[0].ID != whole.ID {
		t.Errorf("the room holds %+v, want only the whole post %+v: a body cut short was stored", got, whole)
	}
}

package hosts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"cgichat/test/hostkit"
)

// Hosts that answer before the chat does (issue 19). These tests measure
// the hosts as they are, so that the tests of what the page and
// deploy.sh --check make of them stand on known ground.

// TestModSecurity runs the chat under mod_cgid behind ModSecurity with the
// OWASP CRS as Debian ships it, blocking, as cPanel hosts run it: a message
// that looks like code gets Apache's HTML 403 and never reaches post;
// ordinary text is stored, and the stream passes.
func TestModSecurity(t *testing.T) {
	t.Parallel()
	hostkit.RequireTools(t, hostkit.ApacheBin, hostkit.ModSecurityModule, hostkit.ModSecurityConf, hostkit.ModSecurityCRSLoad)
	hostkit.WarmBuild(t)
	h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_cgid-modsecurity"))
	h.Deploy(t)
	startTimed(t, h)
	c := newClient(h.URL)
	room := hostkit.NewRoom("firewall")
	var stored []message

	t.Run("code refused", func(t *testing.T) {
		resp, body := postJSON(t, c, room, "ada", "the <script> tag is how you add js")
		wantHostPage(t, resp, body, 403)
		denials := hostkit.ModSecurityDenials(h)
		if len(denials) != 1 || !strings.Contains(denials[0], `[uri "/cgi-bin/post"]`) {
			t.Errorf("got ModSecurity denials %q, want one of cgi-bin/post", denials)
		}
	})
	t.Run("text stored", func(t *testing.T) {
		for _, text := range []string{"hello there", "see you at 5, bring the slides"} {
			resp, body := postJSON(t, c, room, "ada", text)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("post %q: got status %d, body %q; want 201", text, resp.StatusCode, body)
			}
			var m message
			if err := json.Unmarshal([]byte(body), &m); err != nil || m.Text != text {
				t.Fatalf("post %q: got %q (%v), want the stored message", text, body, err)
			}
			stored = append(stored, m)
		}
	})
	t.Run("stream", func(t *testing.T) {
		// The history holds what was stored and nothing refused.
		s := c.openStream(room, "")
		defer s.close()
		got, ready := untilReady(t, s, 10*time.Second)
		if want := `{"mode":"live","retry":1000}`; ready != want {
			t.Errorf("ready: got %s, want %s", ready, want)
		}
		if len(got) != len(stored) {
			t.Fatalf("the history holds %+v, want %+v", got, stored)
		}
		for i := range got {
			if got[i] != stored[i] {
				t.Errorf("history %d: got %+v, want %+v", i, got[i], stored[i])
			}
		}
	})
}

// TestNoOptions runs the chat under mod_cgid where .htaccess may not set
// Options (AllowOverride FileInfo AuthConfig Indexes Limit): the page
// loads, and post and stream get Apache's HTML 500, with the reason in the
// error log only.
func TestNoOptions(t *testing.T) {
	t.Parallel()
	hostkit.RequireTools(t, hostkit.ApacheBin)
	hostkit.WarmBuild(t)
	h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_cgid-no-options"))
	h.Deploy(t)
	startTimed(t, h)
	c := newClient(h.URL)
	room := hostkit.NewRoom("options")

	if resp, body := c.get(t, "/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "<html") {
		t.Errorf("GET /: got status %d, %.100q; want 200 and the page", resp.StatusCode, body)
	}
	resp, body := postJSON(t, c, room, "ada", "hello")
	wantHostPage(t, resp, body, 500)
	resp, body = c.get(t, "/cgi-bin/stream?room="+room)
	wantHostPage(t, resp, body, 500)
	if log := hostkit.Tail(h.MainLog(), 20); !strings.Contains(log, "cgi-bin/.htaccess: Options not allowed here") {
		t.Errorf("the error log does not say why:\n%s", log)
	}
	if _, err := os.Stat(h.DB); err == nil {
		t.Errorf("the programs ran: %s exists", h.DB)
	}
}

// wantHostPage fails unless a response is Apache's own HTML error page
// for status.
func wantHostPage(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("got status %d, body %.200q; want %d", resp.StatusCode, body, status)
	}
	if g := resp.Header.Get("Content-Type"); !strings.HasPrefix(g, "text/html") {
		t.Errorf("got Content-Type %q, want Apache's text/html page", g)
	}
	if want := fmt.Sprintf("<title>%d %s</title>", status, http.StatusText(status)); !strings.Contains(body, want) {
		t.Errorf("got body %.300q, want Apache's page with %s", body, want)
	}
}

// postJSON posts a message as the page does, as JSON, and returns the
// response with its whole body, whatever the status.
func postJSON(t *testing.T, c *client, room, nick, text string) (*http.Response, string) {
	t.Helper()
	b, err := json.Marshal(map[string]string{"room": room, "nick": nick, "text": text})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/cgi-bin/post", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("POST cgi-bin/post: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST cgi-bin/post: reading the body: %v", err)
	}
	return resp, string(body)
}

// untilReady reads a new stream's backlog: the messages before its ready
// event, and that event's data.
func untilReady(t *testing.T, s *stream, timeout time.Duration) (backlog []message, ready string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, open := <-s.events:
			switch {
			case !open:
				t.Fatalf("the stream ended before its ready event (%d messages): %v", len(backlog), s.result(time.Second))
			case ev.Comment != "":
			case ev.Type == "message":
				backlog = append(backlog, decode(t, ev))
			case ev.Type == "ready":
				return backlog, ev.Data
			}
		case <-deadline:
			t.Fatalf("no ready event within %v (%d messages before)", timeout, len(backlog))
		}
	}
}

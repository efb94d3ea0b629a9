package hosts

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cgichat/internal/sse"
	"cgichat/internal/tail"
	"cgichat/test/dbtest"
	"cgichat/test/hostkit"
)

// TestTails deploys the programs where every stream is a process, with a
// budget of one live stream, behind each web server that runs them so:
// past the budget a poll names the room's tail file, which the web server
// serves itself (304 when unchanged), the post program rewrites it, and
// nothing else in the tail folder is served.
func TestTails(t *testing.T) {
	hostkit.RequireTools(t, hostkit.ApacheBin, hostkit.NginxBin, hostkit.FcgiwrapBin, hostkit.LighttpdBin)
	hostkit.WarmBuild(t)
	names := []string{"apache-mod_cgid", "apache-mod_fcgid", "nginx-fcgiwrap", "lighttpd-cgi"}
	if hostkit.CanCreateAccounts() == nil {
		// A shared host's account: the programs write as the account, the
		// web server reads as itself.
		names = append(names, "apache-suexec-mod_cgid")
	}
	for _, name := range names {
		s := lookupSetup(t, name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHost(t, s, dbtest.SQLite)
			h.Env = append(h.Env, "CHAT_MAX_STREAMS=1", "CHAT_STREAMS_PER_CLIENT=0")
			h.Deploy(t)
			h.Start(t)
			testTail(t, h, clientFor(h))
		})
	}
}

func testTail(t *testing.T, h *hostkit.Host, c *client) {
	room := hostkit.NewRoom("tail")
	first, _ := c.post(t, room, "ada", "before the poll")
	// The one live stream: in a room of its own, resuming after an id to
	// come, so that a batch stream too waits rather than ends.
	holder := c.openStream(hostkit.NewRoom("hold"), "1000000000")
	defer holder.close()

	// Readers until one is answered as a poll (the holder's row counts
	// once its program has started).
	var ready struct {
		Mode  string `json:"mode"`
		Tail  string `json:"tail"`
		Every int    `json:"every"`
	}
	// mod_fcgid may start the holder's process seconds late, when it has
	// just started others.
	deadline := time.Now().Add(30 * time.Second)
	for try := 0; ready.Mode != "poll"; try++ {
		if time.Now().After(deadline) {
			t.Fatalf("no poll after %d readers in 30 s: the last was %+v", try, ready)
		}
		s := c.openStream(room, "")
		ev, ok := s.next("ready", 10*time.Second)
		s.close()
		if ok {
			json.Unmarshal([]byte(ev.Data), &ready)
		}
		if ready.Mode != "poll" {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if ready.Tail == "" || ready.Every != int(tail.Every.Milliseconds()) {
		t.Fatalf("the poll's ready: %+v, want a tail read every %d ms", ready, tail.Every.Milliseconds())
	}
	streamURL, _ := url.Parse(h.URL + "/cgi-bin/stream")
	tailURL := streamURL.ResolveReference(&url.URL{Path: ready.Tail}).String()

	body, etag := getTail(t, c, tailURL, "", http.StatusOK)
	checkTail(t, body, room, first.ID)

	// Unchanged: the web server says so from the ETag, with no program.
	if etag != "" {
		getTail(t, c, tailURL, etag, http.StatusNotModified)
	} else {
		t.Errorf("GET %s: no ETag, want one (a poller asks with If-None-Match)", tailURL)
	}

	// Changed: a web server may answer from what it knows of the file for
	// a second or so (lighttpd's stat cache); a poller gets the change at
	// a next read.
	second, _ := c.post(t, room, "ada", "after the poll")
	status := http.StatusNotModified
	for try := 0; status == http.StatusNotModified; try++ {
		if try == 20 {
			t.Fatalf("GET %s: still 304 5 s after a post", tailURL)
		}
		time.Sleep(250 * time.Millisecond)
		body, status = getTailStatus(t, c, tailURL, etag)
	}
	if status != http.StatusOK {
		t.Fatalf("GET %s after a post: status %d, want 200", tailURL, status)
	}
	checkTail(t, body, room, first.ID, second.ID)

	// Nothing but tail files is served from the folder.
	dir := filepath.Join(h.Docroot, tail.DirName)
	for _, name := range []string{"notes.txt", ".tail-123", strings.Repeat("a", 32) + ".txt.bak"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(secret), 0o644); err != nil {
			t.Fatal(err)
		}
		resp, got := c.get(t, "/"+tail.DirName+"/"+name)
		if resp.StatusCode == http.StatusOK || strings.Contains(got, secret) {
			t.Errorf("GET /%s/%s: status %d, want it refused", tail.DirName, name, resp.StatusCode)
		}
	}
	if resp, got := c.get(t, "/"+tail.DirName+"/"); strings.Contains(got, path.Base(ready.Tail)) {
		t.Errorf("GET /%s/: status %d lists the files", tail.DirName, resp.StatusCode)
	}
}

// getTail GETs a tail file, with If-None-Match when etag is set, wants
// status want and returns the body and the ETag.
func getTail(t *testing.T, c *client, u, etag string, want int) (string, string) {
	t.Helper()
	resp, b := doTail(t, c, u, etag)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: status %d (%.200s), want %d", u, resp.StatusCode, b, want)
	}
	return b, resp.Header.Get("ETag")
}

// getTailStatus is getTail for any status.
func getTailStatus(t *testing.T, c *client, u, etag string) (string, int) {
	t.Helper()
	resp, b := doTail(t, c, u, etag)
	return b, resp.StatusCode
}

func doTail(t *testing.T, c *client, u, etag string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	// As a browser asks: compressed if the server will.
	req.Header.Set("Accept-Encoding", "gzip")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		r = zr
	}
	b, _ := io.ReadAll(r)
	return resp, string(b)
}

// checkTail parses a tail file as a poller does and wants its messages to
// end with ids, in order, under a head that covers them.
func checkTail(t *testing.T, body, room string, ids ...int64) {
	t.Helper()
	h, err := tail.ParseHead([]byte(body))
	if err != nil || h.Room != room || h.After >= ids[0] || h.Last != ids[len(ids)-1] {
		t.Fatalf("tail head %+v, %v; want room %s holding %v", h, err, room, ids)
	}
	var got []string
	r := sse.NewReader(bytes.NewReader([]byte(body)))
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		if ev.Type == "message" {
			got = append(got, ev.ID)
		}
	}
	if len(got) < len(ids) || fmt.Sprint(got[len(got)-len(ids):]) != fmt.Sprint(ids) {
		t.Errorf("the tail's messages %v, want them to end with %v", got, ids)
	}
}

package hosts

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
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
// serves itself (304 when unchanged, never from a cache), the post program
// rewrites it, and nothing else shaped like it is served, in tail/ or
// elsewhere.
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
			h.Env = []string{"CHAT_RATE_LIMIT=off", "CHAT_MAX_STREAMS=1", "CHAT_STREAMS_PER_CLIENT=0", "CHAT_LOG_LEVEL=debug"}
			h.Deploy(t)
			h.Start(t)
			c := clientFor(h)
			room := hostkit.NewRoom("tail")
			first, _ := c.post(t, room, "ada", "before the poll")
			tailURL, rel := pollTail(t, h, c, room)
			t.Run("reads", func(t *testing.T) { testTail(t, h, c, room, first, tailURL, rel) })
			t.Run("paths", func(t *testing.T) { testTailPaths(t, h, tailURL) })
			t.Run("headers", func(t *testing.T) { testTailHeaders(t, c, tailURL) })
			t.Run("validators", func(t *testing.T) { testTailValidators(t, h, c, room, tailURL) })
			t.Run("browser", func(t *testing.T) { testTailBrowserCache(t, h, c, room, tailURL) })
		})
	}
}

// testTail reads the tail as a poller does: the room's message, a 304
// when unchanged, the next message after a post; nothing else in the
// folder is served.
func testTail(t *testing.T, h *hostkit.Host, c *client, room string, first message, tailURL, rel string) {
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
	if resp, got := c.get(t, "/"+tail.DirName+"/"); strings.Contains(got, path.Base(rel)) {
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

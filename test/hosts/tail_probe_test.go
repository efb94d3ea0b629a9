package hosts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"cgichat/internal/tail"
	"cgichat/test/hostkit"
)

// pollTail takes the host's one live stream (CHAT_MAX_STREAMS=1) with a
// reader of a room of its own, resuming after an id to come so that a
// batch stream too waits rather than ends, until the test ends; then opens
// readers of room until one is a poll, and returns its ready event's tail
// as an absolute URL and as the ready event says it.
func pollTail(t *testing.T, h *hostkit.Host, c *client, room string) (string, string) {
	t.Helper()
	holder := c.openStream(hostkit.NewRoom("hold"), "1000000000")
	t.Cleanup(holder.close)
	// Its row counts once its program has started, which mod_fcgid may do
	// seconds late while other requests keep its processes busy.
	hostkit.WaitFor(t, nil, h.MainLog(), "the live stream's row", 30*time.Second, func() bool {
		rows := sqliteRows(t, h, "SELECT count(*) FROM streams WHERE open = 1 AND kind = 'live'")
		return len(rows) == 1 && rows[0] != "0"
	})
	var ready struct {
		Mode  string `json:"mode"`
		Tail  string `json:"tail"`
		Every int    `json:"every"`
	}
	s := c.openStream(room, "")
	ev, ok := s.next("ready", 10*time.Second)
	s.close()
	if !ok || json.Unmarshal([]byte(ev.Data), &ready) != nil || ready.Mode != "poll" {
		t.Fatalf("a reader past the budget: ready %q, want a poll", ev.Data)
	}
	if ready.Tail == "" || ready.Every != int(tail.Every.Milliseconds()) {
		t.Fatalf("the poll's ready: %+v, want a tail read every %d ms", ready, tail.Every.Milliseconds())
	}
	streamURL, _ := url.Parse(h.URL + "/cgi-bin/stream")
	return streamURL.ResolveReference(&url.URL{Path: ready.Tail}).String(), ready.Tail
}

// rawGet sends path as it is, byte for byte, and returns the status and
// the body (for a small answer).
func rawGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}

const planted = "PLANTED-PRIVATE-CONTENT"

// testTailPaths plants private files shaped like tail files elsewhere in
// the chat's folder, and asks for them and for the real tail through
// spellings a server might map differently.
func testTailPaths(t *testing.T, h *hostkit.Host, tailURL string) {
	u, _ := url.Parse(tailURL)
	name := path.Base(u.Path)
	hex := strings.TrimSuffix(name, ".txt")
	other := strings.Repeat("0", 32) + ".txt"
	// Files a tail rule must not serve: same shape, other folders.
	plant := []string{
		other,                                   // the chat's own folder
		"cgi-bin/" + other,                      // beside the programs
		".git/tail/" + other,                    // below a dot-directory
		"uploads/tail/" + other,                 // another folder named tail
		"tail/tail/" + other,                    // a folder inside tail/
		"tail/" + strings.ToUpper(hex) + ".txt", // upper case
		"tail/" + hex + ".TXT",
		"tail/.tail-planted",
		"tail/" + other + "~",
	}
	for _, p := range plant {
		f := filepath.Join(h.Docroot, p)
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, []byte(planted), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(h.Docroot, "cgi-bin", "cgichat.conf"))
	tp := "/tail/" + name
	paths := []string{}
	for _, p := range plant {
		paths = append(paths, "/"+p)
	}
	paths = append(paths,
		"/tail/", "/tail", "/tail/?C=M;O=D", "/tail/*", "/tail/.",
		"/tail/%2e%2e/cgi-bin/cgichat.conf", "/tail/..%2fcgi-bin%2fcgichat.conf",
		"/tail/"+name+"/..%2f..%2fcgi-bin%2fcgichat.conf",
		"/%74ail/"+other, "/tail/%30"+other[1:], "/tail/"+other+"%00", "/tail/"+other+".",
		"/tail/"+other+"/", "/tail/"+other+"/x", "/tail/"+other+";x", "/tail/"+other+"%20",
		"/tail/"+other+"::$DATA", "/tail/.tail-planted/", "/tail/%2etail-planted",
		"/cgi-bin/stream/../../tail/"+other, "/cgi-bin/post/tail/"+other,
		"/.git/tail/"+other, "/.git/%74ail/"+other,
	)
	var served []string
	for _, p := range paths {
		status, body := rawGet(t, h.Addr(), p)
		leak := strings.Contains(body, planted) || len(conf) > 0 && strings.Contains(body, strings.TrimSpace(string(conf))) ||
			strings.Contains(body, "SQLite format") || strings.Contains(body, ".tail-")
		// Apache lists a folder with IndexIgnore * (the docroot's
		// .htaccess): a page that names no file.
		emptyListing := strings.Contains(body, "Index of") && !strings.Contains(body, ".txt")
		if leak || status == http.StatusOK && p != tp && !emptyListing {
			served = append(served, fmt.Sprintf("%s → %d %.60q", p, status, body))
		}
	}
	if s, body := rawGet(t, h.Addr(), tp); s != http.StatusOK || !strings.HasPrefix(body, "event: tail\n") {
		t.Errorf("the tail itself: %d %.80q", s, body)
	}
	for _, s := range served {
		t.Errorf("served: %s", s)
	}
}

// testTailHeaders says what a browser, a proxy or a CDN is told about
// caching a file that changes every few seconds and may hold a deleted
// message.
func testTailHeaders(t *testing.T, c *client, tailURL string) {
	resp, _ := doTail(t, c, tailURL, "")
	t.Logf("%s: %d Content-Type %q Cache-Control %q ETag %q Last-Modified %q Expires %q nosniff %q",
		tailURL, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"),
		resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), resp.Header.Get("Expires"),
		resp.Header.Get("X-Content-Type-Options"))
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-cache") && !strings.Contains(cc, "max-age=0") {
		t.Errorf("Cache-Control %q: a browser may reuse the file unasked for a tenth of its age (RFC 9111 4.2.2), a CDN for hours", cc)
	}
}

// testTailValidators fills the room so that each rewrite of its file has
// the same size, then posts twice within one second: a reader that read
// the file between the two posts must not be told 304 for the second.
func testTailValidators(t *testing.T, h *hostkit.Host, c *client, room, tailURL string) {
	// Frames of one size: one nick, texts of one length, ids of two
	// digits (the room's first rows are 1-9).
	for i := 0; i < tail.Rows+5; i++ {
		c.post(t, room, "ada", fmt.Sprintf("fill-%03d", i))
	}
	u, _ := url.Parse(tailURL)
	file := filepath.Join(h.Docroot, "tail", path.Base(u.Path))
	for try := 0; try < 10; try++ {
		a, _ := c.post(t, room, "ada", fmt.Sprintf("aaaa-%03d", try))
		if a.ID >= 99 {
			t.Skip("ids reached three digits")
		}
		resp, bodyA := doTail(t, c, tailURL, "")
		etagA := resp.Header.Get("ETag")
		fiA, _ := os.Stat(file)
		b, _ := c.post(t, room, "ada", fmt.Sprintf("bbbb-%03d", try))
		fiB, _ := os.Stat(file)
		if fiA == nil || fiB == nil || fiA.Size() != fiB.Size() || fiA.ModTime().Unix() != fiB.ModTime().Unix() || !strings.Contains(bodyA, fmt.Sprintf("aaaa-%03d", try)) {
			time.Sleep(300 * time.Millisecond)
			continue
		}
		// Past any stat cache of the server: the file changed 2 s ago.
		time.Sleep(2100 * time.Millisecond)
		resp2, body2 := doTail(t, c, tailURL, etagA)
		t.Logf("file rewritten for %d then %d in one second, same size %d: ETag %q then %q; If-None-Match %q → %d",
			a.ID, b.ID, fiB.Size(), etagA, resp2.Header.Get("ETag"), etagA, resp2.StatusCode)
		if resp2.StatusCode == http.StatusNotModified {
			t.Errorf("304 for a file that now holds %d: a reader gets it only at its next poll or the room's next change", b.ID)
		} else if !strings.Contains(body2, fmt.Sprintf("bbbb-%03d", try)) {
			t.Errorf("the file read after the second post lacks it: %.200q", body2)
		}
		return
	}
	t.Skip("no two rewrites of one size within one second")
}

// testTailBrowserCache reads the tail file as a page would, with fetch()
// and its default cache mode, in a room quiet for an hour: after a post
// the browser still answers the old file from its cache, without asking
// (heuristic freshness: a tenth of the time since Last-Modified).
func testTailBrowserCache(t *testing.T, h *hostkit.Host, c *client, room, tailURL string) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Skip("no chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.UserDataDir(t.TempDir()), chromedp.NoSandbox, chromedp.DisableGPU)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()
	u, _ := url.Parse(tailURL)
	file := filepath.Join(h.Docroot, "tail", path.Base(u.Path))
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(file, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past lighttpd's stat cache
	read := `fetch(` + fmt.Sprintf("%q", u.Path) + `).then(r => r.text())`
	if _, err := chromedp.Run(ctx, chromedp.Navigate(h.URL+"/")); err != nil {
		t.Fatal(err)
	}
	first, err := chromedp.Run(ctx, chromedp.Evaluate[string](read, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := c.post(t, room, "ada", "posted-after-a-quiet-hour")
	time.Sleep(1500 * time.Millisecond)
	second, err := chromedp.Run(ctx, chromedp.Evaluate[string](read, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	disk, _ := os.ReadFile(file)
	if !strings.Contains(string(disk), "posted-after-a-quiet-hour") {
		t.Fatalf("the file on disk lacks message %d", m.ID)
	}
	if !strings.Contains(second, "posted-after-a-quiet-hour") {
		t.Errorf("fetch() of the tail 1.5 s after post %d answered the old file (%d bytes, as first read: %v) from the browser's cache", m.ID, len(second), second == first)
	}
}

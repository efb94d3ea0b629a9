package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/hosting"
	"cgichat/internal/sse"
	"cgichat/internal/tail"
)

// tailApps returns a post and a stream program (CGI, one live stream in
// the host's budget) in cgi-bin of a chat folder whose tail folder is made
// by mkTail.
func tailApps(t *testing.T, mkTail func(dir string)) (post, stream *App, dir string) {
	t.Helper()
	dir = t.TempDir()
	bin := filepath.Join(dir, "cgi-bin")
	os.Mkdir(bin, 0o755)
	mkTail(filepath.Join(dir, tail.DirName))
	env := map[string]string{"CHAT_DB": filepath.Join(t.TempDir(), "chat.db"), "CHAT_MAX_STREAMS": "1", "CHAT_STREAMS_PER_CLIENT": "0"}
	for _, a := range []**App{&post, &stream} {
		if a == &post {
			*a = NewPost(hosting.Env{Mode: hosting.CGI, Log: quiet})
		} else {
			*a = NewStream(hosting.Env{Mode: hosting.CGI, Log: quiet})
		}
		(*a).Getenv = func(k string) string { return env[k] }
		(*a).Dir = bin
		t.Cleanup(func() { (*a).Close() })
	}
	return post, stream, dir
}

// postText posts text to room through a, under the nick text (each post
// a nick of its own, with no claim cookie to keep), and returns its id.
func postText(t *testing.T, a *App, room, text string) int64 {
	t.Helper()
	r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(`{"room":"`+room+`","nick":"`+text+`","text":"`+text+`"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, r)
	var m struct{ ID int64 }
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
		t.Fatalf("post: %d %s", rec.Code, rec.Body)
	}
	return m.ID
}

// readyData runs one stream request of reader to its end (a live one
// for at most a second) and returns its ready event's data.
func readyData(t *testing.T, a *App, room, reader string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "/cgi-bin/stream?room="+room+"&reader="+reader, nil).WithContext(ctx))
	r := sse.NewReader(rec.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("the poll ended without its ready event: %s", rec.Body)
		}
		if ev.Type == "ready" {
			var d map[string]any
			json.Unmarshal([]byte(ev.Data), &d)
			return d
		}
	}
}

// holdLive opens a live stream that takes the host's one slot until the
// test ends, and returns once it holds it (its first write).
func holdLive(t *testing.T, a *App, room string) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &firstWrite{ResponseRecorder: httptest.NewRecorder(), wrote: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.ServeHTTP(w, httptest.NewRequest("GET", "/cgi-bin/stream?room="+room+"&reader=live", nil).WithContext(ctx))
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-w.wrote:
	case <-done:
		t.Fatal("the live stream ended at once")
	}
}

// firstWrite is a recorder that says when the response began.
type firstWrite struct {
	*httptest.ResponseRecorder
	once  sync.Once
	wrote chan struct{}
}

func (w *firstWrite) Write(b []byte) (int, error) {
	n, err := w.ResponseRecorder.Write(b)
	w.once.Do(func() { close(w.wrote) })
	return n, err
}

// TestPollTail: past the budget a poll names the room's tail file, which
// holds the room's rows and follows every post; without a tail folder the
// program may write in, the poll names none and works as before.
func TestPollTail(t *testing.T) {
	post, stream, dir := tailApps(t, func(p string) { os.Mkdir(p, 0o755) })
	first := postText(t, post, "lobby", "before")
	holdLive(t, stream, "lobby")
	d := readyData(t, stream, "lobby", "p1")
	u, _ := d["tail"].(string)
	if d["mode"] != "poll" || !regexp.MustCompile(`^\.\./tail/[0-9a-f]{32}\.txt$`).MatchString(u) || d["every"] != float64(tail.Every.Milliseconds()) {
		t.Fatalf("ready %v, want a poll naming ../tail/<32 hex digits>.txt every %d ms", d, tail.Every.Milliseconds())
	}
	file := filepath.Join(dir, "cgi-bin", u)
	h, err := tail.ReadHead(file)
	if err != nil || h.Last != first || h.After >= first {
		t.Fatalf("the tail's head %+v, %v; want it to hold %d", h, err, first)
	}
	second := postText(t, post, "lobby", "after")
	if h, err := tail.ReadHead(file); err != nil || h.Last != second {
		t.Errorf("after a post the tail's head is %+v, %v; want last %d", h, err, second)
	}

	// A chat folder whose tail is no folder (nor can become one): polls
	// as before.
	post2, stream2, _ := tailApps(t, func(p string) { os.WriteFile(p, nil, 0o644) })
	postText(t, post2, "lobby", "x")
	holdLive(t, stream2, "lobby")
	d = readyData(t, stream2, "lobby", "p1")
	if _, named := d["tail"]; d["mode"] != "poll" || named {
		t.Errorf("without a tail folder: ready %v, want a poll naming no tail", d)
	}
}

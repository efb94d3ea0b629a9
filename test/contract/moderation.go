package contract

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/identity"
	"cgichat/internal/store"
	"cgichat/internal/web"
)

// moderationTests are the actions on POST cgi-bin/post: moderating from
// the page, deleting one's own messages, a nick on two devices; and the
// pages of older history on GET cgi-bin/stream. Run runs them.
var moderationTests = []contractTest{
	{"Moderation", testModeration},
	{"ModeratorKeyGuesses", testModeratorKeyGuesses},
	{"ModeratorSetupFile", testModeratorSetupFile},
	{"OwnDelete", testOwnDelete},
	{"NickCheckAndTransfer", testNickCheckAndTransfer},
	{"HistoryPages", testHistoryPages},
}

// proxied are the settings under which a test's clients come from
// addresses of their own: the test client is the trusted proxy, and each
// browser names its address in X-Forwarded-For.
var proxied = map[string]string{"CHAT_TRUSTED_PROXIES": "127.0.0.1,::1"}

// browser is one browser of a test: its cookies (nick claims, a
// moderator's session) and its address.
type browser struct {
	d    *Deployment
	c    *http.Client
	addr string // X-Forwarded-For; "" sends none
}

// browser returns a new browser at addr.
func (d *Deployment) browser(addr string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{d: d, c: &http.Client{Jar: jar}, addr: addr}
}

// do sends a request with a JSON body to post and returns the status and
// the body.
func (b *browser) do(t testing.TB, body any) (*http.Response, []byte) {
	t.Helper()
	raw, ok := body.(string)
	if !ok {
		j, _ := json.Marshal(body)
		raw = string(j)
	}
	req, _ := http.NewRequest("POST", b.d.PostURL(), strings.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if b.addr != "" {
		req.Header.Set("X-Forwarded-For", b.addr)
	}
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := readAnswer(t, res)
	return res, out
}

// post posts a message as nick and returns the status and the message
// (or the error's sentence).
func (b *browser) post(t testing.TB, nick, text string) (int, chat.Message, string) {
	t.Helper()
	res, body := b.do(t, map[string]string{"nick": nick, "text": text})
	var m chat.Message
	json.Unmarshal(body, &m)
	return res.StatusCode, m, errorOf(body)
}

// mustPost posts a message as nick, failing the test unless it is stored.
func (b *browser) mustPost(t testing.TB, nick, text string) chat.Message {
	t.Helper()
	status, m, msg := b.post(t, nick, text)
	if status != http.StatusCreated {
		t.Fatalf("post as %s: %d %s", nick, status, msg)
	}
	return m
}

// act sends an action and decodes a 200's body into out (when not nil).
// It returns the status and the error's sentence.
func (b *browser) act(t testing.TB, action map[string]any, out any) (int, string) {
	t.Helper()
	res, body := b.do(t, action)
	if res.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%v: body %s: %v", action, body, err)
		}
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%v: Content-Type %q, want JSON", action, ct)
	}
	return res.StatusCode, errorOf(body)
}

// mustAct sends an action, failing the test unless it answers 200.
func (b *browser) mustAct(t testing.TB, action map[string]any, out any) {
	t.Helper()
	if status, msg := b.act(t, action, out); status != http.StatusOK {
		t.Fatalf("%v: %d %s, want 200", action, status, msg)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// errorOf returns the sentence of a JSON error body.
func errorOf(body []byte) string {
	var e struct{ Error string }
	json.Unmarshal(body, &e)
	return e.Error
}

// a is an action's body.
type a = map[string]any

// ModeratorKey makes a moderator key labelled label in the deployment's
// database, as post -moderator-key does, and returns it.
func (d *Deployment) ModeratorKey(t testing.TB, label string) string {
	t.Helper()
	st, err := store.Open(context.Background(), d.DB, store.Options{NickKey: identity.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, hash := identity.NewModeratorKey()
	if err := st.AddModeratorKey(context.Background(), label, hash, "by the test"); err != nil {
		t.Fatal(err)
	}
	return key
}

// moderator returns a browser at addr logged in with a new key labelled
// label.
func (d *Deployment) moderator(t testing.TB, label, addr string) *browser {
	t.Helper()
	m := d.browser(addr)
	var who struct{ Moderator string }
	m.mustAct(t, a{"action": "login", "key": d.ModeratorKey(t, label)}, &who)
	if who.Moderator != label {
		t.Fatalf("logged in as %q, want %q", who.Moderator, label)
	}
	return m
}

// queryInt returns the one number query gives on the deployment's
// database, as a moderator reads it in the database's shell.
func (d *Deployment) queryInt(t testing.TB, query string, args ...any) int {
	t.Helper()
	db := d.sqlDB(t, false)
	var n int
	if err := db.QueryRow(db.Rebind(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// logEntry is a line of the moderation log as actions answer it.
type logEntry struct {
	ID        int64
	Time      string
	Moderator string
	Action    string
	Message   int64
	Nick      string
	Detail    string
}

func testModeration(t *testing.T, start Start) {
	d := start(t, proxied)
	ada, troll, eve := d.browser("10.0.0.1"), d.browser("10.0.0.2"), d.browser("10.0.0.3")
	hello := ada.mustPost(t, "Ada", "hello")
	spam := troll.mustPost(t, "troll", "spam")
	hers := eve.mustPost(t, "eve", "hi")
	key := d.ModeratorKey(t, "alice")

	t.Run("Refused without a key", func(t *testing.T) {
		anon := d.browser("10.0.0.7")
		forged := d.browser("10.0.0.8")
		forged.c.Jar.SetCookies(mustURL(t, d.PostURL()), []*http.Cookie{{Name: identity.ModeratorCookieName, Value: "m1.YWxpY2U.99999999999.AAAA"}})
		for _, b := range []*browser{anon, forged, ada} {
			for _, act := range []a{
				{"action": "delete", "id": spam.ID},
				{"action": "ban-nick", "id": spam.ID, "for": "ever"},
				{"action": "ban-nick", "nick": "troll", "for": "hour"},
				{"action": "ban-address", "id": spam.ID, "for": "day"},
				{"action": "unban-nick", "nick": "troll"},
				{"action": "unban-address", "id": spam.ID},
				{"action": "release-nick", "id": hello.ID},
				{"action": "log"},
			} {
				if status, msg := b.act(t, act, nil); status != http.StatusForbidden || msg == "" {
					t.Errorf("%v from %s: %d %q, want 403 with a sentence", act, b.addr, status, msg)
				}
			}
		}
		var who struct{ Moderator *string }
		forged.mustAct(t, a{"action": "whoami"}, &who)
		if who.Moderator != nil {
			t.Errorf("whoami with a forged session: %q, want null", *who.Moderator)
		}
		if n := d.Count(t); n != 3 {
			t.Errorf("rows = %d, want the 3 messages", n)
		}
		if n := d.queryInt(t, "SELECT count(*) FROM bans") + d.queryInt(t, "SELECT count(*) FROM address_bans") + d.queryInt(t, "SELECT count(*) FROM moderation_log WHERE action <> 'key-created'"); n != 0 {
			t.Errorf("%d bans or log entries after refused actions, want 0", n)
		}
	})

	mod := d.browser("10.0.0.9")
	t.Run("Login", func(t *testing.T) {
		if status, msg := mod.act(t, a{"action": "login", "key": key + "x"}, nil); status != http.StatusForbidden || strings.Contains(msg, key) {
			t.Errorf("a wrong key: %d %q, want 403 that does not repeat it", status, msg)
		}
		res, body := mod.do(t, a{"action": "login", "key": key})
		var who struct {
			Moderator        string
			OwnDeleteSeconds int
		}
		json.Unmarshal(body, &who)
		if res.StatusCode != 200 || who.Moderator != "alice" || who.OwnDeleteSeconds != 600 {
			t.Fatalf("login: %d %s, want 200 as alice", res.StatusCode, body)
		}
		var c *http.Cookie
		for _, rc := range res.Cookies() {
			if rc.Name == identity.ModeratorCookieName {
				c = rc
			}
		}
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, key) || c.MaxAge <= 0 {
			t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, lasting, without the key", c)
		}
		var again struct{ Moderator string }
		mod.mustAct(t, a{"action": "whoami"}, &again)
		if again.Moderator != "alice" {
			t.Errorf("whoami after login: %q, want alice", again.Moderator)
		}
	})

	t.Run("Delete reaches the streams", func(t *testing.T) {
		s := Open(t, d.StreamURL(nil), nil)
		s.Until(t, "ready", 5*time.Second)
		var got struct {
			Deleted int64
			Room    string
		}
		mod.mustAct(t, a{"action": "delete", "id": spam.ID}, &got)
		deleted := time.Now()
		if got.Deleted != spam.ID || got.Room != "lobby" {
			t.Errorf("delete answered %+v", got)
		}
		ev := s.NextOf(t, "delete", 5*time.Second)
		if took := time.Since(deleted); took > time.Second {
			t.Errorf("the deletion reached the stream after %v, want within 1s", took)
		}
		var tomb struct{ ID, Target int64 }
		json.Unmarshal([]byte(ev.Data), &tomb)
		if tomb.Target != spam.ID || ev.ID != fmt.Sprint(tomb.ID) {
			t.Errorf("delete event %s, want target %d", ev.Data, spam.ID)
		}
		// The tombstone is the one the shell's DELETE leaves.
		if n := d.queryInt(t, "SELECT count(*) FROM messages WHERE kind = 'delete' AND target = ? AND text = '' AND nick = 'troll' AND room = 'lobby' AND id = ?", spam.ID, tomb.ID); n != 1 {
			t.Errorf("%d tombstones of the shell's form, want 1", n)
		}
		if status, _ := mod.act(t, a{"action": "delete", "id": spam.ID}, nil); status != http.StatusNotFound {
			t.Errorf("deleting it again: %d, want 404", status)
		}
	})

	t.Run("Ban nick", func(t *testing.T) {
		var got struct{ Log logEntry }
		// By the deleted message: its tombstone keeps the nick.
		mod.mustAct(t, a{"action": "ban-nick", "id": spam.ID, "for": "hour", "reason": "spam"}, &got)
		if e := got.Log; e.Moderator != "alice" || e.Action != "ban-nick" || e.Nick != "troll" || e.Message != spam.ID || !strings.HasPrefix(e.Detail, "until ") || !strings.HasSuffix(e.Detail, "; spam") {
			t.Errorf("log entry %+v", e)
		}
		if status, _, msg := d.browser("10.0.0.20").post(t, "TROLL", "again"); status != http.StatusForbidden || !strings.Contains(msg, "until") {
			t.Errorf("the banned nick: %d %q, want 403 until the ban's end", status, msg)
		}
		mod.mustAct(t, a{"action": "ban-nick", "nick": "Spammer", "for": "ever"}, &got)
		if status, _, _ := d.browser("10.0.0.21").post(t, "spammer", "x"); status != http.StatusForbidden {
			t.Errorf("a nick banned for ever: %d, want 403", status)
		}
		mod.mustAct(t, a{"action": "unban-nick", "nick": "SPAMMER"}, &got)
		if got.Log.Detail != "1 ban lifted" {
			t.Errorf("unban: %+v", got.Log)
		}
		if status, _, msg := d.browser("10.0.0.21").post(t, "spammer", "x"); status != http.StatusCreated {
			t.Errorf("after the unban: %d %q", status, msg)
		}
	})

	t.Run("Ban address", func(t *testing.T) {
		res, body := mod.do(t, a{"action": "ban-address", "id": hers.ID, "for": "day"})
		if res.StatusCode != 200 || strings.Contains(string(body), "10.0.0.3") {
			t.Fatalf("ban-address: %d %s, want 200 without the address", res.StatusCode, body)
		}
		if status, _, msg := eve.post(t, "eve", "still here?"); status != http.StatusForbidden || !strings.Contains(msg, "until") {
			t.Errorf("the banned address: %d %q, want 403", status, msg)
		}
		if status, _, _ := d.browser("10.0.0.3").post(t, "someone else", "x"); status != http.StatusForbidden {
			t.Errorf("the banned address under another nick: %d, want 403", status)
		}
		if status, _, msg := d.browser("10.0.0.4").post(t, "eve's friend", "x"); status != http.StatusCreated {
			t.Errorf("another address: %d %q", status, msg)
		}
		// The database keeps no address, only hashes.
		for _, q := range []string{"SELECT count(*) FROM messages WHERE addr_hash LIKE '%10.0.0%'", "SELECT count(*) FROM address_bans WHERE addr_hash LIKE '%10.0.0%'"} {
			if n := d.queryInt(t, q); n != 0 {
				t.Errorf("%s: %d, want 0", q, n)
			}
		}
		mod.mustAct(t, a{"action": "unban-address", "id": hers.ID}, nil)
		if status, _, msg := eve.post(t, "eve", "back"); status != http.StatusCreated {
			t.Errorf("after the unban: %d %q", status, msg)
		}
	})

	t.Run("Release nick", func(t *testing.T) {
		var got struct{ Log logEntry }
		mod.mustAct(t, a{"action": "release-nick", "id": hello.ID}, &got)
		if got.Log.Nick != "Ada" || got.Log.Detail != "released" {
			t.Errorf("release: %+v", got.Log)
		}
		if status, _, msg := d.browser("10.0.0.30").post(t, "ada", "mine now"); status != http.StatusCreated {
			t.Errorf("a released nick, taken by another: %d %q", status, msg)
		}
		if status, _, _ := ada.post(t, "Ada", "and me?"); status != http.StatusConflict {
			t.Errorf("its former holder: %d, want 409", status)
		}
	})

	t.Run("Log", func(t *testing.T) {
		var page struct {
			Entries []logEntry
			More    bool
		}
		mod.mustAct(t, a{"action": "log", "limit": 2}, &page)
		if len(page.Entries) != 2 || !page.More || page.Entries[0].Action != "release-nick" || page.Entries[0].ID <= page.Entries[1].ID {
			t.Fatalf("first page %+v, want the 2 newest, newest first, and more", page)
		}
		mod.mustAct(t, a{"action": "log", "before": page.Entries[1].ID}, &page)
		var actions []string
		for _, e := range page.Entries {
			actions = append(actions, e.Action)
		}
		// Oldest last: the key's making, the delete, then the bans.
		if got, want := strings.Join(actions, " "), "ban-address unban-nick ban-nick ban-nick delete key-created"; got != want || page.More {
			t.Errorf("the rest of the log: %s (more %v), want %s", got, page.More, want)
		}
		if n := d.queryInt(t, "SELECT count(*) FROM moderation_log WHERE moderator = 'alice'"); n != 8 {
			t.Errorf("moderation_log holds %d lines by alice, want 8", n)
		}
	})

	t.Run("Bad actions", func(t *testing.T) {
		for _, tt := range []struct {
			body   any
			status int
			want   string
		}{
			{a{"action": "dance"}, 400, "no action"},
			{a{"action": 5}, 400, "action"},
			{a{"action": "delete"}, 400, "id"},
			{a{"action": "delete", "id": "42"}, 400, "id"},
			{a{"action": "delete", "id": 0}, 400, "id"},
			{a{"action": "ban-nick", "id": hello.ID}, 400, "for"},
			{a{"action": "ban-nick", "id": hello.ID, "for": "week"}, 400, "for"},
			{a{"action": "ban-nick", "id": hello.ID, "nick": "x", "for": "day"}, 400, "not both"},
			{a{"action": "ban-nick", "nick": "a\u200bb", "for": "day"}, 400, "invisible"},
			{a{"action": "ban-address", "id": 999999, "for": "day"}, 404, "999999"},
			{a{"action": "ban-nick", "id": hello.ID, "for": "day", "reason": "a\nb"}, 400, "reason"},
			{a{"action": "log", "limit": 500}, 400, "limit"},
			{`{"action":"delete","id":1} x`, 400, "JSON object"},
			{`{"action":"delete","id":1,"reason":"\ud800"}`, 400, "UTF-8"},
		} {
			res, body := mod.do(t, tt.body)
			if res.StatusCode != tt.status || !strings.Contains(strings.ToLower(errorOf(body)), strings.ToLower(tt.want)) {
				t.Errorf("%v: %d %s, want %d mentioning %q", tt.body, res.StatusCode, body, tt.status, tt.want)
			}
		}
	})

	t.Run("Revoked key", func(t *testing.T) {
		// The one line docs/security.md gives.
		d.exec(t, "DELETE FROM moderator_keys WHERE label = 'alice'")
		if status, _ := mod.act(t, a{"action": "log"}, nil); status != http.StatusForbidden {
			t.Errorf("an action after the key was revoked: %d, want 403", status)
		}
		bob := d.moderator(t, "bob", "10.0.0.10")
		bob.mustAct(t, a{"action": "logout"}, nil)
		var who struct{ Moderator *string }
		bob.mustAct(t, a{"action": "whoami"}, &who)
		if who.Moderator != nil {
			t.Errorf("whoami after logout: %q, want null", *who.Moderator)
		}
	})
}

// testModeratorKeyGuesses: tries of keys are rate-limited per client,
// right or wrong, at the rate of posts (slow here, so that no token comes
// back during the test).
func testModeratorKeyGuesses(t *testing.T, start Start) {
	d := start(t, map[string]string{"CHAT_TRUSTED_PROXIES": "127.0.0.1,::1", "CHAT_RATE_LIMIT": "5/10m"})
	d.Post(t, "lobby", "ada", "creates the tables")
	key := d.ModeratorKey(t, "alice")
	guesser := d.browser("10.0.0.66")
	for i := range 5 {
		wrong := fmt.Sprintf("cgmk_guess%d", i)
		status, msg := guesser.act(t, a{"action": "login", "key": wrong}, nil)
		if status != http.StatusForbidden || strings.Contains(msg, wrong) {
			t.Fatalf("wrong key %d: %d %q, want 403 not repeating it", i, status, msg)
		}
	}
	res, body := guesser.do(t, a{"action": "login", "key": key})
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" || strings.Contains(string(body), key) {
		t.Errorf("the right key after 5 wrong ones: %d %s (Retry-After %q), want 429 with Retry-After", res.StatusCode, body, res.Header.Get("Retry-After"))
	}
	var who struct{ Moderator string }
	d.browser("10.0.0.67").mustAct(t, a{"action": "login", "key": key}, &who)
	if who.Moderator != "alice" {
		t.Errorf("another client: logged in as %q", who.Moderator)
	}
}

// setupPath returns where the deployment's programs look for the
// moderator set-up file.
func (d *Deployment) setupPath() string {
	wakeDir := d.WakeDir
	if wakeDir == "" {
		c, _ := config.Load(func(k string) string {
			if k == "CHAT_DB" {
				return d.DB
			}
			return ""
		})
		wakeDir = c.WakeDir
	}
	return web.SetupPath(config.Config{WakeDir: wakeDir})
}

// testModeratorSetupFile makes a key the way a host with FTP only allows:
// a set-up file the operator uploads, whose code the page's login takes
// once.
func testModeratorSetupFile(t *testing.T, start Start) {
	d := start(t, proxied)
	d.Post(t, "lobby", "ada", "creates the tables")
	path := d.setupPath()
	op := d.browser("10.0.0.1")
	if status, _ := op.act(t, a{"action": "login", "key": "our long set-up phrase"}, nil); status != http.StatusForbidden {
		t.Errorf("the code with no file there: %d, want 403", status)
	}
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("label: short\ncode: 2short\n")
	if status, msg := op.act(t, a{"action": "login", "key": "2short"}, nil); status != http.StatusBadRequest || !strings.Contains(msg, "shorter") {
		t.Errorf("a file with a short code: %d %q, want 400 saying so", status, msg)
	}
	// As a Windows editor saves it.
	write("\ufeff# made by FTP\r\nlabel: Zoë\r\ncode: our long set-up phrase\r\n")
	if status, _ := op.act(t, a{"action": "login", "key": "our long set-up phrase!"}, nil); status != http.StatusForbidden {
		t.Errorf("a wrong code: %d, want 403", status)
	}
	var got struct {
		Moderator string
		Key       string
		Warning   string
	}
	op.mustAct(t, a{"action": "login", "key": " our long set-up phrase "}, &got)
	if got.Moderator != "Zoë" || !strings.HasPrefix(got.Key, "cgmk_") || got.Warning != "" {
		t.Fatalf("login with the set-up code: %+v, want Zoë's new key", got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the set-up file is still there (%v)", err)
	}
	if status, _ := d.browser("10.0.0.2").act(t, a{"action": "login", "key": "our long set-up phrase"}, nil); status != http.StatusForbidden {
		t.Errorf("the code a second time: %d, want 403", status)
	}
	var who struct{ Moderator string }
	d.browser("10.0.0.3").mustAct(t, a{"action": "login", "key": got.Key}, &who)
	if who.Moderator != "Zoë" {
		t.Errorf("the new key logs in as %q", who.Moderator)
	}
	op.mustAct(t, a{"action": "whoami"}, &who)
	if who.Moderator != "Zoë" {
		t.Errorf("the set-up login's own session: %q", who.Moderator)
	}
	if n := d.queryInt(t, "SELECT count(*) FROM moderator_keys WHERE label = 'Zoë' AND hash <> ''"); n != 1 {
		t.Errorf("%d keys labelled Zoë, want 1", n)
	}
	if n := d.queryInt(t, "SELECT count(*) FROM moderator_keys WHERE hash = ?", got.Key); n != 0 {
		t.Error("the key is stored as it is, not as a hash")
	}
}

// testOwnDelete: the holder of a nick's claim deletes their own message
// within the window, and no other.
func testOwnDelete(t *testing.T, start Start) {
	d := start(t, proxied)
	ada, eve := d.browser("10.0.0.1"), d.browser("10.0.0.2")
	mine := ada.mustPost(t, "Ada", "oops")
	older := ada.mustPost(t, "Ada", "an hour ago")
	hers := eve.mustPost(t, "eve", "hers")
	d.exec(t, "UPDATE messages SET created_at = ? WHERE id = ?", time.Now().Add(-11*time.Minute).UTC().Format(chat.TimeFormat), older.ID)
	s := Open(t, d.StreamURL(nil), nil)
	s.Until(t, "ready", 5*time.Second)
	for _, tt := range []struct {
		name string
		b    *browser
		id   int64
		want int
	}{
		{"Another's message", ada, hers.ID, 403},
		{"Without the claim", d.browser("10.0.0.1"), mine.ID, 403},
		{"Another holder's browser", eve, mine.ID, 403},
		{"Own message after the window", ada, older.ID, 403},
		{"No such message", ada, 999999, 404},
	} {
		if status, msg := tt.b.act(t, a{"action": "delete", "id": tt.id}, nil); status != tt.want || msg == "" {
			t.Errorf("%s: %d %q, want %d", tt.name, status, msg, tt.want)
		}
	}
	var got struct{ Deleted int64 }
	ada.mustAct(t, a{"action": "delete", "id": mine.ID}, &got)
	ev := s.NextOf(t, "delete", 5*time.Second)
	if got.Deleted != mine.ID || !strings.Contains(ev.Data, fmt.Sprintf(`"target":%d`, mine.ID)) {
		t.Errorf("own delete: %+v, event %s", got, ev.Data)
	}
	if n := d.queryInt(t, "SELECT count(*) FROM moderation_log WHERE moderator IS NULL AND action = 'delete' AND message = ?", mine.ID); n != 1 {
		t.Errorf("%d log lines for the poster's delete, want 1", n)
	}
	if n := d.Count(t); n != 3 {
		t.Errorf("rows = %d, want the 2 other messages and a tombstone", n)
	}
}

// testNickCheckAndTransfer: a page checks a nick before its first post,
// and the holder of a nick carries it to another device with a code.
func testNickCheckAndTransfer(t *testing.T, start Start) {
	d := start(t, proxied)
	laptop, other := d.browser("10.0.0.1"), d.browser("10.0.0.2")
	check := func(b *browser, nick string) string {
		t.Helper()
		var got struct{ Nick, Status string }
		b.mustAct(t, a{"action": "check-nick", "nick": nick}, &got)
		return got.Nick + ":" + got.Status
	}
	if got := check(laptop, " Ａda "); got != "Ada:free" {
		t.Errorf("a new nick: %s, want Ada:free", got)
	}
	laptop.mustPost(t, "Ada", "hi")
	if got := check(laptop, "ada"); got != "ada:yours" {
		t.Errorf("one's own nick: %s, want ada:yours", got)
	}
	if got := check(other, "\u0410DA"); got != "\u0410DA:taken" {
		t.Errorf("a look-alike of another's nick: %s, want taken", got)
	}
	d.exec(t, "INSERT INTO bans (nick) VALUES ('troll')")
	if got := check(other, "Troll"); got != "Troll:banned" {
		t.Errorf("a banned nick: %s, want banned", got)
	}
	if status, _ := other.act(t, a{"action": "check-nick", "nick": "a\x07"}, nil); status != 400 {
		t.Errorf("a nick with a control character: %d, want 400", status)
	}

	var code struct {
		Nick, Code, Expires string
		Seconds             int
	}
	if status, msg := other.act(t, a{"action": "transfer", "nick": "Ada"}, nil); status != http.StatusForbidden || msg == "" {
		t.Errorf("a code for a nick one does not hold: %d %q, want 403", status, msg)
	}
	laptop.mustAct(t, a{"action": "transfer", "nick": "ada"}, &code)
	expires, err := time.Parse(time.RFC3339, code.Expires)
	if code.Nick != "Ada" || len(code.Code) != 11 || code.Seconds != 300 || err != nil || time.Until(expires) > 5*time.Minute+time.Minute {
		t.Fatalf("transfer: %+v, want a code for Ada lasting 5 minutes", code)
	}
	phone := d.browser("10.0.0.3")
	if status, _, _ := phone.post(t, "Ada", "from the phone"); status != http.StatusConflict {
		t.Fatalf("the phone before the code: %d, want 409", status)
	}
	var got struct{ Nick, Status string }
	phone.mustAct(t, a{"action": "redeem", "code": strings.ToLower(code.Code)}, &got)
	if got.Nick != "Ada" || got.Status != "yours" {
		t.Errorf("redeem: %+v", got)
	}
	phone.mustPost(t, "Ada", "from the phone")
	laptop.mustPost(t, "Ada", "and from the laptop")
	if got := check(phone, "Ada"); got != "Ada:yours" {
		t.Errorf("the phone checks the nick: %s", got)
	}
	if status, _ := d.browser("10.0.0.4").act(t, a{"action": "redeem", "code": code.Code}, nil); status != http.StatusForbidden {
		t.Errorf("the code a second time: %d, want 403", status)
	}
	laptop.mustAct(t, a{"action": "transfer", "nick": "Ada"}, &code)
	d.exec(t, "UPDATE nick_transfers SET expires = ?", time.Now().Add(-time.Second).UTC().Format(chat.TimeFormat))
	if status, _ := d.browser("10.0.0.5").act(t, a{"action": "redeem", "code": code.Code}, nil); status != http.StatusForbidden {
		t.Errorf("an expired code: %d, want 403", status)
	}
	for _, bad := range []string{"", "12345", "UUUUU-UUUUU"} {
		if status, _ := d.browser("10.0.0.6").act(t, a{"action": "redeem", "code": bad}, nil); status != http.StatusBadRequest {
			t.Errorf("code %q: %d, want 400", bad, status)
		}
	}
	if n := d.queryInt(t, "SELECT count(*) FROM nick_transfers WHERE code_hash = ?", code.Code); n != 0 {
		t.Error("a transfer code is stored as it is, not as a hash")
	}
}

// testHistoryPages reads a room's history backwards, page by page.
func testHistoryPages(t *testing.T, start Start) {
	d := start(t, nil)
	seeded := d.Seed(t, "lobby", 250)
	d.Seed(t, "other", 3)
	deleted := map[int64]bool{seeded[10].ID: true, seeded[200].ID: true, seeded[249].ID: true}
	for id := range deleted {
		d.exec(t, store.ModeratorDelete(d.DB), id)
	}
	var want []chat.Message
	for _, m := range seeded {
		if !deleted[m.ID] {
			want = append(want, m)
		}
	}
	type page struct {
		Messages []chat.Message
		More     bool
	}
	get := func(query string) (*http.Response, page) {
		t.Helper()
		res, err := http.Get(d.URL + "/cgi-bin/stream?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var p page
		body := readAnswer(t, res)
		if res.StatusCode == 200 {
			if err := json.Unmarshal(body, &p); err != nil || p.Messages == nil {
				t.Fatalf("%s: body %.300s: %v; want {\"messages\":[…],\"more\":…}", query, body, err)
			}
		}
		return res, p
	}
	// From past the newest, as a page that has every message does, back
	// to the beginning.
	var got []chat.Message
	before, pages := int64(1<<40), 0
	for {
		res, p := get(fmt.Sprintf("room=lobby&before=%d", before))
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("before=%d: %d %q, want 200 JSON", before, res.StatusCode, res.Header.Get("Content-Type"))
		}
		pages++
		if len(p.Messages) > 100 || (p.More && len(p.Messages) != 100) {
			t.Fatalf("page %d holds %d messages (more %v), want 100 by default", pages, len(p.Messages), p.More)
		}
		got = append(p.Messages, got...)
		if !p.More {
			break
		}
		before = p.Messages[0].ID
	}
	if pages != 3 || texts(got) != texts(want) {
		t.Errorf("%d pages holding %d messages; want 3 pages holding the %d left, oldest first, deleted ones left out", pages, len(got), len(want))
	}
	if _, p := get(fmt.Sprintf("room=LOBBY&before=%d&limit=200", seeded[5].ID)); texts(p.Messages) != texts(seeded[:5]) || p.More {
		t.Errorf("the first page: %s (more %v), want the first 5", texts(p.Messages), p.More)
	}
	if _, p := get(fmt.Sprintf("room=lobby&before=%d&limit=1", seeded[5].ID)); texts(p.Messages) != texts(seeded[4:5]) || !p.More {
		t.Errorf("one message: %s (more %v), want message 5 and more", texts(p.Messages), p.More)
	}
	if _, p := get("room=empty&before=5"); len(p.Messages) != 0 || p.More {
		t.Errorf("an empty room: %+v", p)
	}
	for _, q := range []string{"before=", "before=abc", "before=-1", "before=0", "before=1.5",
		"before=9&limit=0", "before=9&limit=201", "before=9&limit=x", "before=9&limit=", "room=a/b&before=9"} {
		res, _ := get(q)
		if res.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", q, res.StatusCode)
		}
		res, err := http.Get(d.URL + "/cgi-bin/stream?" + q)
		if err != nil {
			t.Fatal(err)
		}
		word := "before"
		switch {
		case strings.Contains(q, "limit"):
			word = "limit"
		case strings.Contains(q, "room"):
			word = "room"
		}
		checkErrorBody(t, res, word)
		res.Body.Close()
	}
}

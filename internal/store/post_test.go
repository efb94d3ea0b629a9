package store

import (
	"context"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/identity"
	"cgichat/internal/ratelimit"
	"cgichat/test/dbtest"
)

// clock is a settable time for a store.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func withClock(s *Store) *clock {
	c := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	s.Now = c.now
	return c
}

// input is a post by nick from addr, whose client holds claims on the
// nick's key issued at held.
func input(nick, addr string, held ...int64) PostInput {
	return PostInput{Room: "lobby", Nick: nick, Text: "hi", NickKey: identity.Key(nick), Held: held, Addr: addr,
		Rate: ratelimit.Rate{N: 3, Per: 3 * time.Second}, NickHold: time.Hour}
}

func count(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	s.db.Get(&n, "SELECT count(*) FROM messages")
	return n
}

func TestPostNickOwnership(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		first, err := s.Post(ctx, input("Ada", "10.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		if first.NewClaim == 0 {
			t.Fatalf("first post claim = %+v, want a new claim for key ada", first.NewClaim)
		}
		own := first.NewClaim
		tests := []struct {
			name     string
			in       PostInput
			wantCode chat.Code // "" for success
			newClaim bool
		}{
			{"Owner again", input("Ada", "10.0.0.1", own), "", false},
			{"Owner from another address", input("ada", "10.0.0.9", own), "", false},
			{"Someone else", input("Ada", "10.0.0.2"), chat.EConflict, false},
			{"Other case", input("ADA", "10.0.0.2"), chat.EConflict, false},
			{"Full-width look-alike", input("Ａｄａ", "10.0.0.2"), chat.EConflict, false},
			{"Zero-width inside", input("A\u200bda", "10.0.0.2"), chat.EConflict, false},
			{"Old claim of the same key", input("Ada", "10.0.0.2", own-1), chat.EConflict, false},
			{"Another nick is free", input("Bob", "10.0.0.2"), "", true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := count(t, s)
				res, err := s.Post(ctx, tt.in)
				if got := codeOf(err); got != tt.wantCode {
					t.Fatalf("code %q (%v), want %q", got, err, tt.wantCode)
				}
				if err != nil && count(t, s) != before {
					t.Errorf("a refused post stored a row")
				}
				if got := res.NewClaim != 0; err == nil && got != tt.newClaim {
					t.Errorf("new claim: %v, want %v", got, tt.newClaim)
				}
			})
		}
		// Once the owner has been idle longer than the hold, the nick is free.
		c.advance(time.Hour + time.Second)
		res, err := s.Post(ctx, input("ada", "10.0.0.2"))
		if err != nil || res.NewClaim == 0 || res.NewClaim == own {
			t.Fatalf("after the hold: %+v, %v; want a fresh claim", res, err)
		}
		if _, err := s.Post(ctx, input("Ada", "10.0.0.1", own)); codeOf(err) != chat.EConflict {
			t.Errorf("the old owner's superseded claim: %v, want a conflict", err)
		}
	})
}

func codeOf(err error) chat.Code {
	if err == nil {
		return ""
	}
	return chat.ErrorCode(err)
}

func TestPostRateLimit(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		claims := map[string][]int64{}
		post := func(nick, addr string) error {
			res, err := s.Post(ctx, input(nick, addr, claims[nick]...))
			if res.NewClaim != 0 {
				claims[nick] = []int64{res.NewClaim}
			}
			return err
		}
		for i := 0; i < 3; i++ {
			if err := post("ada", "10.0.0.1"); err != nil {
				t.Fatalf("post %d within the burst: %v", i, err)
			}
		}
		err := post("ada", "10.0.0.1")
		var ce *chat.Error
		if codeOf(err) != chat.ETooMany || !asError(err, &ce) || ce.RetryAfter <= 0 || ce.RetryAfter > time.Second {
			t.Fatalf("4th post in the burst: %v; want too many, retry within 1s", err)
		}
		if err := post("bob", "10.0.0.1"); codeOf(err) != chat.ETooMany {
			t.Errorf("another nick from the same address: %v, want too many", err)
		}
		if err := post("ada", "10.0.0.2"); codeOf(err) != chat.ETooMany {
			t.Errorf("the same nick from another address: %v, want too many", err)
		}
		if err := post("eve", "10.0.0.3"); err != nil {
			t.Errorf("another nick from another address: %v", err)
		}
		if n := count(t, s); n != 4 {
			t.Errorf("rows = %d, want 4", n)
		}
		c.advance(time.Second)
		if err := post("ada", "10.0.0.1"); err != nil {
			t.Errorf("after a second (one token back): %v", err)
		}
		in := input("zed", "10.0.0.1")
		in.Rate = ratelimit.Rate{}
		for i := 0; i < 10; i++ {
			res, err := s.Post(ctx, in)
			if err != nil {
				t.Fatalf("rate limit off, post %d: %v", i, err)
			}
			if res.NewClaim != 0 {
				in.Held = []int64{res.NewClaim}
			}
		}
	})
}

func asError(err error, target **chat.Error) bool {
	e, ok := err.(*chat.Error)
	*target = e
	return ok
}

func TestPostBans(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		withClock(s)
		ctx := context.Background()
		s.db.MustExec(`INSERT INTO bans (nick) VALUES ('Troll')`)
		s.db.MustExec(`INSERT INTO bans (addr, until) VALUES ('10.6.6.6', '2026-12-01T00:00:00Z')`)
		s.db.MustExec(`INSERT INTO bans (addr, until) VALUES ('10.7.7.7', '2026-11-01T00:00:00Z')`)
		tests := []struct {
			name, nick, addr string
			want             chat.Code
		}{
			{"Banned nick", "troll", "10.0.0.1", chat.EForbidden},
			{"Banned nick look-alike", "ＴＲＯＬＬ", "10.0.0.1", chat.EForbidden},
			{"Banned address until December", "ada", "10.6.6.6", chat.EForbidden},
			{"Ban that ended", "bob", "10.7.7.7", ""},
			{"Nobody banned", "eve", "10.0.0.2", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := count(t, s)
				_, err := s.Post(ctx, input(tt.nick, tt.addr))
				if got := codeOf(err); got != tt.want {
					t.Fatalf("code %q (%v), want %q", got, err, tt.want)
				}
				if err != nil && count(t, s) != before {
					t.Error("a refused post stored a row")
				}
			})
		}
	})
}

func TestSecretIsStable(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		a, err := s.Secret(context.Background())
		if err != nil || len(a) != 32 {
			t.Fatalf("Secret = %x, %v; want 32 bytes", a, err)
		}
		other, err := Open(context.Background(), s.DB(), testOptions(false))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		again, _ := other.Secret(context.Background())
		if string(a) != string(again) {
			t.Error("two stores on one database see different secrets")
		}
	})
}

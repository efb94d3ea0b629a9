package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/identity"
	"cgichat/test/dbtest"
)

func TestStreamCapAndPresence(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		open := func(owner, room, nick, addr string) (int64, error) {
			return s.OpenStream(ctx, StreamInput{Owner: owner, Room: room, Nick: nick, Addr: addr, Cap: 2, Stale: 15 * time.Second})
		}
		a1, err := open("p1", "lobby", "ada", "10.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := open("p1", "lobby", "", "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
		if _, err := open("p2", "lobby", "bob", "10.0.0.1"); codeOf(err) != chat.ETooMany {
			t.Fatalf("third stream from one address: %v, want too many", err)
		}
		if _, err := open("p2", "lobby", "bob", "10.0.0.2"); err != nil {
			t.Fatal(err)
		}
		if _, err := open("p2", "dev", "eve", "10.0.0.3"); err != nil {
			t.Fatal(err)
		}
		presence := func() string {
			t.Helper()
			nicks, err := s.Presence(ctx, "lobby", 15*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Join(nicks, ",")
		}
		if got := presence(); got != "ada,bob" {
			t.Errorf("presence = %q, want ada,bob", got)
		}
		// A closed stream frees its place at once but stays present a while.
		if err := s.CloseStream(ctx, a1); err != nil {
			t.Fatal(err)
		}
		if _, err := open("p1", "lobby", "ada", "10.0.0.1"); err != nil {
			t.Errorf("after closing one, a new stream: %v", err)
		}
		// p2 stops renewing (killed); p1 keeps renewing.
		c.advance(10 * time.Second)
		s.TouchStreams(ctx, "p1")
		c.advance(10 * time.Second)
		if got := presence(); got != "ada" {
			t.Errorf("after p2 went silent: presence = %q, want ada", got)
		}
	})
}

func TestPrune(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		for i := 1; i <= 6; i++ {
			mustInsert(t, s, "a", fmt.Sprint(i))
			mustInsert(t, s, "b", fmt.Sprint(i))
			c.advance(24 * time.Hour)
		}
		// Room a: keep the newest 2. Room b: keep 2 days.
		n, err := s.Prune(ctx, "a", Retention{Messages: 2}, 0)
		if err != nil || n != 4 {
			t.Fatalf("Prune(a, 2 messages) = %d, %v; want 4 removed", n, err)
		}
		if _, err := s.Prune(ctx, "x", Retention{Days: 2}, 0); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			room       string
			wantIDs    string
			wantTrimTo int64
		}{
			{"a", "[9 11]", 7},
			{"b", "[10 12]", 8},
		}
		for _, tt := range tests {
			ms, _ := s.After(ctx, tt.room, 0, 100)
			if got := fmt.Sprint(ids(ms)); got != tt.wantIDs {
				t.Errorf("room %s keeps %s, want %s (and no tombstones)", tt.room, got, tt.wantIDs)
			}
			if got, _ := s.TrimmedThrough(ctx, tt.room); got != tt.wantTrimTo {
				t.Errorf("room %s trimmed through %d, want %d", tt.room, got, tt.wantTrimTo)
			}
		}
		if got := mustInsert(t, s, "a", "new"); got.ID != 13 {
			t.Errorf("next id = %d, want 13: ids are never reused", got.ID)
		}
		if got, _ := s.TrimmedThrough(ctx, "never-pruned"); got != 0 {
			t.Errorf("TrimmedThrough of an unpruned room = %d, want 0", got)
		}
	})
}

func TestPresenceShowsOnlyOwnNicks(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		withClock(s)
		ctx := context.Background()
		res, err := s.Post(ctx, input("Ada", "10.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		own := res.NewClaim
		tests := []struct {
			name string
			nick string
			held []int64
			want string
		}{
			{"Someone else's nick is not listed", "ADA", nil, ""},
			{"The owner is", "ada", []int64{own}, "ada"},
			{"A free nick is", "bob", nil, "ada,bob"},
		}
		for _, tt := range tests {
			if _, err := s.OpenStream(ctx, StreamInput{Owner: "p", Room: "lobby", Nick: tt.nick, Addr: "10.0.0.2",
				NickKey: identity.Key(tt.nick), Held: tt.held, NickHold: time.Hour, Stale: time.Minute}); err != nil {
				t.Fatal(err)
			}
			nicks, _ := s.Presence(ctx, "lobby", time.Minute)
			if got := strings.Join(nicks, ","); got != tt.want {
				t.Errorf("%s: presence %q, want %q", tt.name, got, tt.want)
			}
		}
	})
}

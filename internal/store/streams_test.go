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
			g, err := s.OpenStream(ctx, StreamInput{Owner: owner, Room: room, Nick: nick, Addr: addr, Cap: 2, Stale: 15 * time.Second})
			return g.ID, err
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
			nicks, err := s.Presence(ctx, "lobby", 15*time.Second, 0)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Join(nicks, ",")
		}
		if got := presence(); got != "ada,bob" {
			t.Errorf("presence = %q, want ada,bob", got)
		}
		// A closed stream frees its place at once but stays present a while.
		if err := s.CloseStream(ctx, a1, 0); err != nil {
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

// TestStreamBudgetAndReaders checks the budget of live streams per host,
// one stream per reader, and the per-address cap counting readers.
func TestStreamBudgetAndReaders(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		withClock(s)
		ctx := context.Background()
		open := func(reader, host, nick, addr string) StreamGrant {
			t.Helper()
			g, err := s.OpenStream(ctx, StreamInput{Owner: "p-" + host, Room: "lobby", Nick: nick, NickKey: nick,
				Reader: reader, Host: host, Addr: addr, Cap: 2, Budget: 2, Stale: 20 * time.Second})
			if err != nil {
				t.Fatalf("open %s on %s: %v", reader, host, err)
			}
			return g
		}
		presence := func() string {
			t.Helper()
			nicks, err := s.Presence(ctx, "lobby", 20*time.Second, 40*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Join(nicks, ",")
		}
		tests := []struct {
			name, reader, host, nick, addr string
			poll                           bool
			pollers, superseded            int
		}{
			{"First live", "r1", "h1", "ann", "10.0.0.1", false, 0, 0},
			{"Second live", "r2", "h1", "", "10.0.0.2", false, 0, 0},
			{"Budget full: a poll", "r3", "h1", "cid", "10.0.0.3", true, 1, 0},
			{"Another poller", "r4", "h1", "", "10.0.0.4", true, 2, 0},
			{"A poller polls again: counted once", "r3", "h1", "cid", "10.0.0.3", true, 2, 0},
			{"Another host has its own budget", "r5", "h2", "", "10.0.0.5", false, 0, 0},
			{"A reader's reconnect takes its own slot", "r1", "h1", "ann", "10.0.0.1", false, 0, 1},
			{"Same reader from one address, again", "r1", "h1", "ann", "10.0.0.1", false, 0, 1},
			{"Renamed: the new nick only", "r1", "h1", "bea", "10.0.0.1", false, 0, 1},
		}
		for _, tt := range tests {
			g := open(tt.reader, tt.host, tt.nick, tt.addr)
			if g.Poll != tt.poll || g.Pollers != tt.pollers || g.Superseded != tt.superseded {
				t.Errorf("%s: poll %v, pollers %d, superseded %d; want %v, %d, %d",
					tt.name, g.Poll, g.Pollers, g.Superseded, tt.poll, tt.pollers, tt.superseded)
			}
		}
		if got, want := presence(), "bea,cid"; got != want {
			t.Errorf("presence = %q, want %q: a poller is present, a renamed reader's old nick is not", got, want)
		}
		// The superseded streams are the ones their processes must end.
		ids, err := s.Superseded(ctx, "p-h1")
		if err != nil || len(ids) != 3 {
			t.Errorf("Superseded = %v, %v; want r1's three older streams", ids, err)
		}
		for _, id := range ids {
			if err := s.CloseStream(ctx, id, 0); err != nil {
				t.Fatal(err)
			}
		}
		if ids, _ := s.Superseded(ctx, "p-h1"); len(ids) != 0 {
			t.Errorf("after closing them, Superseded = %v, want none", ids)
		}
		// A poller given a slot polls no more.
		s.CloseStream(ctx, open("r1", "h1", "bea", "10.0.0.1").ID, 0)
		if g := open("r3", "h1", "cid", "10.0.0.3"); g.Poll {
			t.Errorf("a freed slot went to nobody: r3 polls again")
		}
		g := open("r6", "h1", "", "10.0.0.6")
		if !g.Poll || g.Pollers != 2 || g.PollCost != 0 {
			t.Errorf("a new poller: poll %v, pollers %d, cost %v; want a poll among 2 (r4, r6), no cost known", g.Poll, g.Pollers, g.PollCost)
		}
		// What polls took is what the next pollers are told about.
		s.CloseStream(ctx, g.ID, 40*time.Millisecond)
		if g := open("r4", "h1", "", "10.0.0.4"); g.PollCost < 39*time.Millisecond || g.PollCost > 41*time.Millisecond {
			t.Errorf("after a poll of 40 ms, the pollers' cost is %v, want 40 ms", g.PollCost)
		}
		// Three readers from one address: the cap of two counts readers,
		// not their reconnects.
		for i, r := range []string{"x1", "x1", "x2", "x2", "x1"} {
			if _, err := s.OpenStream(ctx, StreamInput{Owner: "p", Room: "lobby", Reader: r, Host: "h3", Addr: "10.9.9.9", Cap: 2, Stale: 20 * time.Second}); err != nil {
				t.Errorf("reconnect %d of readers x1, x2 from one address: %v", i, err)
			}
		}
		if _, err := s.OpenStream(ctx, StreamInput{Owner: "p", Room: "lobby", Reader: "x3", Host: "h3", Addr: "10.9.9.9", Cap: 2, Stale: 20 * time.Second}); codeOf(err) != chat.ETooMany {
			t.Errorf("a third reader from the address: %v, want too many", err)
		}
	})
}

// TestPollersCountAsReaders checks that the cap per address counts the
// readers that poll, not their polls: a flood of new reader ids (or of
// nicks, from clients that send no reader id) from one address is refused
// at the cap instead of piling up rows among the host's pollers, whose
// number sets every poller's interval; a reader polling again, or a
// client without a reader id polling under one nick, is one reader.
func TestPollersCountAsReaders(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		tests := []struct {
			name, reader, nick, addr string
			advance                  time.Duration
			refused, poll            bool
			pollers                  int
		}{
			{"The one live stream", "r1", "", "10.0.0.1", 0, false, false, 0},
			{"A poller", "r2", "", "10.0.0.1", 0, false, true, 1},
			{"A client without reader id polls", "", "", "10.0.0.1", 0, false, true, 2},
			{"It polls again: the same reader", "", "", "10.0.0.1", time.Second, false, true, 2},
			{"And again", "", "", "10.0.0.1", time.Second, false, true, 2},
			{"The poller polls again", "r2", "", "10.0.0.1", time.Second, false, true, 2},
			{"A new reader id past the cap", "r3", "", "10.0.0.1", 0, true, false, 0},
			{"Another new reader id", "r4", "", "10.0.0.1", 0, true, false, 0},
			{"A client without reader id under another nick", "", "eve", "10.0.0.1", 0, true, false, 0},
			{"Another address", "r5", "", "10.0.0.2", 0, false, true, 3},
			{"The first address's pollers stopped a poll window ago", "r3", "", "10.0.0.1", 41 * time.Second, false, true, 1},
		}
		for _, tt := range tests {
			c.advance(tt.advance)
			// The live stream's process renews it.
			if err := s.TouchStreams(ctx, "p"); err != nil {
				t.Fatal(err)
			}
			if tt.advance > 40*time.Second {
				// Before the window passes: one row per reader, however
				// often each polled.
				var rows int
				if err := s.db.GetContext(ctx, &rows, s.sql(`SELECT count(*) FROM streams WHERE kind = 'poll' AND addr = '10.0.0.1'`)); err != nil {
					t.Fatal(err)
				}
				if rows != 2 {
					t.Errorf("poll rows of the first address: %d, want 2 (r2, the client without reader id)", rows)
				}
			}
			g, err := s.OpenStream(ctx, StreamInput{Owner: "p", Room: "lobby", Nick: tt.nick, NickKey: tt.nick, Reader: tt.reader,
				Host: "h", Addr: tt.addr, Cap: 3, Budget: 1, Stale: 20 * time.Second, PollWindow: 40 * time.Second})
			if tt.refused {
				if codeOf(err) != chat.ETooMany {
					t.Errorf("%s: %+v, %v; want too many", tt.name, g, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if g.Poll != tt.poll || g.Pollers != tt.pollers {
				t.Errorf("%s: poll %v among %d pollers; want %v among %d", tt.name, g.Poll, g.Pollers, tt.poll, tt.pollers)
			}
			if g.Poll {
				if err := s.CloseStream(ctx, g.ID, 10*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// TestPollerStaysPresent checks that a reader who polls is in the room
// between its polls, longer apart than a live stream's row may go
// unrenewed, and leaves once it stops polling.
func TestPollerStaysPresent(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		in := StreamInput{Owner: "p", Room: "lobby", Host: "h", Addr: "10.0.0.1", Budget: 1, Stale: 20 * time.Second, PollWindow: 40 * time.Second}
		live, poll := in, in
		live.Reader = "live"
		poll.Reader, poll.Nick, poll.NickKey = "poller", "pia", "pia"
		if _, err := s.OpenStream(ctx, live); err != nil {
			t.Fatal(err)
		}
		if g, err := s.OpenStream(ctx, poll); err != nil || !g.Poll {
			t.Fatalf("the second reader: %+v, %v; want a poll", g, err)
		}
		for _, tt := range []struct {
			after time.Duration
			want  string
		}{{25 * time.Second, "pia"}, {20 * time.Second, ""}} {
			c.advance(tt.after)
			nicks, err := s.Presence(ctx, "lobby", in.Stale, in.PollWindow)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(nicks, ","); got != tt.want {
				t.Errorf("%v later: presence %q, want %q", tt.after, got, tt.want)
			}
		}
	})
}

// TestPollReserve checks how much of a budget stays free for polls.
func TestPollReserve(t *testing.T) {
	for _, tt := range []struct{ budget, want int }{{1, 0}, {3, 0}, {4, 1}, {8, 2}, {10, 2}, {40, 10}} {
		if got := PollReserve(tt.budget); got != tt.want {
			t.Errorf("PollReserve(%d) = %d, want %d", tt.budget, got, tt.want)
		}
	}
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
			nicks, _ := s.Presence(ctx, "lobby", time.Minute, 0)
			if got := strings.Join(nicks, ","); got != tt.want {
				t.Errorf("%s: presence %q, want %q", tt.name, got, tt.want)
			}
		}
	})
}

// TestPollsBusy checks that a poll is told how many other polls of its host
// run at that moment: open poll rows, but not its own, not another host's,
// not one that ended, and not one left open longer than a poll runs.
func TestPollsBusy(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		open := func(reader, host string) StreamGrant {
			t.Helper()
			g, err := s.OpenStream(ctx, StreamInput{Owner: "p-" + host, Room: "lobby", Reader: reader,
				Host: host, Addr: "10.0.0.1", Budget: 4, Stale: 20 * time.Second, PollWindow: 40 * time.Second})
			if err != nil {
				t.Fatalf("open %s on %s: %v", reader, host, err)
			}
			return g
		}
		for _, host := range []string{"h1", "h2"} {
			for _, r := range []string{"live1", "live2", "live3"} {
				if g := open(r+host, host); g.Poll {
					t.Fatalf("%s on %s: a poll, want live (budget 4 keeps 3 live)", r, host)
				}
			}
		}
		open("other", "h2") // another host's poll, running
		p1 := open("p1", "h1")
		p2 := open("p2", "h1")
		var p3 StreamGrant
		tests := []struct {
			name string
			step func() StreamGrant
			want int
		}{
			{"The first poll", func() StreamGrant { return p1 }, 0},
			{"While the first runs", func() StreamGrant { return p2 }, 1},
			{"The first ended", func() StreamGrant {
				if err := s.CloseStream(ctx, p1.ID, 30*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				p3 = open("p3", "h1")
				return p3
			}, 1},
			{"Left open longer than a poll runs", func() StreamGrant {
				c.advance(pollInFlight + time.Second)
				return open("p4", "h1")
			}, 0},
		}
		for _, tt := range tests {
			g := tt.step()
			if !g.Poll || g.PollsBusy != tt.want {
				t.Errorf("%s: poll %v, other polls running %d; want a poll, %d", tt.name, g.Poll, g.PollsBusy, tt.want)
			}
		}
	})
}

// TestStaleRowsSwept opens a stream beside rows of every age and kind:
// the opening removes the live rows unrenewed for Stale, and the others
// (polls, and kinds a person wrote by hand in the shell) once older than
// the poll window too, keeping every table bounded.
func TestStaleRowsSwept(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		now := unix(s.Now())
		rows := []struct {
			kind string
			age  float64 // seconds since its renewal
			kept bool
		}{
			{"live", 10, true},
			{"live", 20, false},
			{"poll", 20, true},
			{"poll", 70, false},
			{"bot", 20, true},
			{"bot", 70, false},
			{"Live", 70, false},
			{"", 70, false},
		}
		for i, r := range rows {
			s.db.MustExec(s.sql("INSERT INTO streams (owner, room, addr, kind, open, seen_at) VALUES ('p', 'lobby', ?, ?, 1, ?)"),
				fmt.Sprint("10.0.0.", i), r.kind, now-r.age)
		}
		if _, err := s.OpenStream(context.Background(), StreamInput{Owner: "p", Room: "lobby", Addr: "10.0.1.1",
			Stale: 15 * time.Second, PollWindow: 60 * time.Second}); err != nil {
			t.Fatal(err)
		}
		for i, r := range rows {
			var n int
			if err := s.db.Get(&n, s.sql("SELECT count(*) FROM streams WHERE addr = ?"), fmt.Sprint("10.0.0.", i)); err != nil {
				t.Fatal(err)
			}
			if got := n == 1; got != r.kept {
				t.Errorf("a %q row %v s old: kept %v, want %v", r.kind, r.age, got, r.kept)
			}
		}
	})
}

// TestStreamQueriesUseIndexes asks SQLite's planner how it runs what every
// stream's opening and every change a stream process sees execute: each
// must search an index for the rows it concerns (a reader's, a process's
// open or superseded ones, a room's readers with a nick, an address's),
// not read the whole table, or a daemon holding thousands of streams
// spends milliseconds on each. (The counts under a budget, which only
// processes that hold a stream each run, read the host's live rows.)
func TestStreamQueriesUseIndexes(t *testing.T) {
	s := MustOpen(t, dbtest.SQLite)
	tests := []struct {
		name, query string
		want        []string // each a line of the plan: an index and what it searches by
	}{
		{"stale rows", deleteStaleStreams, []string{
			"streams_kind_seen (kind=? AND seen_at<?)",
		}},
		{"a reader's nick", forgetReaderNick, []string{"streams_reader (reader=?)"}},
		{"a reader's older streams", supersedeReader, []string{"streams_reader (reader=?)"}},
		{"a reader's poll row", selectPollRow, []string{"streams_reader (reader=?)"}},
		{"the poll row of a client without a reader id", selectAnonPollRow, []string{"streams_addr_kind (addr=? AND kind=?)"}},
		{"an address's readers", countReaders, []string{"streams_addr_kind (addr=?)"}},
		{"renewal", touchStreams, []string{"streams_owner_open (owner=? AND open=?)"}},
		{"superseded streams", selectSuperseded, []string{"streams_owner_open (owner=? AND open=?)"}},
		{"a stream's end", closeStream, []string{"INTEGER PRIMARY KEY (rowid=?)"}},
		{"presence", selectPresence, []string{"streams_room_nick (room=? AND nick>?)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var plan []struct {
				ID, Parent, NotUsed int
				Detail              string
			}
			args := make([]any, strings.Count(tt.query, "?"))
			if err := s.db.Select(&plan, "EXPLAIN QUERY PLAN "+tt.query, args...); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, step := range plan {
				got = append(got, step.Detail)
			}
			all := strings.Join(got, "\n")
			if strings.Contains(all, "SCAN streams") {
				t.Errorf("plan reads every row:\n%s", all)
			}
			for _, want := range tt.want {
				if !strings.Contains(all, want) {
					t.Errorf("plan:\n%s\nwant a search of %s", all, want)
				}
			}
		})
	}
}

package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/identity"
	"cgichat/internal/ratelimit"
	"cgichat/test/dbtest"
)

// postFrom posts as nick from a client whose address hash is hash,
// holding claims issued at held, and returns the result.
func postFrom(t *testing.T, s *Store, nick, hash string, held ...int64) PostResult {
	t.Helper()
	in := input(nick, "10.0.0."+fmt.Sprint(len(hash)%200), held...)
	in.Rate, in.AddrHash = ratelimit.Rate{}, hash
	res, err := s.Post(context.Background(), in)
	if err != nil {
		t.Fatalf("post as %s: %v", nick, err)
	}
	return res
}

// tombstones returns the tombstone rows of room as id:target pairs.
func tombstones(t *testing.T, s *Store, room string) string {
	t.Helper()
	rows, err := s.After(context.Background(), room, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range rows {
		if m.Kind == chat.KindDelete {
			out = append(out, fmt.Sprintf("%d:%d:%s:%q", m.ID, m.Target, m.Nick, m.Text))
		}
	}
	return strings.Join(out, " ")
}

// TestDeleteLeavesTheShellsTombstone deletes one message as a moderator
// and one in the database's shell: both leave a tombstone of the same
// form, and the moderation log records only the first.
func TestDeleteLeavesTheShellsTombstone(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		ctx := context.Background()
		a := mustInsert(t, s, "lobby", "by page")
		sh := mustInsert(t, s, "lobby", "by shell")
		if _, err := s.Delete(ctx, DeleteInput{ID: a.ID, Moderator: "alice"}); err != nil {
			t.Fatal(err)
		}
		moderatorDelete(t, s, sh.ID)
		want := fmt.Sprintf(`3:%d:ada:"" 4:%d:ada:""`, a.ID, sh.ID)
		if got := tombstones(t, s, "lobby"); got != want {
			t.Errorf("tombstones %s, want %s", got, want)
		}
		if _, err := s.Delete(ctx, DeleteInput{ID: a.ID, Moderator: "alice"}); codeOf(err) != chat.ENotFound {
			t.Errorf("deleting it again: %v, want not found", err)
		}
		es, more, err := s.Log(ctx, 0, 10)
		if err != nil || more || len(es) != 1 {
			t.Fatalf("log = %+v, %v, %v; want one entry", es, more, err)
		}
		if e := es[0]; e.Moderator != "alice" || e.Action != ActDelete || e.Message != a.ID || e.Nick != "ada" || e.Time != "2026-11-25T15:18:47.123Z" {
			t.Errorf("log entry %+v, want alice's delete of %d", e, a.ID)
		}
	})
}

// TestDeleteOwnMessage: a poster holding the nick's current claim
// deletes their own message within the window, and nothing else.
func TestDeleteOwnMessage(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		ada := postFrom(t, s, "Ada", "h1")
		claim := ada.NewClaim
		bob := postFrom(t, s, "bob", "h2")
		old := postFrom(t, s, "Ada", "h1", claim)
		c.advance(11 * time.Minute)
		fresh := postFrom(t, s, "Ada", "h1", claim)
		own := func(id int64, nick string, held ...int64) DeleteInput {
			return DeleteInput{ID: id, NickKey: identity.Key(nick), Held: held, Window: 10 * time.Minute}
		}
		tests := []struct {
			name string
			in   DeleteInput
			want chat.Code
		}{
			{"Another's message", own(bob.Message.ID, "Ada", claim), chat.EForbidden},
			{"Another's message under its nick's key without its claim", own(bob.Message.ID, "bob"), chat.EForbidden},
			{"Own nick without the claim", own(fresh.Message.ID, "Ada"), chat.EForbidden},
			{"Own nick with an old claim", own(fresh.Message.ID, "Ada", claim-1), chat.EForbidden},
			{"Own message after the window", own(old.Message.ID, "Ada", claim), chat.EForbidden},
			{"Own message within the window", own(fresh.Message.ID, "ADA", claim), ""},
			{"Gone already", own(fresh.Message.ID, "Ada", claim), chat.ENotFound},
		}
		for _, tt := range tests {
			_, err := s.Delete(ctx, tt.in)
			if got := codeOf(err); got != tt.want {
				t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
			}
		}
		// A nick's next holder (after a moderator's release; with
		// CHAT_NICK_HOURS=0, the next to post under it) may not delete
		// what the one before posted under it, however recent.
		prev := postFrom(t, s, "Ada", "h1", claim)
		if _, err := s.ReleaseNick(ctx, BanInput{Moderator: "alice", Nick: "Ada"}); err != nil {
			t.Fatal(err)
		}
		c.advance(time.Second)
		next := postFrom(t, s, "Ada", "h3").NewClaim
		if _, err := s.Delete(ctx, own(prev.Message.ID, "Ada", next)); codeOf(err) != chat.EForbidden {
			t.Errorf("the next holder deleting the previous one's message: %v, want forbidden", err)
		}
		if got, want := tombstones(t, s, "lobby"), fmt.Sprintf(`5:%d:Ada:""`, fresh.Message.ID); got != want {
			t.Errorf("tombstones %s, want %s", got, want)
		}
		es, _, _ := s.Log(ctx, 0, 10)
		if len(es) != 2 || es[1].Moderator != "" || es[1].Detail != "by its poster" {
			t.Errorf("log = %+v, want the release after one deletion by its poster", es)
		}
	})
}

// TestBansFromThePage bans by message and by nick, lifts the bans and
// releases a nick.
func TestBansFromThePage(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		troll := postFrom(t, s, "troll", "bad")
		other := postFrom(t, s, "eve", "good")
		// A deleted message's poster can be banned: its tombstone keeps
		// the hash.
		if _, err := s.Delete(ctx, DeleteInput{ID: troll.Message.ID, Moderator: "alice"}); err != nil {
			t.Fatal(err)
		}
		e, err := s.BanAddress(ctx, BanInput{Moderator: "alice", ID: troll.Message.ID, Until: c.t.Add(time.Hour), Reason: "spam"})
		if err != nil {
			t.Fatal(err)
		}
		if e.Nick != "troll" || e.Detail != "until 2026-11-25T13:00:00.000Z; spam" {
			t.Errorf("log entry %+v", e)
		}
		post := func(nick, hash string) error {
			in := input(nick, "10.9.9.9")
			in.Rate, in.AddrHash = ratelimit.Rate{}, hash
			_, err := s.Post(ctx, in)
			return err
		}
		if err := post("newnick", "bad"); codeOf(err) != chat.EForbidden || !strings.Contains(err.Error(), "until 2026-11-25T13:00:00.000Z") {
			t.Errorf("the banned address under another nick: %v, want forbidden until the ban's end", err)
		}
		if err := post("newnick", "good"); err != nil {
			t.Errorf("another address: %v", err)
		}
		if err := post("whoever", ""); err != nil {
			t.Errorf("a client without a hash: %v", err)
		}
		c.advance(time.Hour + time.Second)
		if err := post("newnick2", "bad"); err != nil {
			t.Errorf("after the ban ended: %v", err)
		}
		if _, err := s.BanAddress(ctx, BanInput{Moderator: "alice", ID: other.Message.ID}); err != nil {
			t.Fatal(err)
		}
		if err := post("eve", "good"); codeOf(err) != chat.EForbidden {
			t.Errorf("banned for ever: %v", err)
		}
		if e, err := s.UnbanAddress(ctx, BanInput{Moderator: "bob", ID: other.Message.ID}); err != nil || e.Detail != "1 ban lifted" {
			t.Errorf("unban: %+v, %v", e, err)
		}
		if err := post("eve2", "good"); err != nil {
			t.Errorf("after the unban: %v", err)
		}

		// Nicks, by message and by name.
		if _, err := s.BanNick(ctx, BanInput{Moderator: "alice", ID: other.Message.ID, Until: c.t.Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := post("ＥＶＥ", "x"); codeOf(err) != chat.EForbidden {
			t.Errorf("a look-alike of the banned nick: %v", err)
		}
		if st, err := s.NickStatus(ctx, "Eve", identity.Key("Eve"), nil, time.Hour); err != nil || st != NickBanned {
			t.Errorf("NickStatus of a banned nick = %q, %v", st, err)
		}
		if e, err := s.UnbanNick(ctx, BanInput{Moderator: "alice", Nick: "EVE"}); err != nil || e.Detail != "1 ban lifted" {
			t.Errorf("unban nick: %+v, %v", e, err)
		}
		held := postFrom(t, s, "owner", "h").NewClaim
		if e, err := s.ReleaseNick(ctx, BanInput{Moderator: "alice", Nick: "Owner"}); err != nil || e.Detail != "released" {
			t.Errorf("release: %+v, %v", e, err)
		}
		c.advance(time.Second) // a new claim is stamped apart from the old
		if _, err := s.Post(ctx, input("owner", "10.1.1.1")); err != nil {
			t.Errorf("a released nick taken by another: %v", err)
		}
		if _, err := s.Post(ctx, input("owner", "10.1.1.2", held)); codeOf(err) != chat.EConflict {
			t.Errorf("the old holder after the release: %v, want a conflict", err)
		}
		if _, err := s.BanNick(ctx, BanInput{Moderator: "alice", ID: 999}); codeOf(err) != chat.ENotFound {
			t.Errorf("banning the nick of no message: %v", err)
		}
		es, more, err := s.Log(ctx, 0, 3)
		if err != nil || !more || len(es) != 3 || es[0].Action != ActReleaseNick || es[0].ID <= es[1].ID {
			t.Fatalf("log page = %+v, %v, %v; want the 3 newest first, and more", es, more, err)
		}
		rest, more, _ := s.Log(ctx, es[2].ID, 100)
		if more || len(rest) != 4 {
			t.Errorf("the older page = %+v, more %v; want the other 4", rest, more)
		}
	})
}

func TestBefore(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		ctx := context.Background()
		for i := 1; i <= 10; i++ {
			room := "a"
			if i%2 == 0 {
				room = "b"
			}
			mustInsert(t, s, room, fmt.Sprint(i))
		}
		moderatorDelete(t, s, 5)
		tests := []struct {
			before int64
			limit  int
			want   string
			more   bool
		}{
			{11, 100, "[1 3 7 9]", false},
			{9, 2, "[3 7]", true},
			{3, 2, "[1]", false},
			{1, 2, "[]", false},
			{7, 2, "[1 3]", false},
		}
		for _, tt := range tests {
			ms, more, err := s.Before(ctx, "a", tt.before, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(ids(ms)); got != tt.want || more != tt.more {
				t.Errorf("Before(%d, %d) = %s, more %v; want %s, more %v", tt.before, tt.limit, got, more, tt.want, tt.more)
			}
		}
	})
}

func TestTransfer(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		claim := postFrom(t, s, "Ada", "h").NewClaim
		key := identity.Key("Ada")
		mk := func(code string, held ...int64) error {
			_, err := s.CreateTransfer(ctx, TransferInput{NickKey: key, Held: held, NickHold: time.Hour,
				CodeHash: code, Expires: c.t.Add(5 * time.Minute)})
			return err
		}
		if err := mk("c0"); codeOf(err) != chat.EForbidden {
			t.Errorf("a code for a nick not held: %v", err)
		}
		if err := mk("c1", claim); err != nil {
			t.Fatal(err)
		}
		got, err := s.RedeemTransfer(ctx, "c1")
		if err != nil || got != (Transferred{Nick: "Ada", NickKey: key, Issued: claim}) {
			t.Errorf("redeem = %+v, %v", got, err)
		}
		if _, err := s.RedeemTransfer(ctx, "c1"); codeOf(err) != chat.EForbidden {
			t.Errorf("a second use: %v", err)
		}
		mk("c2", claim)
		mk("c3", claim)
		if _, err := s.RedeemTransfer(ctx, "c2"); codeOf(err) != chat.EForbidden {
			t.Errorf("a code replaced by a newer one: %v", err)
		}
		c.advance(5*time.Minute + time.Millisecond)
		if _, err := s.RedeemTransfer(ctx, "c3"); codeOf(err) != chat.EForbidden {
			t.Errorf("an expired code: %v", err)
		}
		mk("c4", claim)
		s.db.MustExec(s.sql("UPDATE nick_claims SET issued = 1 WHERE nick_key = ?"), key)
		if _, err := s.RedeemTransfer(ctx, "c4"); codeOf(err) != chat.EForbidden {
			t.Errorf("a code whose claim changed since: %v", err)
		}
	})
}

func TestModeratorKeysAndGuesses(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		ctx := context.Background()
		if err := s.AddModeratorKey(ctx, "alice", "hash-a", "test"); err != nil {
			t.Fatal(err)
		}
		if err := s.AddModeratorKey(ctx, "alice", "hash-b", "test"); codeOf(err) != chat.EConflict {
			t.Errorf("a second key labelled alice: %v, want a conflict", err)
		}
		if l, err := s.ModeratorLabel(ctx, "hash-a"); err != nil || l != "alice" {
			t.Errorf("label of hash-a = %q, %v", l, err)
		}
		// Revoked with the one line docs/security.md gives.
		s.db.MustExec("DELETE FROM moderator_keys WHERE label = 'alice'")
		if l, err := s.ModeratorLabel(ctx, "hash-a"); err != nil || l != "" {
			t.Errorf("label of a revoked key = %q, %v", l, err)
		}
		if _, found, err := s.ModeratorKeyHash(ctx, "alice"); found || err != nil {
			t.Errorf("hash of a revoked key: %v, %v", found, err)
		}
		g := Guess{Addr: "10.0.0.1", Rate: ratelimit.Rate{N: 2, Per: time.Minute}}
		for i := range 2 {
			if err := s.TakeGuess(ctx, g); err != nil {
				t.Fatalf("try %d: %v", i+1, err)
			}
		}
		if err := s.TakeGuess(ctx, g); codeOf(err) != chat.ETooMany || !strings.Contains(err.Error(), "Too many tries") {
			t.Errorf("third try: %v, want too many", err)
		}
		if err := s.TakeGuess(ctx, Guess{Addr: "10.0.0.2", Rate: g.Rate}); err != nil {
			t.Errorf("another client: %v", err)
		}
	})
}

// TestModerationStepKeepsData opens, with the schema as it is, a database
// made by the schema before the moderation step, and checks that what it
// held still works and that its messages, which have no address hash,
// cannot be banned by message.
func TestModerationStepKeepsData(t *testing.T) {
	for _, b := range dbtest.Backends {
		t.Run(string(b), func(t *testing.T) {
			text := schemaOf(b)
			full := *text
			defer func() { *text = full }()
			*text = func() string {
				s := full()
				at := strings.Index(s, "CREATE TABLE moderator_keys")
				return s[:strings.LastIndex(s[:at], "-- step:")]
			}
			db := dbtest.New(t, b)
			old := mustOpenDB(t, db, false)
			ctx := context.Background()
			kept := mustInsert(t, old, "lobby", "kept")
			gone := mustInsert(t, old, "lobby", "deleted before")
			later := mustInsert(t, old, "lobby", "deleted after")
			moderatorDelete(t, old, gone.ID)
			old.db.MustExec("INSERT INTO bans (nick) VALUES ('troll')")
			old.Close()

			*text = full
			s := mustOpenDB(t, db, false)
			if ms, err := s.Latest(ctx, "lobby", 10); err != nil || fmt.Sprint(ids(ms)) != fmt.Sprint([]int64{kept.ID, later.ID}) {
				t.Errorf("history after the step: %v, %v", ids(ms), err)
			}
			for _, id := range []int64{kept.ID, gone.ID} {
				if _, err := s.BanAddress(ctx, BanInput{Moderator: "alice", ID: id}); codeOf(err) != chat.EConflict || !strings.Contains(err.Error(), "cannot be banned") {
					t.Errorf("banning the address of message %d from before the step: %v, want a conflict saying it cannot", id, err)
				}
			}
			if e, err := s.BanNick(ctx, BanInput{Moderator: "alice", ID: gone.ID}); err != nil || e.Nick != "ada" {
				t.Errorf("banning the nick of a message deleted before the step: %+v, %v", e, err)
			}
			// The replaced tombstone trigger (procedure on MySQL) works for
			// old rows, by the shell and from the page.
			moderatorDelete(t, s, later.ID)
			if got, want := tombstones(t, s, "lobby"), fmt.Sprintf(`4:%d:ada:"" 5:%d:ada:""`, gone.ID, later.ID); got != want {
				t.Errorf("tombstones %s, want %s", got, want)
			}
			if _, err := s.Delete(ctx, DeleteInput{ID: kept.ID, Moderator: "alice"}); err != nil {
				t.Errorf("a moderator's delete of an old message: %v", err)
			}
			if _, err := s.Post(ctx, input("troll", "10.0.0.2")); codeOf(err) != chat.EForbidden {
				t.Errorf("the old ban after the step: %v", err)
			}
			// New messages keep their hash, in their tombstone too.
			m := postFrom(t, s, "new", "hash")
			if _, err := s.Delete(ctx, DeleteInput{ID: m.Message.ID, Moderator: "alice"}); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Message(ctx, m.Message.ID); err != nil || !got.Deleted || got.AddrHash != "hash" {
				t.Errorf("a deleted new message: %+v, %v; want its tombstone with the hash", got, err)
			}
		})
	}
}

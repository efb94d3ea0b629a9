package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/identity"
	"cgichat/test/dbtest"

	"github.com/jmoiron/sqlx"
)

// keyed is a post by ada from 10.0.0.1 of text in room with an
// Idempotency-Key, remembered for a day.
func keyed(room, text, key string) PostInput {
	in := input("ada", "10.0.0.1")
	in.Room, in.Text, in.Key, in.KeyWindow = room, text, key, 24*time.Hour
	in.Rate.N = 1000
	return in
}

func TestPostIdempotencyKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		const key = "8e03978e-40d5-43e8-bc93-6894a57f9324"
		first, err := s.Post(ctx, keyed("lobby", "hello", key))
		if err != nil || first.Replayed || first.NewClaim == 0 {
			t.Fatalf("first post: %+v, %v; want stored, with a new claim", first, err)
		}
		c.advance(time.Hour)
		again, err := s.Post(ctx, keyed("lobby", "hello", key))
		if err != nil || !again.Replayed {
			t.Fatalf("the same key again: %+v, %v; want the first answer again", again, err)
		}
		if again.Message != first.Message || again.NewClaim != first.NewClaim {
			t.Errorf("repeat = %+v claim %d, want %+v claim %d", again.Message, again.NewClaim, first.Message, first.NewClaim)
		}
		tests := []struct {
			name     string
			in       PostInput
			wantCode chat.Code
			stored   bool
		}{
			{"other text", keyed("lobby", "hello!", key), chat.EMismatch, false},
			{"other room", keyed("dev", "hello", key), chat.EMismatch, false},
			{"other key", keyed("lobby", "hello", key+"x"), "", true},
		}
		for _, tt := range tests {
			res, err := s.Post(ctx, tt.in)
			if err != nil {
				if code := chat.ErrorCode(err); code != tt.wantCode {
					t.Errorf("%s: error %v (%s), want %q", tt.name, err, code, tt.wantCode)
				}
				continue
			}
			if tt.wantCode != "" || res.Replayed != !tt.stored {
				t.Errorf("%s: %+v, want code %q, stored %v", tt.name, res, tt.wantCode, tt.stored)
			}
		}
		// The same key is another nick's own key.
		bob := keyed("lobby", "hello", key)
		bob.Nick, bob.NickKey = "bob", identity.Key("bob")
		if res, err := s.Post(ctx, bob); err != nil || res.Replayed || res.Message.ID == first.Message.ID {
			t.Errorf("bob with ada's key: %+v, %v; want a message of his own", res, err)
		}
		// Past the window the key is new again.
		c.advance(24 * time.Hour)
		if res, err := s.Post(ctx, keyed("lobby", "hello", key)); err != nil || res.Replayed {
			t.Errorf("a day later: %+v, %v; want a new message", res, err)
		}
		if got, want := count(t, s), 4; got != want {
			t.Errorf("rows = %d, want %d", got, want)
		}
	})
}

// TestRepeatGivesClaimOnlyWhileCurrent: a repeat hands out the claim its
// first post made, but not once another client claimed the nick after it
// went idle.
func TestRepeatGivesClaimOnlyWhileCurrent(t *testing.T) {
	s := MustOpen(t, dbtest.SQLite)
	c := withClock(s)
	ctx := context.Background()
	const key = "0123456789abcdef0123"
	first, err := s.Post(ctx, keyed("lobby", "hi", key))
	if err != nil {
		t.Fatal(err)
	}
	c.advance(2 * time.Hour) // past the hour input holds nicks for
	other := keyed("lobby", "mine now", "fedcba9876543210fedc")
	if _, err := s.Post(ctx, other); err != nil {
		t.Fatal(err)
	}
	again, err := s.Post(ctx, keyed("lobby", "hi", key))
	if err != nil || !again.Replayed || again.Message.ID != first.Message.ID {
		t.Fatalf("repeat: %+v, %v; want the first message", again, err)
	}
	if again.NewClaim != 0 {
		t.Errorf("repeat handed out claim %d, which is no longer the nick's", again.NewClaim)
	}
}

// TestConcurrentRepeatsStoreOnce posts one key from many goroutines and
// stores (processes) at once: one row, one id for all.
func TestConcurrentRepeatsStoreOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		db := MustOpen(t, b).DB()
		const stores, each = 4, 8
		var wg sync.WaitGroup
		ids := make(chan int64, stores*each)
		for range stores {
			st := mustOpenDB(t, db, true)
			for range each {
				wg.Go(func() {
					res, err := st.Post(context.Background(), keyed("lobby", "once", "concurrent-key-0001"))
					if err != nil {
						t.Error(err)
						return
					}
					ids <- res.Message.ID
				})
			}
		}
		wg.Wait()
		close(ids)
		seen := map[int64]int{}
		for id := range ids {
			seen[id]++
		}
		if len(seen) != 1 {
			t.Errorf("ids answered: %v, want one id for all %d posts", seen, stores*each)
		}
		if got := count(t, mustOpenDB(t, db, false)); got != 1 {
			t.Errorf("rows = %d, want 1", got)
		}
	})
}

// TestNewRoomsPerDay: one address starts at most NewRooms rooms a day; a
// room that has messages, and another address, are not held back.
func TestNewRoomsPerDay(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		post := func(room, addr string) error {
			in := input("ada", addr)
			in.Room, in.Rate.N, in.NewRooms, in.NewRoomsPer = room, 1000, 20, 24*time.Hour
			in.NickHold = 0
			_, err := s.Post(ctx, in)
			return err
		}
		for i := range 20 {
			if err := post(fmt.Sprint("room", i), "10.0.0.1"); err != nil {
				t.Fatalf("new room %d: %v", i, err)
			}
			c.advance(time.Hour)
		}
		err := post("room20", "10.0.0.1")
		var ce *chat.Error
		if !errors.As(err, &ce) || ce.Code != chat.ETooMany || !strings.Contains(ce.Message, "20 new rooms") {
			t.Fatalf("the 21st new room: %v, want too many, naming 20 new rooms", err)
		}
		// The first room started 20 hours ago counts 4 hours more.
		if ce.RetryAfter != 4*time.Hour {
			t.Errorf("Retry-After %v, want 4h", ce.RetryAfter)
		}
		if err := post("room3", "10.0.0.1"); err != nil {
			t.Errorf("a room with messages: %v", err)
		}
		if err := post("room20", "10.0.0.2"); err != nil {
			t.Errorf("another address: %v", err)
		}
		c.advance(4 * time.Hour)
		if err := post("room21", "10.0.0.1"); err != nil {
			t.Errorf("a day after the first start: %v", err)
		}
	})
}

// fill adds n messages of size bytes of text (ASCII), in rooms round
// robin, straight into the database.
func fill(t *testing.T, s *Store, n, size int, rooms ...string) {
	t.Helper()
	text := strings.Repeat("x", size)
	err := s.withTx(context.Background(), lockMessages, func(tx *sqlx.Tx) error {
		for i := range n {
			if _, err := s.insert(context.Background(), tx, rooms[i%len(rooms)], "seed", text); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTotalBound fills the database past the bound, oldest room first, and
// prunes: the oldest rows go, whatever their room, the size is within the
// bound, the trim is recorded per room, and the counted size is what the
// rows hold.
func TestTotalBound(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		ctx := context.Background()
		// A row as sizes counts it: text, room "ra", nick "seed", 64.
		const size = 2000
		const row = size + 2 + 4 + 64
		fill(t, s, 300, size, "ra", "rb", "rc")
		total, err := s.TotalBytes(ctx)
		if err != nil || total != 300*row {
			t.Fatalf("TotalBytes = %d, %v; want %d", total, err, 300*row)
		}
		bound := int64(100 * row)
		n, err := s.Prune(ctx, "ra", Retention{TotalBytes: bound}, 0)
		if err != nil || n != 200 {
			t.Fatalf("Prune = %d, %v; want the 200 oldest removed", n, err)
		}
		if total, _ := s.TotalBytes(ctx); total != bound {
			t.Errorf("TotalBytes after = %d, want %d", total, bound)
		}
		var recount int64
		s.db.Get(&recount, s.dialect(stmt{
			sqlite:   `SELECT sum(length(CAST(room AS BLOB)) + length(CAST(nick AS BLOB)) + length(CAST(text AS BLOB)) + 64) FROM messages`,
			mysql:    `SELECT sum(LENGTH(room) + LENGTH(nick) + LENGTH(text) + 64) FROM messages`,
			postgres: `SELECT sum(octet_length(room) + octet_length(nick) + octet_length(text) + 64) FROM messages`,
		}))
		if recount != bound {
			t.Errorf("the rows hold %d bytes as counted, the sizes table says %d", recount, bound)
		}
		all, _ := s.AllAfter(ctx, 0, 1000)
		if len(all) != 100 || all[0].ID != 201 {
			t.Errorf("kept %d rows from id %d, want 100 from 201", len(all), all[0].ID)
		}
		for room, want := range map[string]int64{"ra": 199, "rb": 200, "rc": 198} {
			if got, _ := s.TrimmedThrough(ctx, room); got != want {
				t.Errorf("room %s trimmed through %d, want %d", room, got, want)
			}
		}
	})
}

// TestTotalBoundOverADay posts what one address may in a day at the
// default rate (5 posts in 10 s: 43,200 messages), in new rooms, pruning
// every 100th message as post does: the messages kept never exceed the
// bound by more than the 100 posted since the last prune, and the newest
// are kept. (The size of the file on disk is measured by hand:
// docs/databases.md.)
func TestTotalBoundOverADay(t *testing.T) {
	s := MustOpen(t, dbtest.SQLite)
	ctx := context.Background()
	const perDay = 24 * 60 * 60 / 10 * 5
	const size, bound int64 = 500, 4 << 20
	const row = size + int64(len("room00")+len("flood")) + 64
	text := strings.Repeat("x", int(size))
	most := int64(0)
	for done := 0; done < perDay; done += 100 {
		err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
			for i := range 100 {
				if _, err := s.insert(ctx, tx, fmt.Sprintf("room%02d", (done+i)/2000), "flood", text); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		total, _ := s.TotalBytes(ctx)
		most = max(most, total)
		if _, err := s.Prune(ctx, "room00", Retention{TotalBytes: bound}, 0); err != nil {
			t.Fatal(err)
		}
	}
	total, _ := s.TotalBytes(ctx)
	if total > bound || most > bound+100*row {
		t.Errorf("after a day: %d bytes of messages, at most %d; want at most %d, and %d between prunes", total, most, bound, bound+100*row)
	}
	kept, _ := s.AllAfter(ctx, 0, perDay)
	if last := kept[len(kept)-1].ID; last != perDay || kept[0].ID != perDay-int64(len(kept))+1 {
		t.Errorf("kept ids %d to %d, want the newest, up to %d", kept[0].ID, last, perDay)
	}
	if want := bound / row; int64(len(kept)) != want {
		t.Errorf("kept %d messages, want %d", len(kept), want)
	}
}

// TestPruneForgets: claims idle past their hold, Idempotency-Keys and room
// starts past their window, and the trim marks of empty rooms past theirs
// are removed; what is younger stays.
func TestPruneForgets(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		c := withClock(s)
		ctx := context.Background()
		post := func(nick, room, key string) {
			t.Helper()
			in := keyed(room, "x", key)
			in.Nick, in.NickKey, in.NewRooms, in.NewRoomsPer = nick, identity.Key(nick), 10, 24*time.Hour
			if _, err := s.Post(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		post("old", "gone", "key-of-the-old-one")
		if _, err := s.Prune(ctx, "gone", Retention{Messages: 1}, 0); err != nil {
			t.Fatal(err)
		}
		// Empty the room: its trim mark is then the only trace.
		s.db.MustExec(s.sql(`UPDATE messages SET kind = 'pruned' WHERE room = 'gone'`))
		s.db.MustExec(s.sql(`DELETE FROM messages WHERE room = 'gone'`))
		s.db.MustExec(s.dialect(upsertTrimmed), "gone", 1, unix(c.now()))
		c.advance(8 * 24 * time.Hour)
		post("new", "here", "key-of-the-new-one")
		s.db.MustExec(s.dialect(upsertTrimmed), "here", 0, 0)
		keep := Retention{ClaimIdle: 7 * 24 * time.Hour, KeysFor: 24 * time.Hour, RoomStartsFor: 24 * time.Hour, TrimmedFor: 7 * 24 * time.Hour}
		if _, err := s.Prune(ctx, "here", keep, 0); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct{ table, column, want string }{
			{"nick_claims", "nick", "[new]"},
			{"room_starts", "room", "[here]"},
			{"trimmed", "room", "[here]"},
		} {
			var got []string
			s.db.Select(&got, fmt.Sprintf("SELECT %s FROM %s ORDER BY 1", tt.column, tt.table))
			if fmt.Sprint(got) != tt.want {
				t.Errorf("%s keeps %v, want %s", tt.table, got, tt.want)
			}
		}
		var keys int
		s.db.Get(&keys, "SELECT count(*) FROM post_keys")
		if keys != 1 {
			t.Errorf("post_keys keeps %d rows, want 1", keys)
		}
	})
}

// TestBoundsStepOnOlderDatabase opens a database made by the schema before
// the bounds step: the size of the messages it holds is counted, and its
// trim marks are kept.
func TestBoundsStepOnOlderDatabase(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		text := schemaOf(b)
		full := *text
		defer func() { *text = full }()
		*text = func() string {
			s := full()
			return s[:strings.LastIndex(s[:strings.Index(s, "CREATE TABLE post_keys")], "-- step:")]
		}
		db := dbtest.New(t, b)
		old := mustOpenDB(t, db, false)
		mustInsert(t, old, "lobby", "héllo")
		mustInsert(t, old, "dev", "x")
		old.db.MustExec(old.sql(`INSERT INTO trimmed (room, through) VALUES ('dev', 1)`))
		old.Close()

		*text = full
		s := mustOpenDB(t, db, false)
		want := int64(len("lobby")+len("ada")+len("héllo")+64) + int64(len("dev")+len("ada")+len("x")+64)
		if got, err := s.TotalBytes(context.Background()); err != nil || got != want {
			t.Errorf("TotalBytes = %d, %v; want %d", got, err, want)
		}
		if got, _ := s.TrimmedThrough(context.Background(), "dev"); got != 1 {
			t.Errorf("dev trimmed through %d, want 1", got)
		}
	})
}

// TestReplacedFileRefusesWrites moves another database over the file a
// store has open, and removes it: the store says so, refuses to write, and
// ends Replaced; a store opened anew on the path continues the ids.
func TestReplacedFileRefusesWrites(t *testing.T) {
	for _, how := range []string{"moved over", "removed"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "chat.db")
			s := mustOpenDB(t, path, true)
			ctx := context.Background()
			for range 3 {
				mustInsert(t, s, "lobby", "before")
			}
			if err := s.Current(); err != nil {
				t.Fatalf("Current before: %v", err)
			}
			backup := mustOpenDB(t, filepath.Join(dir, "backup.db"), false)
			mustInsert(t, backup, "lobby", "in the backup")
			backup.Close()
			switch how {
			case "moved over":
				if err := os.Rename(filepath.Join(dir, "backup.db"), path); err != nil {
					t.Fatal(err)
				}
			case "removed":
				for _, suffix := range []string{"", "-wal", "-shm"} {
					os.Remove(path + suffix)
				}
			}
			if err := s.Current(); err == nil {
				t.Fatal("Current after: nil, want an error")
			}
			select {
			case <-s.Replaced().Done():
			default:
				t.Error("Replaced has not ended")
			}
			if _, err := s.Insert(ctx, "lobby", "ada", "lost"); err == nil {
				t.Error("an insert after: nil error, want a refusal")
			}
			last, err := s.MaxID(ctx)
			if err != nil || last != 3 {
				t.Fatalf("the old file's MaxID = %d, %v; want 3", last, err)
			}
			fresh := mustOpenDB(t, path, false)
			if err := fresh.KeepIDsAbove(ctx, last); err != nil {
				t.Fatal(err)
			}
			if m := mustInsert(t, fresh, "lobby", "after"); m.ID != 4 {
				t.Errorf("first id on the new file = %d, want 4", m.ID)
			}
			if err := fresh.KeepIDsAbove(ctx, 2); err != nil {
				t.Fatal(err)
			}
			if m := mustInsert(t, fresh, "lobby", "after"); m.ID != 5 {
				t.Errorf("next id = %d, want 5: KeepIDsAbove never lowers", m.ID)
			}
		})
	}
}

// TestPoolStaysOnOneFile: a connection opened after the file was replaced
// fails, rather than join a pool on the old file.
func TestPoolStaysOnOneFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.db")
	s := mustOpenDB(t, path, true)
	mustInsert(t, s, "lobby", "x")
	os.Rename(path, filepath.Join(dir, "moved.db"))
	mustOpenDB(t, path, false).Close() // a new file at the path
	// Hold every idle connection so that the pool must open a new one.
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var err error
	for range concurrentConns + 1 {
		var c *sql.Conn
		if c, err = s.db.Conn(context.Background()); err != nil {
			break
		}
		conns = append(conns, c)
	}
	if err == nil || !errors.Is(err, errReplaced) {
		t.Errorf("a new connection: %v, want errReplaced", err)
	}
}

package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/identity"
	"cgichat/test/dbtest"

	"github.com/jmoiron/sqlx"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// eachBackend runs test as a subtest per backend (SQLite, MariaDB,
// PostgreSQL), in parallel.
func eachBackend(t *testing.T, test func(t *testing.T, b dbtest.Backend)) {
	t.Helper()
	for _, b := range dbtest.Backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			test(t, b)
		})
	}
}

// MustOpen opens a store on a fresh database of backend b, with the clock
// fixed so that times are predictable.
func MustOpen(tb testing.TB, b dbtest.Backend) *Store {
	tb.Helper()
	return mustOpenDB(tb, dbtest.New(tb, b), true)
}

// testOptions are the options of a process serving many requests at once
// (concurrent) or one at a time, with nicks compared as the programs do.
func testOptions(concurrent bool) Options {
	return Options{Concurrent: concurrent, NickKey: identity.Key}
}

// mustOpenDB opens another store on db, closed when the test ends.
func mustOpenDB(tb testing.TB, db string, concurrent bool) *Store {
	tb.Helper()
	s, err := Open(context.Background(), db, testOptions(concurrent))
	if err != nil {
		tb.Fatal(err)
	}
	s.Now = func() time.Time { return time.Date(2026, 11, 25, 15, 18, 47, 123456789, time.UTC) }
	tb.Cleanup(func() { s.Close() })
	return s
}

func mustInsert(tb testing.TB, s *Store, room, text string) chat.Message {
	tb.Helper()
	m, err := s.Insert(context.Background(), room, "ada", text)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// moderatorDelete deletes message id with the statement docs/security.md
// and docs/databases.md document for the backend.
func moderatorDelete(tb testing.TB, s *Store, id int64) {
	tb.Helper()
	q := ModeratorDelete(s.DB())
	if _, err := s.db.Exec(s.sql(q), id); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

func ids(ms []chat.Message) []int64 {
	out := []int64{}
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestOpenCreatesDirectoryAndWAL(t *testing.T) {
	s := MustOpen(t, dbtest.SQLite)
	if _, err := os.Stat(s.DB()); err != nil {
		t.Fatalf("database file: %v", err)
	}
	db := sqlx.MustOpen("sqlite3", s.DB())
	defer db.Close()
	var mode string
	if err := db.Get(&mode, "PRAGMA journal_mode"); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	steps, _ := parseSteps(s.backend.schema())
	var version int
	if err := db.Get(&version, "PRAGMA user_version"); err != nil || version != len(steps) {
		t.Errorf("user_version = %d, %v; want %d, the schema's last step", version, err, len(steps))
	}
}

func TestOpenRecordsSchemaSteps(t *testing.T) {
	for _, b := range dbtest.Servers {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			s := MustOpen(t, b)
			steps, _ := parseSteps(s.backend.schema())
			var got []int
			if err := s.db.Select(&got, "SELECT version FROM schema_migrations ORDER BY version"); err != nil {
				t.Fatal(err)
			}
			var want []int
			for _, st := range steps {
				want = append(want, st.version)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("schema_migrations holds %v, want %v (every step of the schema, once)", got, want)
			}
		})
	}
}

// mustSteps parses a schema.
func mustSteps(t *testing.T, schema string) []step {
	t.Helper()
	steps, err := parseSteps(schema)
	if err != nil {
		t.Fatal(err)
	}
	return steps
}

func TestOpenIsIdempotent(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		mustInsert(t, s, "lobby", "kept")
		for i := 0; i < 2; i++ {
			s2, err := Open(context.Background(), s.DB(), testOptions(true))
			if err != nil {
				t.Fatalf("open #%d: %v", i+2, err)
			}
			ms, err := s2.Latest(context.Background(), "lobby", 10)
			s2.Close()
			if err != nil || len(ms) != 1 || ms[0].Text != "kept" {
				t.Fatalf("after reopening: %+v, %v; want the one message", ms, err)
			}
		}
	})
}

func TestOpenConcurrentFirstUse(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		db := dbtest.New(t, b)
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := 0; i < 20; i++ {
			wg.Go(func() {
				s, err := Open(context.Background(), db, testOptions(false))
				if err == nil {
					_, err = s.Insert(context.Background(), "lobby", "ada", "hi")
					s.Close()
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent first open: %v", err)
			}
		}
	})
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		q := "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'later')"
		if b == dbtest.SQLite {
			q = "PRAGMA user_version = 99"
		}
		s.db.MustExec(q)
		if _, err := Open(context.Background(), s.DB(), testOptions(false)); err == nil || !strings.Contains(err.Error(), "newer") {
			t.Errorf("opening a database with a newer schema: %v, want an error saying it is newer", err)
		}
	})
}

func TestOpenWhereNoDirectoryCanBe(t *testing.T) {
	// A file where the directory should be stops even root.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	_, err := Open(context.Background(), filepath.Join(file, "chat.db"), testOptions(false))
	if err == nil || !strings.Contains(err.Error(), "create the database directory") {
		t.Errorf("Open under a file: err = %v, want one about the directory", err)
	}
}

func TestOpenServerErrorsHidePassword(t *testing.T) {
	tests := []struct{ name, db string }{
		{"MySQL nobody listens", "mysql://chat:s3cret@127.0.0.1:1/chat"},
		{"PostgreSQL nobody listens", "postgres://chat:s3cret@127.0.0.1:1/chat?sslmode=disable&connect_timeout=2"},
		{"MySQL bad parameter", "mysql://chat:s3cret@127.0.0.1:1/chat?timeout=soon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.db, testOptions(false))
			if err == nil {
				t.Fatal("Open succeeded, want an error")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestInsert(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		got := mustInsert(t, s, "lobby", "hello ✓ 🎉")
		want := chat.Message{ID: 1, Room: "lobby", Nick: "ada", Text: "hello ✓ 🎉", Time: "2026-11-25T15:18:47.123Z", Kind: "message"}
		if got != want {
			t.Errorf("Insert = %+v, want %+v", got, want)
		}
		ms, err := s.After(context.Background(), "lobby", 0, 10)
		if err != nil || len(ms) != 1 || ms[0] != want {
			t.Errorf("After(0) = %+v, %v; want [%+v]", ms, err, want)
		}
	})
}

func TestLatestAndAfter(t *testing.T) {
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
		tests := []struct {
			name string
			get  func() ([]chat.Message, error)
			want []int64
		}{
			{"Latest 3 oldest first", func() ([]chat.Message, error) { return s.Latest(ctx, "a", 3) }, []int64{5, 7, 9}},
			{"Latest more than exist", func() ([]chat.Message, error) { return s.Latest(ctx, "b", 50) }, []int64{2, 4, 6, 8, 10}},
			{"Latest 0", func() ([]chat.Message, error) { return s.Latest(ctx, "b", 0) }, []int64{}},
			{"Latest empty room", func() ([]chat.Message, error) { return s.Latest(ctx, "c", 5) }, []int64{}},
			{"After in room", func() ([]chat.Message, error) { return s.After(ctx, "b", 4, 10) }, []int64{6, 8, 10}},
			{"After with limit", func() ([]chat.Message, error) { return s.After(ctx, "a", 0, 2) }, []int64{1, 3}},
			{"After the last", func() ([]chat.Message, error) { return s.After(ctx, "a", 9, 10) }, []int64{}},
			{"AllAfter", func() ([]chat.Message, error) { return s.AllAfter(ctx, 7, 10) }, []int64{8, 9, 10}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ms, err := tt.get()
				if err != nil {
					t.Fatal(err)
				}
				if got := ids(ms); fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("ids = %v, want %v", got, tt.want)
				}
			})
		}
		if got, err := s.MaxID(ctx); err != nil || got != 10 {
			t.Errorf("MaxID = %d, %v; want 10", got, err)
		}
	})
}

func TestDeleteLeavesTombstoneAndIDsAreNeverReused(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		ctx := context.Background()
		mustInsert(t, s, "lobby", "1")
		mustInsert(t, s, "lobby", "2")
		moderatorDelete(t, s, 1)
		rows, err := s.After(ctx, "lobby", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[0].ID != 2 || rows[1].Kind != chat.KindDelete || rows[1].Target != 1 || rows[1].ID != 3 {
			t.Fatalf("rows after deleting id 1 = %+v; want message 2, then tombstone 3 for 1", rows)
		}
		if _, err := time.Parse(chat.TimeFormat, rows[1].Time); err != nil {
			t.Errorf("the tombstone's time %q: %v", rows[1].Time, err)
		}
		if ms, _ := s.Latest(ctx, "lobby", 10); len(ms) != 1 || ms[0].ID != 2 {
			t.Errorf("Latest = %+v, want only message 2 (no tombstones in history)", ms)
		}
		if got := mustInsert(t, s, "lobby", "4"); got.ID != 4 {
			t.Errorf("id after a delete = %d, want 4", got.ID)
		}
		moderatorDelete(t, s, 1) // gone already: nothing happens
		if got, _ := s.MaxID(ctx); got != 4 {
			t.Errorf("MaxID after deleting a deleted message = %d, want 4", got)
		}
	})
}

func TestMySQLRefusesPlainDelete(t *testing.T) {
	s := MustOpen(t, dbtest.MySQL)
	m := mustInsert(t, s, "lobby", "1")
	_, err := s.db.Exec("DELETE FROM messages WHERE id = ?", m.ID)
	if err == nil || !strings.Contains(err.Error(), "CALL delete_message") {
		t.Errorf("a plain DELETE: %v, want an error naming CALL delete_message", err)
	}
	if got, _ := s.MaxID(context.Background()); got != m.ID {
		t.Errorf("MaxID = %d, want %d: the refused delete left a row", got, m.ID)
	}
}

func TestMigrationKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	full := sqliteDB.schemaText
	defer func() { sqliteDB.schemaText = full }()
	sqliteDB.schemaText = func() string {
		return full()[:strings.Index(full(), "-- step: 2")]
	}
	old, err := Open(context.Background(), path, testOptions(false))
	if err != nil {
		t.Fatal(err)
	}
	var v int
	old.db.Get(&v, "PRAGMA user_version")
	if v != 1 {
		t.Fatalf("user_version of the old database = %d, want 1", v)
	}
	if _, err := old.Insert(context.Background(), "lobby", "ada", "v1"); err != nil {
		t.Fatal(err)
	}
	old.Close()
	sqliteDB.schemaText = full
	s, err := Open(context.Background(), path, testOptions(false))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := s.Latest(context.Background(), "lobby", 10)
	if err != nil || len(ms) != 1 || ms[0].Text != "v1" || ms[0].Kind != chat.KindMessage {
		t.Errorf("after migrating: %+v, %v; want the version-1 message as a message", ms, err)
	}
}

// TestServerMigrationAddsStepOnce opens a database made by the schema as
// it is with a schema that has one more step, from many processes at once:
// the step is applied once and the data kept.
func TestServerMigrationAddsStepOnce(t *testing.T) {
	for _, b := range dbtest.Servers {
		t.Run(string(b), func(t *testing.T) {
			s := MustOpen(t, b)
			mustInsert(t, s, "lobby", "v1")
			text := schemaOf(b)
			full := *text
			steps, err := parseSteps(full())
			if err != nil {
				t.Fatal(err)
			}
			next := len(steps) + 1
			*text = func() string { return full() + fmt.Sprintf("\n-- step: %d\nCREATE TABLE extra (x INTEGER);\n", next) }
			defer func() { *text = full }()
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for range 8 {
				wg.Go(func() {
					s2, err := Open(context.Background(), s.DB(), testOptions(false))
					if err == nil {
						s2.Close()
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("open with the new step: %v", err)
				}
			}
			var got []int
			s.db.Select(&got, "SELECT version FROM schema_migrations ORDER BY version")
			if len(got) != next || got[next-1] != next {
				t.Errorf("schema_migrations = %v, want 1 to %d", got, next)
			}
			if ms, err := s.Latest(context.Background(), "lobby", 10); err != nil || len(ms) != 1 {
				t.Errorf("after migrating: %+v, %v; want the message", ms, err)
			}
		})
	}
}

func TestChangesSeesOtherConnections(t *testing.T) {
	// PostgreSQL listens in a process with a pool, and polls with one
	// connection (CGI).
	for _, tc := range []struct {
		b          dbtest.Backend
		concurrent bool
	}{{dbtest.SQLite, true}, {dbtest.MySQL, false}, {dbtest.MySQL, true}, {dbtest.Postgres, false}, {dbtest.Postgres, true}} {
		t.Run(fmt.Sprintf("%s/concurrent=%v", tc.b, tc.concurrent), func(t *testing.T) {
			t.Parallel()
			s := mustOpenDB(t, dbtest.New(t, tc.b), tc.concurrent)
			ctx := context.Background()
			c, err := s.Changes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A notification arrives a moment after its commit: wait for
			// a change for up to 5 s, for none a tenth of a second.
			check := func(step string, want bool) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				if !want {
					time.Sleep(100 * time.Millisecond)
				}
				for {
					got, err := c.Changed(ctx)
					if err != nil {
						t.Fatalf("%s: %v", step, err)
					}
					if got == want || !want || time.Now().After(deadline) {
						if got != want {
							t.Errorf("%s: Changed = %v, want %v", step, got, want)
						}
						return
					}
					select {
					case <-c.C():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			// A listener reports changes until it listens.
			for settle := time.Now().Add(5 * time.Second); time.Now().Before(settle); time.Sleep(10 * time.Millisecond) {
				if changed, err := c.Changed(ctx); err == nil && !changed {
					break
				}
			}
			check("nothing happened", false)
			mustInsert(t, s, "lobby", "same process")
			check("insert through the pool", true)
			check("nothing since", false)
			other := mustOpenDB(t, s.DB(), false)
			if _, err := other.Insert(ctx, "lobby", "bob", "other store"); err != nil {
				t.Fatal(err)
			}
			check("insert through another store", true)
			if _, err := other.OpenStream(ctx, StreamInput{Owner: "x", Room: "lobby", Addr: "10.0.0.1", Stale: time.Minute}); err != nil {
				t.Fatal(err)
			}
			check("a stream opening elsewhere", true)
		})
	}
}

func TestManyWritersNoLockErrors(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		// Separate stores stand for separate processes: each has its own
		// pool and its own in-process write lock.
		s := MustOpen(t, b)
		const writers, each = 10, 30
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := 0; w < writers; w++ {
			wg.Go(func() {
				s, err := Open(context.Background(), s.DB(), testOptions(true))
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				for i := 0; i < each; i++ {
					if _, err := s.Insert(context.Background(), "lobby", "w", "x"); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("insert: %v", err)
		}
		var n int
		s.db.Get(&n, "SELECT count(*) FROM messages")
		if n != writers*each {
			t.Errorf("rows = %d, want %d", n, writers*each)
		}
	})
}

// TestIDsVisibleInCommitOrder is the guarantee resuming rests on: a reader
// that has seen id n has seen every id below it. Writers in many pools
// (processes) post at once while readers in others keep reading what is
// new after the last id they saw, as the feed does; any id that became
// visible after a larger one would show as a gap.
func TestIDsVisibleInCommitOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		db := MustOpen(t, b).DB()
		const writers, each, readers = 12, 40, 3
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var posting sync.WaitGroup
		for w := range writers {
			posting.Go(func() {
				s := mustOpenDB(t, db, true)
				for i := range each {
					room := fmt.Sprint("room", (w+i)%3)
					if _, err := s.Insert(ctx, room, fmt.Sprint("w", w), fmt.Sprint(i)); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			})
		}
		done := make(chan struct{})
		go func() { posting.Wait(); close(done) }()
		var reading sync.WaitGroup
		for r := range readers {
			reading.Go(func() {
				s := mustOpenDB(t, db, false)
				var last int64
				for polls := 0; last < writers*each; polls++ {
					finished := false
					select {
					case <-done:
						finished = true
					default:
					}
					ms, err := s.AllAfter(ctx, last, 1000)
					if err != nil {
						t.Errorf("reader %d: %v", r, err)
						return
					}
					for _, m := range ms {
						if m.ID != last+1 {
							t.Errorf("reader %d saw id %d right after %d (poll %d): id %d became visible after a larger one", r, m.ID, last, polls, last+1)
							return
						}
						last = m.ID
					}
					if finished && len(ms) == 0 {
						t.Errorf("reader %d: posting is over but it saw only up to id %d of %d", r, last, writers*each)
						return
					}
				}
			})
		}
		reading.Wait()
	})
}

// TestListenerSurvivesLostConnection cuts the PostgreSQL listener's
// connection, as a server restart or a network fault would: meanwhile
// every check reports a change (the feed polls), and once the listener is
// back a commit elsewhere is announced again.
func TestListenerSurvivesLostConnection(t *testing.T) {
	s := mustOpenDB(t, dbtest.New(t, dbtest.Postgres), true)
	other := mustOpenDB(t, s.DB(), false)
	ctx := context.Background()
	c, err := s.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// settled waits until the detector reports no change: it listens.
	settled := func() bool {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if changed, err := c.Changed(ctx); err == nil && !changed {
				return true
			}
		}
		return false
	}
	if !settled() {
		t.Fatal("the listener did not start within 5 s")
	}
	// listener returns the process id of the listening connection, or 0.
	listener := func() (pid int) {
		other.db.Get(&pid, `SELECT COALESCE(MAX(pid), 0) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN `+notifyChannel+`'`)
		return pid
	}
	cut := listener()
	if cut == 0 {
		t.Fatal("no connection listens")
	}
	if _, err := other.db.Exec("SELECT pg_terminate_backend($1)", cut); err != nil {
		t.Fatal(err)
	}
	back := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && (back == 0 || back == cut); time.Sleep(20 * time.Millisecond) {
		back = listener()
	}
	if back == 0 || back == cut {
		t.Fatal("no new connection listens 5 s after the old one was cut")
	}
	if !settled() {
		t.Fatal("the listener reports changes 5 s after it came back")
	}
	select {
	case <-c.C(): // the announcement of the new start
	default:
	}
	mustInsert(t, other, "lobby", "after the cut")
	select {
	case <-c.C():
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5 s of a commit after the listener came back")
	}
	if changed, err := c.Changed(ctx); err != nil || !changed {
		t.Errorf("Changed after the notification = %v, %v; want true", changed, err)
	}
}

// TestUpgradeKeepsData opens, with the newest schema, a database made by
// the schema without its newest step (what the previous release made),
// holding what a chat in use holds: history, a deletion, bans, a nick
// claim, the claims secret, a stream. Every part of it must survive the
// step.
func TestUpgradeKeepsData(t *testing.T) {
	for _, b := range dbtest.Backends {
		t.Run(string(b), func(t *testing.T) {
			text := schemaOf(b)
			full := *text
			steps := mustSteps(t, full())
			if len(steps) < 2 {
				t.Skip("the schema has one step: nothing to upgrade from")
			}
			last := steps[len(steps)-1].version
			*text = func() string {
				s := full()
				return s[:strings.Index(s, fmt.Sprintf("-- step: %d\n", last))]
			}
			defer func() { *text = full }()
			db := dbtest.New(t, b)
			old := mustOpenDB(t, db, false)
			secret, err := old.Secret(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			kept := mustInsert(t, old, "lobby", "kept")
			gone := mustInsert(t, old, "lobby", "deleted")
			moderatorDelete(t, old, gone.ID)
			for _, q := range []string{
				"INSERT INTO bans (nick) VALUES ('troll')",
				"INSERT INTO nick_claims (nick_key, nick, issued, last_used) VALUES ('ada', 'Ada', 7, '2026-11-25T15:18:47.123Z')",
				"INSERT INTO streams (owner, room, nick, addr, open, seen_at) VALUES ('p', 'lobby', 'bob', '10.0.0.1', 1, 1)",
			} {
				old.db.MustExec(q)
			}
			old.Close()

			*text = full
			s := mustOpenDB(t, db, false)
			ctx := context.Background()
			if ms, err := s.Latest(ctx, "lobby", 10); err != nil || len(ms) != 1 || ms[0].ID != kept.ID {
				t.Errorf("history after the upgrade: %+v, %v; want the kept message only", ms, err)
			}
			if rows, err := s.After(ctx, "lobby", kept.ID, 10); err != nil || len(rows) != 1 || rows[0].Kind != chat.KindDelete || rows[0].Target != gone.ID {
				t.Errorf("the deletion after the upgrade: %+v, %v; want its tombstone", rows, err)
			}
			if got, err := s.Secret(ctx); err != nil || !bytes.Equal(got, secret) {
				t.Errorf("the claims secret changed in the upgrade: %v", err)
			}
			if _, err := s.Post(ctx, input("troll", "10.0.0.2")); codeOf(err) != chat.EForbidden {
				t.Errorf("the ban after the upgrade: %v, want forbidden", err)
			}
			if _, err := s.Post(ctx, input("ada", "10.0.0.3")); codeOf(err) != chat.EConflict {
				t.Errorf("the nick claim after the upgrade: %v, want a conflict", err)
			}
			if _, err := s.Post(ctx, input("ada", "10.0.0.3", 7)); err != nil {
				t.Errorf("the claim's holder after the upgrade: %v", err)
			}
			var n int
			if err := s.db.Get(&n, "SELECT count(*) FROM streams WHERE owner = 'p' AND open = 1"); err != nil || n != 1 {
				t.Errorf("the stream row after the upgrade: %d, %v; want it kept", n, err)
			}
		})
	}
}

// TestUpgradeWithIndexesChangedByHand upgrades, past the step that
// replaces the streams' indexes, a database in which a person dropped one
// of the old indexes and made one of the new ones by hand: the programs
// still open it, with the new indexes and none of the old. (MySQL has no
// IF EXISTS for indexes: docs/databases.md says what to do there.)
func TestUpgradeWithIndexesChangedByHand(t *testing.T) {
	for _, b := range []dbtest.Backend{dbtest.SQLite, dbtest.Postgres} {
		t.Run(string(b), func(t *testing.T) {
			text := schemaOf(b)
			full := *text
			at := strings.Index(full(), "CREATE INDEX IF NOT EXISTS streams_owner_open")
			if at < 0 {
				t.Fatal("no step makes streams_owner_open")
			}
			*text = func() string {
				s := full()
				return s[:strings.LastIndex(s[:at], "-- step: ")]
			}
			defer func() { *text = full }()
			db := dbtest.New(t, b)
			old := mustOpenDB(t, db, false)
			old.db.MustExec("DROP INDEX streams_owner")
			old.db.MustExec("CREATE INDEX streams_addr_kind ON streams (addr, kind)")
			old.Close()

			*text = full
			s, err := Open(context.Background(), db, testOptions(false))
			if err != nil {
				t.Fatalf("opening after the upgrade: %v", err)
			}
			defer s.Close()
			q := "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'streams' AND sql IS NOT NULL ORDER BY name"
			if b == dbtest.Postgres {
				q = "SELECT indexname FROM pg_indexes WHERE tablename = 'streams' AND indexname <> 'streams_pkey' ORDER BY indexname"
			}
			var got []string
			if err := s.db.Select(&got, q); err != nil {
				t.Fatal(err)
			}
			want := []string{"streams_addr_kind", "streams_kind_seen", "streams_owner_open", "streams_reader", "streams_room_nick"}
			if b == dbtest.Postgres {
				want = []string{"streams_addr_kind", "streams_kind_seen", "streams_owner_open", "streams_reader", "streams_room_nick", "streams_seen"}
			}
			if !slices.Equal(got, want) {
				t.Errorf("the streams' indexes after the upgrade: %v, want %v", got, want)
			}
		})
	}
}

// TestDeadlockVictimRunsAgain makes a transaction the victim of a real
// deadlock on each database server: two transactions lock two rows in
// opposite order. The store runs the victim again, and it succeeds.
func TestDeadlockVictimRunsAgain(t *testing.T) {
	for _, b := range dbtest.Servers {
		t.Run(string(b), func(t *testing.T) {
			s := MustOpen(t, b)
			ctx := context.Background()
			s.db.MustExec("CREATE TABLE pair (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
			s.db.MustExec("INSERT INTO pair (id, v) VALUES (1, 0), (2, 0)")
			other, err := s.db.BeginTxx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Rollback()
			// The other is the heavier transaction (MySQL chooses the
			// lighter as the victim; PostgreSQL the one that waited first,
			// the store's).
			for i := 3; i < 50; i++ {
				other.MustExec(s.sql("INSERT INTO pair (id, v) VALUES (?, 0)"), i)
			}
			other.MustExec(s.sql("UPDATE pair SET v = v + 1 WHERE id = ?"), 2)
			// The store's transaction takes row 1, then waits for row 2;
			// the other then asks for row 1: a deadlock.
			tries := 0
			done := make(chan error, 1)
			go func() {
				done <- s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
					tries++
					if _, err := tx.ExecContext(ctx, s.sql("UPDATE pair SET v = v + 1 WHERE id = ?"), 1); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, s.sql("UPDATE pair SET v = v + 1 WHERE id = ?"), 2)
					return err
				})
			}()
			time.Sleep(500 * time.Millisecond)
			if _, err := other.ExecContext(ctx, s.sql("UPDATE pair SET v = v + 1 WHERE id = ?"), 1); err != nil {
				t.Fatalf("the heavier transaction was the victim (%v): the test cannot tell a retry", err)
			}
			other.Commit()
			if err := <-done; err != nil {
				t.Fatalf("the store's transaction: %v, want it run again after the deadlock", err)
			}
			var v1, v2 int
			s.db.Get(&v1, "SELECT v FROM pair WHERE id = 1")
			s.db.Get(&v2, "SELECT v FROM pair WHERE id = 2")
			if tries != 2 || v1 != 2 || v2 != 2 {
				t.Errorf("after %d tries: v1 %d, v2 %d; want 2 tries and both rows updated by each transaction", tries, v1, v2)
			}
		})
	}
}

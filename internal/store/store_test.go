package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// MustOpen opens a store on a fresh file in a temporary directory, with the
// clock fixed so that times are predictable.
func MustOpen(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(context.Background(), filepath.Join(tb.TempDir(), "data", "chat.db"), 4)
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

func ids(ms []chat.Message) []int64 {
	out := []int64{}
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestOpenCreatesDirectoryAndWAL(t *testing.T) {
	s := MustOpen(t)
	if _, err := os.Stat(s.Path()); err != nil {
		t.Fatalf("database file: %v", err)
	}
	db := sqlx.MustOpen("sqlite3", s.Path())
	defer db.Close()
	var mode string
	if err := db.Get(&mode, "PRAGMA journal_mode"); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var version int
	if err := db.Get(&version, "PRAGMA user_version"); err != nil || version != 2 {
		t.Errorf("user_version = %d, %v; want 2", version, err)
	}
}

func TestOpenIsIdempotent(t *testing.T) {
	s := MustOpen(t)
	mustInsert(t, s, "lobby", "kept")
	for i := 0; i < 2; i++ {
		s2, err := Open(context.Background(), s.Path(), 2)
		if err != nil {
			t.Fatalf("open #%d: %v", i+2, err)
		}
		ms, err := s2.Latest(context.Background(), "lobby", 10)
		s2.Close()
		if err != nil || len(ms) != 1 || ms[0].Text != "kept" {
			t.Fatalf("after reopening: %+v, %v; want the one message", ms, err)
		}
	}
}

func TestOpenConcurrentFirstUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "chat.db")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), path, 1)
			if err == nil {
				_, err = s.Insert(context.Background(), "lobby", "ada", "hi")
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent first open: %v", err)
		}
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s := MustOpen(t)
	db := sqlx.MustOpen("sqlite3", s.Path())
	db.MustExec("PRAGMA user_version = 99")
	db.Close()
	if _, err := Open(context.Background(), s.Path(), 1); err == nil {
		t.Error("opening a database with a newer schema succeeded, want an error")
	}
}

func TestOpenWhereNoDirectoryCanBe(t *testing.T) {
	// A file where the directory should be stops even root.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	_, err := Open(context.Background(), filepath.Join(file, "chat.db"), 1)
	if err == nil || !strings.Contains(err.Error(), "create the database directory") {
		t.Errorf("Open under a file: err = %v, want one about the directory", err)
	}
}

func TestInsert(t *testing.T) {
	s := MustOpen(t)
	got := mustInsert(t, s, "lobby", "hello")
	want := chat.Message{ID: 1, Room: "lobby", Nick: "ada", Text: "hello", Time: "2026-11-25T15:18:47.123Z", Kind: "message"}
	if got != want {
		t.Errorf("Insert = %+v, want %+v", got, want)
	}
	ms, err := s.After(context.Background(), "lobby", 0, 10)
	if err != nil || len(ms) != 1 || ms[0] != want {
		t.Errorf("After(0) = %+v, %v; want [%+v]", ms, err, want)
	}
}

func TestLatestAndAfter(t *testing.T) {
	s := MustOpen(t)
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
}

func TestDeleteLeavesTombstoneAndIDsAreNeverReused(t *testing.T) {
	s := MustOpen(t)
	ctx := context.Background()
	mustInsert(t, s, "lobby", "1")
	mustInsert(t, s, "lobby", "2")
	db := sqlx.MustOpen("sqlite3", s.Path())
	db.MustExec("DELETE FROM messages WHERE id = 1")
	db.Close()
	rows, err := s.After(ctx, "lobby", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].ID != 2 || rows[1].Kind != chat.KindDelete || rows[1].Target != 1 || rows[1].ID != 3 {
		t.Fatalf("rows after deleting id 1 = %+v; want message 2, then tombstone 3 for 1", rows)
	}
	if ms, _ := s.Latest(ctx, "lobby", 10); len(ms) != 1 || ms[0].ID != 2 {
		t.Errorf("Latest = %+v, want only message 2 (no tombstones in history)", ms)
	}
	if got := mustInsert(t, s, "lobby", "4"); got.ID != 4 {
		t.Errorf("id after a delete = %d, want 4", got.ID)
	}
}

func TestMigrationKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	full := schema
	defer func() { schema = full }()
	schema = func() string {
		return full()[:strings.Index(full(), "-- step: 2")]
	}
	old, err := Open(context.Background(), path, 1)
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
	schema = full
	s, err := Open(context.Background(), path, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := s.Latest(context.Background(), "lobby", 10)
	if err != nil || len(ms) != 1 || ms[0].Text != "v1" || ms[0].Kind != chat.KindMessage {
		t.Errorf("after migrating: %+v, %v; want the version-1 message as a message", ms, err)
	}
}

func TestChangesSeesOtherConnections(t *testing.T) {
	s := MustOpen(t)
	ctx := context.Background()
	c, err := s.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check := func(step string, want bool) {
		t.Helper()
		if got, err := c.Changed(ctx); err != nil || got != want {
			t.Errorf("%s: Changed = %v, %v; want %v", step, got, err, want)
		}
	}
	check("nothing happened", false)
	mustInsert(t, s, "lobby", "same process")
	check("insert through the pool", true)
	check("nothing since", false)
	other, err := Open(ctx, s.Path(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Insert(ctx, "lobby", "bob", "other store"); err != nil {
		t.Fatal(err)
	}
	check("insert through another store", true)
}

func TestManyWritersNoLockErrors(t *testing.T) {
	// Separate stores stand for separate processes: each has its own pool
	// and its own in-process write lock.
	path := MustOpen(t).Path()
	const writers, each = 10, 30
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), path, 2)
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
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("insert: %v", err)
	}
	db, _ := sql.Open("sqlite3", path)
	defer db.Close()
	var n int
	db.QueryRow("SELECT count(*) FROM messages").Scan(&n)
	if n != writers*each {
		t.Errorf("rows = %d, want %d", n, writers*each)
	}
}

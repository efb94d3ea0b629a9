package tail

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/feed"
	"cgichat/internal/sse"
	"cgichat/internal/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// event is one event of a tail file as a reader parses it.
type event struct {
	id, typ string
}

// parse reads a tail file with the project's SSE reader, as pollers do.
func parse(t *testing.T, b []byte) (Head, []event) {
	t.Helper()
	h, err := ParseHead(b)
	if err != nil {
		t.Fatalf("%v:\n%.300s", err, b)
	}
	r := sse.NewReader(bytes.NewReader(b))
	var evs []event
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		evs = append(evs, event{ev.ID, ev.Type})
	}
	if len(evs) == 0 || evs[0].typ != EventTail || evs[0].id != "" {
		t.Fatalf("first event %v, want a tail event without id", evs)
	}
	return h, evs[1:]
}

// TestEncode checks the bounds of a file: the last rows, as many as fit,
// at least one, and a head that says from where it holds every row.
func TestEncode(t *testing.T) {
	msg := func(id int64, size int) chat.Message {
		return chat.Message{ID: id, Room: "r", Nick: "ada", Text: strings.Repeat("x", size), Time: "2026-11-30T12:00:00.000Z", Kind: chat.KindMessage}
	}
	rows := func(n, size int) []chat.Message {
		var ms []chat.Message
		for i := range n {
			ms = append(ms, msg(int64(10+i), size))
		}
		return ms
	}
	// Frames of 2,000-byte texts with two-digit ids are all one size.
	fit := MaxBytes / len(feed.Encode(msg(10, 2000)).Bytes)
	if fit >= Rows {
		t.Fatalf("%d rows of 2,000 bytes fit: the case does not reach the byte bound", fit)
	}
	tests := []struct {
		name      string
		ms        []chat.Message
		wantAfter int64
		wantLast  int64
		wantRows  int
	}{
		{"An empty room", nil, 0, 0, 0},
		{"A few rows: the whole room", rows(3, 10), 0, 12, 3},
		{"More rows than a file holds", rows(Rows+1, 10), 10, 10 + Rows, Rows},
		{"Rows that fill the bound", rows(Rows, 2000), int64(10 + Rows - 1 - fit), 10 + Rows - 1, fit},
		{"One row beyond the bound", []chat.Message{msg(7, MaxBytes+100)}, 0, 7, 1},
	}
	for _, tt := range tests {
		b := Encode("r", tt.ms)
		h, evs := parse(t, b)
		if h.Room != "r" || h.After != tt.wantAfter || h.Last != tt.wantLast || len(evs) != tt.wantRows {
			t.Errorf("%s: head %+v with %d rows, want after %d, last %d, %d rows", tt.name, h, len(evs), tt.wantAfter, tt.wantLast, tt.wantRows)
		}
		if len(evs) > 1 && len(b) > MaxBytes+200 {
			t.Errorf("%s: %d bytes, want at most %d", tt.name, len(b), MaxBytes)
		}
	}
}

// TestDir follows a room's file through posts, a deletion from the sqlite3
// shell (a row no program wrote a file for) and a refresh: each time the
// file holds every row after its head's after, the same the stream sends.
func TestDir(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	key := []byte("the database's secret")
	notDir := filepath.Join(t.TempDir(), DirName)
	os.WriteFile(notDir, nil, 0o644)
	if d := Open(notDir, st, key); d != nil {
		t.Fatal("Open of a file gave a Dir, want none")
	}
	// A missing folder in a folder of the process's own is made.
	path := filepath.Join(t.TempDir(), DirName)
	d := Open(path, st, key)
	if fi, err := os.Stat(path); d == nil || err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("Open of a missing folder in one of our own: %v, %v; want it made, 0755", d, err)
	}
	file := filepath.Join(path, d.Name("r"))

	// A room without rows: no file (polls of made-up rooms leave none).
	if u, err := d.Ensure(ctx, "r"); u != "" || err != nil {
		t.Errorf("Ensure of an empty room = %q, %v; want no tail", u, err)
	}
	if names, _ := filepath.Glob(filepath.Join(path, "*.txt")); len(names) != 0 {
		t.Errorf("an empty room left %v", names)
	}
	if other := Open(filepath.Join(t.TempDir(), DirName), st, []byte("another secret")); other.Name("r") == d.Name("r") {
		t.Error("another key names the room's file alike, want the name keyed")
	}

	m1, _ := st.Insert(ctx, "r", "ada", "one")
	if err := d.Refresh(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("Refresh wrote a file no poller asked for")
	}
	u, err := d.Ensure(ctx, "r")
	if err != nil || u != "../tail/"+d.Name("r") {
		t.Fatalf("Ensure = %q, %v", u, err)
	}
	check := func(when string, wantIDs ...int64) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		h, evs := parse(t, b)
		var got []int64
		for _, ev := range evs {
			var id int64
			for _, c := range ev.id {
				id = id*10 + int64(c-'0')
			}
			got = append(got, id)
		}
		if len(got) != len(wantIDs) || h.Last != wantIDs[len(wantIDs)-1] {
			t.Fatalf("%s: file holds %v (head %+v), want %v", when, got, h, wantIDs)
		}
		for i := range got {
			if got[i] != wantIDs[i] {
				t.Fatalf("%s: file holds %v, want %v", when, got, wantIDs)
			}
		}
	}
	check("first poll", m1.ID)

	m2, _ := st.Insert(ctx, "r", "ada", "two")
	if err := d.Refresh(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	check("after a post", m1.ID, m2.ID)

	// A deletion nobody wrote a file for: the next poll finds the file
	// behind and rewrites it; the tombstone has the next id.
	if _, err := st.Insert(ctx, "other", "bob", "elsewhere"); err != nil {
		t.Fatal(err)
	}
	if err := deleteRow(st, m1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Ensure(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	_, last, _ := st.Span(ctx, "r", 0)
	check("after a deletion", m2.ID, last)

	// Versions within one second (the same rows again, as fast as they
	// come): each longer than the one before, so that no ETag of size and
	// whole second repeats; the next second starts from the rows' size.
	seen := map[string]bool{}
	for range 5 {
		if _, err := d.write(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(file)
		v := fmt.Sprint(fi.Size(), " bytes at ", fi.ModTime().Unix())
		if seen[v] {
			t.Errorf("two versions of %s: an ETag of size and whole second repeats", v)
		}
		seen[v] = true
	}
	check("rewritten unchanged", m2.ID, last)

	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v, %v; want 0644, readable by the web server", fi.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(path, ".*"))
	if len(left) != 1 || filepath.Base(left[0]) != keyFile {
		t.Errorf("files beside the tails: %v, want only %s", left, keyFile)
	}

	// Another secret (claim_secret deleted): the files named under the
	// old one go when a process opens the folder under the new one.
	if Open(path, st, []byte("a new secret")) == nil {
		t.Fatal("Open under a new secret gave none")
	}
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the file named under the old secret: %v, want it removed", err)
	}
}

// TestParseHead refuses what is not a tail file.
func TestParseHead(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"event: tail\ndata: {\"room\":\"r\",\"after\":3,\"last\":9}\n\n", true},
		{"", false},
		{"<!DOCTYPE html>", false},
		{"event: tail\ndata: {\"room\":", false},
		{"event: message\ndata: {}\n\n", false},
	}
	for _, tt := range tests {
		_, err := ParseHead([]byte(tt.in))
		if got := err == nil; got != tt.want {
			t.Errorf("ParseHead(%q) ok = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// deleteRow deletes message id as a moderator does in the sqlite3 shell,
// outside the programs.
func deleteRow(st *store.Store, id int64) error {
	db, err := sql.Open("sqlite3", st.DB())
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(`DELETE FROM messages WHERE id = ?`, id)
	return err
}

// TestPruneRace: a writer that read the room's rows before retention
// pruned them renames its file after Sweep rewrote it. The room's last id
// did not move; the re-check and the next poll must still see that the
// file holds rows the room no longer has (its head counts them), rather
// than leave them until the room's next post or the next Sweep.
func TestPruneRace(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	path := filepath.Join(t.TempDir(), DirName)
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	d := Open(path, st, []byte("secret"))
	m1, _ := st.Insert(ctx, "r", "ada", "one, soon pruned")
	st.Insert(ctx, "r", "ada", "two")
	if _, err := d.Ensure(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	// A post program's write() has read the rows (its Tail) ...
	stale, err := st.Tail(ctx, "r", Rows)
	if err != nil {
		t.Fatal(err)
	}
	// ... when another post program prunes and sweeps, whole ...
	if _, err := st.Prune(ctx, "r", store.Retention{Messages: 1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := d.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	// ... then the first renames its file, and re-checks the last id,
	// which did not move: write() returns.
	if err := d.replace("r", Encode("r", stale)); err != nil {
		t.Fatal(err)
	}
	if _, last, _ := st.Span(ctx, "r", 0); last != stale[len(stale)-1].ID {
		t.Fatalf("last id moved: the race needs a prune without a new row")
	}
	// The next poll.
	if _, err := d.Ensure(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(d.file("r"))
	if bytes.Contains(b, []byte(fmt.Sprintf("id: %d\n", m1.ID))) {
		t.Errorf("after retention pruned message %d and a poll came, the tail file still serves it:\n%s", m1.ID, b)
	}
}

// TestHoldsOneBurst: one client may post 5 messages at once under the
// default CHAT_RATE_LIMIT (5/10s). The file must hold them, even at 2,000
// emoji each: else every reader whose last read came before the burst
// finds the file short of its last event and calls the program, and one
// poster makes all 1,000 pollers run it together, every 10 s.
func TestHoldsOneBurst(t *testing.T) {
	var ms []chat.Message
	for i := range 6 {
		ms = append(ms, chat.Message{ID: int64(100 + i), Room: "r", Nick: "ada", Text: strings.Repeat("😀", chat.MaxTextLen), Time: "2026-11-30T12:00:00.000Z", Kind: chat.KindMessage})
	}
	ms[0].Text = "the reader's last event"
	h, err := ParseHead(Encode("r", ms))
	if err != nil {
		t.Fatal(err)
	}
	if h.After > ms[0].ID {
		t.Errorf("after a burst of 5 messages of %d emoji the file holds ids above %d; a reader at %d calls the program", chat.MaxTextLen, h.After, ms[0].ID)
	}
}

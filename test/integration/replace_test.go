package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/test/contract"

	"github.com/jmoiron/sqlx"
)

// longLived are the hosting modes whose processes keep their database
// open from one request to the next.
var longLived = []struct {
	name  string
	start contract.Start
}{
	{"Daemon", startDaemon},
	{"FastCGIStdin", startFastCGIStdin},
}

// TestBackupMovedOverDatabase replaces chat.db with a backup by mv while
// the programs run, reads it once with sqlite3 as the issue did, and
// posts: every 201 is in the file at the path, reaches a stream opened
// afterwards, and reaches the stream that was open, which ended and
// resumed from the last id it had.
func TestBackupMovedOverDatabase(t *testing.T) {
	for _, m := range longLived {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			d := m.start(t, nil)
			for i := range 3 {
				d.Post(t, "lobby", "ada", fmt.Sprint("before the backup ", i))
			}
			open := contract.Open(t, d.StreamURL(nil), nil)
			open.Until(t, "ready", 10*time.Second)
			backup := filepath.Join(filepath.Dir(d.DB), "backup.db")
			sqlite3(t, d.DB, ".backup "+backup)
			var last chat.Message
			for i := range 2 {
				last = d.Post(t, "lobby", "ada", fmt.Sprint("after the backup ", i))
				if got := open.NextMessage(t, 10*time.Second); got != last {
					t.Fatalf("the open stream got %+v, want %+v", got, last)
				}
			}

			if err := os.Rename(backup, d.DB); err != nil {
				t.Fatal(err)
			}
			sqlite3(t, d.DB, "SELECT count(*) FROM messages")
			// The stream on the old file ends; its reader comes back.
			if ms, _ := open.Rest(t, 10*time.Second); len(ms) != 0 {
				t.Errorf("the old stream sent %+v after the file was replaced", ms)
			}
			created := postAfter(t, d, 5)
			if len(created) != 5 {
				t.Errorf("%d of 5 posts after the replacement answered 201, want all (the file at the path opened anew)", len(created))
			}
			checkDelivered(t, d, created, last.ID)
		})
	}
}

// TestDatabaseDeletedUnderPrograms deletes chat.db and every file beside
// it (chat.db*) while the programs run: the next posts are stored in a new
// database at the path, or refused, never answered 201 and lost.
func TestDatabaseDeletedUnderPrograms(t *testing.T) {
	for _, m := range longLived {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			d := m.start(t, nil)
			last := d.Post(t, "lobby", "ada", "before")
			open := contract.Open(t, d.StreamURL(nil), nil)
			open.Until(t, "ready", 10*time.Second)
			files, _ := filepath.Glob(d.DB + "*")
			for _, f := range files {
				if err := os.RemoveAll(f); err != nil {
					t.Fatal(err)
				}
			}
			if len(files) < 3 {
				t.Fatalf("removed %v, want the database, its WAL and more", files)
			}
			open.Rest(t, 10*time.Second)
			created := postAfter(t, d, 5)
			if len(created) == 0 {
				t.Error("no post after the deletion answered 201: the path was not opened anew")
			}
			checkDelivered(t, d, created, last.ID)
		})
	}
}

// postAfter posts n messages, each answered 201 or 500, and returns the
// 201s.
func postAfter(t *testing.T, d *contract.Deployment, n int) []chat.Message {
	t.Helper()
	var created []chat.Message
	for i := range n {
		text := fmt.Sprint("after the replacement ", i)
		res, b := d.PostWithKey(t, http.DefaultClient, "", "lobby", fmt.Sprint("poster", i), text)
		switch res.StatusCode {
		case http.StatusCreated:
			var m chat.Message
			if err := json.Unmarshal(b, &m); err != nil || m.Text != text {
				t.Fatalf("201 with %s", b)
			}
			created = append(created, m)
		case http.StatusInternalServerError:
			t.Logf("post %d refused: %s", i, b)
		default:
			t.Fatalf("post %d: %d %s, want 201 or 500", i, res.StatusCode, b)
		}
	}
	return created
}

// checkDelivered checks that every message in created is in the file at
// the deployment's path, reaches a stream opened now, and reaches a stream
// resuming from resume, the last id a reader saw before.
func checkDelivered(t *testing.T, d *contract.Deployment, created []chat.Message, resume int64) {
	t.Helper()
	db, err := sqlx.Open("sqlite3", "file:"+d.DB+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, m := range created {
		var got chat.Message
		err := db.Get(&got, "SELECT id, room, nick, text, created_at FROM messages WHERE id = ?", m.ID)
		if err != nil || got != m {
			t.Errorf("message %d in the file at the path: %+v, %v; want %+v", m.ID, got, err, m)
		}
	}
	fresh := contract.Open(t, d.StreamURL(nil), nil).Until(t, "ready", 10*time.Second)
	resumed := contract.Open(t, d.StreamURL(url.Values{"lastEventId": {strconv.FormatInt(resume, 10)}}), nil).Until(t, "ready", 10*time.Second)
	for _, m := range created {
		for name, got := range map[string][]chat.Message{"a new stream": fresh, "a stream resuming from " + strconv.FormatInt(resume, 10): resumed} {
			if !contains(got, m) {
				t.Errorf("%s did not get %+v (it got %+v)", name, m, got)
			}
		}
	}
}

func contains(ms []chat.Message, m chat.Message) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// sqlite3 runs one command of the sqlite3 shell on db.
func sqlite3(t *testing.T, db, command string) {
	t.Helper()
	if out, err := exec.Command("sqlite3", db, command).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 %s %q: %v\n%s", db, command, err, out)
	}
}

package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/textproto"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cgichat/internal/config"
	"cgichat/internal/store"
	"cgichat/test/dbtest"
)

// TestKilledPostersLoseNothing runs post as CGI processes and kills many of
// them with SIGKILL at random moments, some mid-write, on each backend.
// Afterwards the database must hold every message whose 201 a client read,
// with the text it was sent; SQLite must pass integrity_check, and a
// database server must have let go of the lock a killed writer held.
func TestKilledPostersLoseNothing(t *testing.T) {
	for _, b := range dbtest.Backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			if b != dbtest.SQLite {
				env["CHAT_DB"] = dbtest.New(t, b)
				env["CHAT_WAKE_DIR"] = filepath.Join(t.TempDir(), "wake")
			}
			testKilledPosters(t, env)
		})
	}
}

func testKilledPosters(t *testing.T, env map[string]string) {
	const rounds, parallel = 40, 8
	db, kv := settings(t, env)
	var mu sync.Mutex
	confirmed := map[int64]string{} // id → text, from complete 201s
	killed := 0
	// Kill at random moments across a post's whole life, measured first:
	// during start-up, the database open, the transaction and the write.
	began := time.Now()
	if id, _ := postAndMaybeKill(t, kv, "calibration", time.Minute); id == 0 {
		t.Fatal("an unkilled post did not answer 201")
	}
	life := time.Since(began)
	deadline := time.Now().Add(30 * time.Second)
	for round := 0; round < rounds && time.Now().Before(deadline); round++ {
		var wg sync.WaitGroup
		for p := 0; p < parallel; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				text := fmt.Sprintf("round %d poster %d", round, p)
				id, wasKilled := postAndMaybeKill(t, kv, text, time.Duration(rand.Int64N(int64(life)*3)))
				mu.Lock()
				defer mu.Unlock()
				if wasKilled {
					killed++
				}
				if id > 0 {
					confirmed[id] = text
				}
			}()
		}
		wg.Wait()
	}
	if killed == 0 || len(confirmed) == 0 {
		t.Fatalf("%d killed, %d confirmed: the test needs both to mean anything", killed, len(confirmed))
	}
	t.Logf("%d posters killed, %d posts confirmed", killed, len(confirmed))

	conn, err := store.Connect(db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if config.IsServerURL(db) {
		// A killed writer's connection is gone, and its transaction and
		// lock with it: the next post goes through at once.
		began := time.Now()
		if id, _ := postAndMaybeKill(t, kv, "after the kills", time.Minute); id == 0 || time.Since(began) > 5*time.Second {
			t.Errorf("a post after the kills: id %d after %v, want a 201 within 5 s", id, time.Since(began))
		}
	} else {
		var check string
		if err := conn.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Fatalf("integrity_check = %q, %v; want ok", check, err)
		}
	}
	for id, text := range confirmed {
		var got string
		if err := conn.QueryRow(conn.Rebind("SELECT text FROM messages WHERE id = ?"), id).Scan(&got); err != nil || got != text {
			t.Errorf("message %d: %q, %v; want %q", id, got, err, text)
		}
	}
}

// postAndMaybeKill runs one CGI post of text and sends SIGKILL after
// delay unless it has finished. It returns the id of a complete 201 and
// whether the process died by the signal.
func postAndMaybeKill(t *testing.T, kv []string, text string, delay time.Duration) (int64, bool) {
	body := fmt.Sprintf(`{"nick":"crash","text":%q}`, text)
	cmd := exec.Command(filepath.Join(bin, "post"))
	cmd.Env = append(kv, "REQUEST_METHOD=POST", "SERVER_PROTOCOL=HTTP/1.1", "REQUEST_URI=/cgi-bin/post",
		"CONTENT_TYPE=application/json", fmt.Sprintf("CONTENT_LENGTH=%d", len(body)), "CHAT_NICK_HOURS=0")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return 0, false
	}
	timer := time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
	err := cmd.Wait()
	timer.Stop()
	wasKilled := false
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			wasKilled = true
		}
	}
	// Only a whole response counts as a 201 the client saw.
	r := textproto.NewReader(bufio.NewReader(&out))
	hdr, err := r.ReadMIMEHeader()
	if err != nil || !strings.HasPrefix(hdr.Get("Status"), "201") {
		return 0, wasKilled
	}
	var m struct {
		ID   int64
		Text string
	}
	line, err := r.ReadLine()
	if err != nil || json.Unmarshal([]byte(line), &m) != nil || m.Text != text {
		return 0, wasKilled
	}
	return m.ID, wasKilled
}

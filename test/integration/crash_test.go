package integration

import (
	"bufio"
	"bytes"
	"database/sql"
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
)

// TestKilledPostersLoseNothing runs post as CGI processes and kills many of
// them with SIGKILL at random moments, some mid-write. Afterwards the
// database must pass integrity_check and hold every message whose 201 a
// client read, with the text it was sent.
func TestKilledPostersLoseNothing(t *testing.T) {
	const rounds, parallel = 40, 8
	db, kv := settings(t, nil)
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

	conn, err := sql.Open("sqlite3", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var check string
	if err := conn.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v; want ok", check, err)
	}
	for id, text := range confirmed {
		var got string
		if err := conn.QueryRow("SELECT text FROM messages WHERE id = ?", id).Scan(&got); err != nil || got != text {
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

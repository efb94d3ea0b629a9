package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"cgichat/internal/chat"
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
	final := map[string]int64{}     // text → the id its post was answered with at last
	killed, headerOnly := 0, 0
	// Kill at random moments across a post's whole life, measured first:
	// during start-up, the database open, the transaction and the write.
	began := time.Now()
	if id, _ := postAndMaybeKill(t, kv, "calibration", "", time.Minute); id == 0 {
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
				// One key per message, sent again after a failure, as the
				// page does.
				key := fmt.Sprintf("crash-key-%04d-%02d", round, p)
				id, wasKilled := postAndMaybeKill(t, kv, text, key, time.Duration(rand.Int64N(int64(life)*3)))
				again := id
				if id <= 0 {
					if again, _ = postAndMaybeKill(t, kv, text, key, time.Minute); again <= 0 {
						t.Errorf("%q sent again: %d", text, again)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if wasKilled {
					killed++
				}
				if id == headerOnly201 {
					headerOnly++
				}
				if id > 0 {
					confirmed[id] = text
				}
				final[text] = again
			}()
		}
		wg.Wait()
	}
	if killed == 0 || len(confirmed) == 0 {
		t.Fatalf("%d killed, %d confirmed: the test needs both to mean anything", killed, len(confirmed))
	}
	t.Logf("%d posters killed (%d after a 201 header without its body), %d posts confirmed at once, %d after a retry",
		killed, headerOnly, len(confirmed), len(final)-len(confirmed))

	conn, err := store.Connect(db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if config.IsServerURL(db) {
		// A killed writer's connection is gone, and its transaction and
		// lock with it: the next post goes through at once.
		began := time.Now()
		if id, _ := postAndMaybeKill(t, kv, "after the kills", "", time.Minute); id == 0 || time.Since(began) > 5*time.Second {
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
	// Every message is stored once, under the id its last answer named,
	// whatever happened to the posts before it.
	for text, id := range final {
		var ids []int64
		if err := conn.Select(&ids, conn.Rebind("SELECT id FROM messages WHERE text = ?"), text); err != nil {
			t.Fatal(err)
		}
		if len(ids) != 1 || ids[0] != id {
			t.Errorf("%q: stored as %v, answered as %d; want once, as answered", text, ids, id)
		}
	}
}

// headerOnly201 is what postAndMaybeKill returns for a 201 whose body
// never came: the response the issue saw (9 in 1,582 killed posts).
const headerOnly201 = -1

// TestPostKilledBetweenHeaderAndBody kills a CGI post exactly between its
// two writes, the status line and headers and then the body, on each
// backend: the client has "201 Created" and nothing else. The page sends
// the message again with its Idempotency-Key; it gets the stored message,
// and the database holds it once.
//
// The post writes into a pipe of one page that the test has filled so that
// the headers fit and the body does not: the post blocks in its second
// write, and the test kills it as soon as the headers are in the pipe.
func TestPostKilledBetweenHeaderAndBody(t *testing.T) {
	for _, b := range dbtest.Backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			if b != dbtest.SQLite {
				env["CHAT_DB"] = dbtest.New(t, b)
				env["CHAT_WAKE_DIR"] = filepath.Join(t.TempDir(), "wake")
			}
			db, kv := settings(t, env)
			const text = "the answer was lost"
			const key = `"8e03978e-40d5-43e8-bc93-6894a57f9324"`
			// A request of the same size, whole, measures the two writes.
			cmd := cgiPost(kv, "the answer is found", "calibration-key-000001")
			var out bytes.Buffer
			cmd.Stdout = &out
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			header := bytes.Index(out.Bytes(), []byte("\r\n\r\n")) + 4
			body := out.Len() - header
			if header < 4 || body < 20 {
				t.Fatalf("calibration: %q, want headers and a body", out.String())
			}

			got := postIntoFullPipe(t, cgiPost(kv, text, key), header+body/2)
			if !bytes.HasPrefix(got, []byte("Status: 201")) || !bytes.HasSuffix(got, []byte("\r\n\r\n")) {
				t.Fatalf("the killed post wrote %q, want a 201 status and headers, without a body", got)
			}

			var first string
			for i := range 2 {
				cmd := cgiPost(kv, text, key)
				var out bytes.Buffer
				cmd.Stdout = &out
				if err := cmd.Run(); err != nil {
					t.Fatal(err)
				}
				r := textproto.NewReader(bufio.NewReader(&out))
				hdr, err := r.ReadMIMEHeader()
				line, _ := r.ReadLine()
				if err != nil || !strings.HasPrefix(hdr.Get("Status"), "201") || hdr.Get("Idempotent-Replayed") != "true" {
					t.Fatalf("sent again (%d): %v %v %s, want a 201 that replays the stored message", i+1, err, hdr, line)
				}
				if i == 0 {
					first = line
				} else if line != first {
					t.Errorf("sent a third time: %s, want %s", line, first)
				}
			}
			conn, err := store.Connect(db)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var stored []chat.Message
			if err := conn.Select(&stored, conn.Rebind("SELECT id, room, nick, text, created_at FROM messages WHERE text = ?"), text); err != nil {
				t.Fatal(err)
			}
			var answered chat.Message
			json.Unmarshal([]byte(first), &answered)
			if len(stored) != 1 || stored[0] != answered {
				t.Errorf("stored %+v, answered %+v; want the one message, as answered", stored, answered)
			}
		})
	}
}

// cgiPost returns the command that posts text as a CGI request, with key
// as its Idempotency-Key unless it is empty.
func cgiPost(kv []string, text, key string) *exec.Cmd {
	body := fmt.Sprintf(`{"nick":"crash","text":%q}`, text)
	cmd := exec.Command(filepath.Join(bin, "post"))
	cmd.Env = append(kv, "REQUEST_METHOD=POST", "SERVER_PROTOCOL=HTTP/1.1", "REQUEST_URI=/cgi-bin/post",
		"CONTENT_TYPE=application/json", fmt.Sprintf("CONTENT_LENGTH=%d", len(body)), "CHAT_NICK_HOURS=0")
	if key != "" {
		cmd.Env = append(cmd.Env, "HTTP_IDEMPOTENCY_KEY="+key)
	}
	cmd.Stdin = strings.NewReader(body)
	cmd.Stderr = os.Stderr
	return cmd
}

// Linux pipe controls (fcntl F_SETPIPE_SZ, ioctl FIONREAD).
const (
	setPipeSize = 1031
	fionread    = 0x541B
)

// postIntoFullPipe runs cmd with its standard output into a pipe of one
// page, filled but for room bytes, and kills it as soon as its first write
// is in the pipe. It returns what cmd wrote.
func postIntoFullPipe(t *testing.T, cmd *exec.Cmd, room int) []byte {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	control := func(f *os.File, fn func(fd uintptr) error) {
		t.Helper()
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var ferr error
		if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil || ferr != nil {
			t.Fatalf("pipe control: %v %v", err, ferr)
		}
	}
	page := os.Getpagesize()
	control(w, func(fd uintptr) error {
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, setPipeSize, uintptr(page)); errno != 0 {
			return errno
		}
		return nil
	})
	fill := page - room
	if _, err := w.Write(bytes.Repeat([]byte("."), fill)); err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	inPipe := func() int {
		var n int32
		control(r, func(fd uintptr) error {
			if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, fionread, uintptr(unsafe.Pointer(&n))); errno != 0 {
				return errno
			}
			return nil
		})
		return int(n)
	}
	for deadline := time.Now().Add(30 * time.Second); inPipe() == fill; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the post wrote nothing in 30 s")
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	out, err := io.ReadAll(r)
	if err != nil || len(out) < fill {
		t.Fatalf("reading the pipe: %d bytes, %v", len(out), err)
	}
	return out[fill:]
}

// postAndMaybeKill runs one CGI post of text, with key as its
// Idempotency-Key unless it is empty, and sends SIGKILL after delay unless
// it has finished. It returns the id of a complete 201 (headerOnly201 for
// a 201 without its body) and whether the process died by the signal.
func postAndMaybeKill(t *testing.T, kv []string, text, key string, delay time.Duration) (int64, bool) {
	cmd := cgiPost(kv, text, key)
	if delay < time.Minute {
		cmd.Stderr = nil
	}
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
	if err == io.EOF && line == "" {
		return headerOnly201, wasKilled
	}
	if err != nil || json.Unmarshal([]byte(line), &m) != nil || m.Text != text {
		return 0, wasKilled
	}
	return m.ID, wasKilled
}

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cgichat/internal/identity"
	"cgichat/internal/store"
	"cgichat/test/dbtest"
)

// runPost runs the post binary by hand, as over SSH, with the settings
// env, and returns its exit code, stdout and stderr.
func runPost(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "post"), args...)
	cmd.Env = append(env, raceEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// keyInOutput finds the moderator key post -moderator-key printed.
var keyInOutput = regexp.MustCompile(`cgmk_[A-Za-z0-9_-]{32}`)

// TestModeratorKeyCommand makes moderator keys with post -moderator-key on
// each database, as an operator does over SSH: the key is printed once,
// the database keeps only its hash, a label is used once, and the page's
// login takes the key.
func TestModeratorKeyCommand(t *testing.T) {
	for _, b := range dbtest.Backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"CHAT_DB": dbtest.New(t, b), "CHAT_WAKE_DIR": filepath.Join(t.TempDir(), "wake")}
			kv := []string{"CHAT_DB=" + env["CHAT_DB"], "CHAT_WAKE_DIR=" + env["CHAT_WAKE_DIR"]}
			code, stdout, stderr := runPost(t, kv, "-moderator-key", "alice")
			key := keyInOutput.FindString(stdout)
			if code != 0 || key == "" || stderr != "" || !strings.Contains(stdout, "DELETE FROM moderator_keys WHERE label = 'alice';") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and the key with how to revoke it", code, stdout, stderr)
			}
			tests := []struct {
				name, label, want string
			}{
				{"Label taken", "alice", "exists already"},
				{"Bad label", "alice'; --", "label"},
				{"Empty label", "", "label"},
			}
			for _, tt := range tests {
				code, stdout, stderr := runPost(t, kv, "-moderator-key", tt.label)
				if code != 1 || stdout != "" || !strings.Contains(stderr, tt.want) {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 and stderr mentioning %q", tt.name, code, stdout, stderr, tt.want)
				}
			}
			st, err := store.Open(context.Background(), env["CHAT_DB"], store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			label, err := st.ModeratorLabel(context.Background(), identity.ModeratorKeyHash(key))
			st.Close()
			if err != nil || label != "alice" {
				t.Errorf("the key's hash is labelled %q (%v), want alice", label, err)
			}

			d := startCGI(t, env)
			for _, tt := range []struct {
				key  string
				want int
			}{{key + "x", http.StatusForbidden}, {key, http.StatusOK}} {
				res, err := http.Post(d.PostURL(), "application/json", strings.NewReader(`{"action":"login","key":"`+tt.key+`"}`))
				if err != nil {
					t.Fatal(err)
				}
				var who struct{ Moderator string }
				json.NewDecoder(res.Body).Decode(&who)
				res.Body.Close()
				if res.StatusCode != tt.want || (tt.want == 200 && who.Moderator != "alice") {
					t.Errorf("login: %d as %q, want %d", res.StatusCode, who.Moderator, tt.want)
				}
			}
		})
	}
}

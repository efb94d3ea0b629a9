package hosts

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"cgichat/test/hostkit"
)

// testSettings checks that the settings deploy.sh was given reach the
// programs on h, through the settings file it writes beside them:
// CHAT_HISTORY=16 (testEnv) gives a new reader 16 messages of history, the
// stream answers in the setup's mode, and post -check, run as the
// programs' user, reports them with their source and the hosting mode.
func testSettings(t *testing.T, h *hostkit.Host, c *client) {
	room := hostkit.NewRoom("settings")
	const posts = 17
	for i := range posts {
		c.post(t, room, "ada", fmt.Sprint("hello ", i))
	}
	s := c.openStream(room, "")
	defer s.close()
	backlog, ready := untilReady(t, s, 15*time.Second)
	if len(backlog) != 16 {
		t.Errorf("a new reader got %d of %d messages of history, want 16 (CHAT_HISTORY=16 deployed)", len(backlog), posts)
	}
	mode := "live"
	if h.Setup.Batch {
		mode = "batch"
	}
	if want := `"mode":"` + mode + `"`; !strings.Contains(ready, want) {
		t.Errorf("ready: got %s, want %s", ready, want)
	}

	cmd := exec.Command(h.PostBin, "-check")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	h.User.RunAs(cmd)
	report, got := runCheck(t, cmd)
	want := map[string]string{"CHAT_HISTORY": "16 [file", "CHAT_RATE_LIMIT": "100/10s [file", "CHAT_LOG_LEVEL": "debug [file"}
	if !strings.Contains(h.DB, "://") {
		want["CHAT_DB"] = h.DB + " [file"
	}
	checkReport(t, report, got, want)
	hostMode := map[bool]string{true: "CGI", false: "FastCGI on stdin"}[h.Setup.CGI]
	if h.Setup.Daemon {
		hostMode = "FastCGI daemon"
	}
	if !strings.Contains(report, "\nhosting mode:  "+hostMode) {
		t.Errorf("post -check does not give the hosting mode as %s:\n%s", hostMode, report)
	}
}

// runCheck runs a program's -check and returns its report and the
// settings in it, as "value [source]" by name.
func runCheck(t *testing.T, cmd *exec.Cmd) (string, map[string]string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(CHAT_[A-Z0-9_]+)=(\S*)\s+(\[[^]]+\])$`).FindAllStringSubmatch(string(out), -1) {
		got[m[1]] = strings.TrimSpace(m[2] + " " + m[3])
	}
	return string(out), got
}

// checkReport fails unless each setting in want starts as want says in
// got, the settings of report.
func checkReport(t *testing.T, report string, got, want map[string]string) {
	t.Helper()
	for name, prefix := range want {
		if !strings.HasPrefix(got[name], prefix) {
			t.Errorf("-check reports %s as %q, want %q…:\n%s", name, got[name], prefix, report)
		}
	}
}

// appendFile adds text to the end of the file at path, which keeps its
// owner and mode.
func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

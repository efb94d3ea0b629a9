package hosts

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"cgichat/test/hostkit"
)

// TestSuexec deploys cgichat as a throwaway account onto Apache with
// suEXEC, as a cPanel host runs CGI, under mod_cgid and mod_fcgid, with a
// database path and a history length of its own: posts are stored, and
// the programs run as the account and create the database as it. Where
// the database went and how long the history was are logged, not
// asserted: suEXEC passes no SetEnv, so today neither --db nor
// CHAT_HISTORY reaches the programs (issue 18, whose tests assert them).
func TestSuexec(t *testing.T) {
	if err := hostkit.CanCreateAccounts(); err != nil {
		t.Skip(err)
	}
	hostkit.RequireTools(t, hostkit.ApacheBin, "/usr/bin/rsync")
	hostkit.WarmBuild(t)
	for _, name := range []string{"apache-suexec-mod_cgid", "apache-suexec-mod_fcgid"} {
		s := lookupSetup(t, name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := hostkit.NewHost(t, s)
			h.Env = []string{"CHAT_HISTORY=2"}
			h.Deploy(t)
			startTimed(t, h)
			testSuexec(t, h)
		})
	}
}

// startTimed starts h's servers and logs how long that took.
func startTimed(t *testing.T, h *hostkit.Host) {
	t.Helper()
	start := time.Now()
	h.Start(t)
	t.Logf("%s: started in %v", h.Setup.Name, time.Since(start).Round(time.Millisecond))
}

func testSuexec(t *testing.T, h *hostkit.Host) {
	a := h.Account
	c := newClient(h.URL)
	room := hostkit.NewRoom("suexec")
	const posts = 4
	for i := range posts {
		c.post(t, room, "ada", fmt.Sprint("hello ", i))
	}

	// The database the post made: at the deployed path, or at the
	// programs' default when the path did not reach them.
	var db string
	for _, path := range []string{h.DB, a.DefaultDB()} {
		if _, err := os.Stat(path); err == nil {
			db = path
			t.Logf("%s: the database is at %s (deployed with --db %s)", h.Setup.Name, path, h.DB)
		}
	}
	if db == "" {
		t.Fatalf("no database at %s (--db) or %s (the default)", h.DB, a.DefaultDB())
	}
	if err := a.Owns(db); err != nil {
		t.Errorf("suEXEC did not run post as the account: %v", err)
	}
	// The account reads it over SSH.
	out, err := a.Command("sqlite3", db, "SELECT count(*) FROM messages").CombinedOutput()
	if g, e := strings.TrimSpace(string(out)), fmt.Sprint(posts); err != nil || g != e {
		t.Errorf("sqlite3 as the account: got %q (%v), want %s messages", out, err, e)
	}

	// A new reader gets the history: CHAT_HISTORY=2 was deployed.
	s := c.openStream(room, "")
	defer s.close()
	backlog, ready := untilReady(t, s, 15*time.Second)
	t.Logf("%s: a new reader got %d of %d messages (CHAT_HISTORY=2 deployed), then ready %s", h.Setup.Name, len(backlog), posts, ready)

	// Every program process runs as the account.
	pids := append(hostkit.PIDsRunning(h.StreamBin), hostkit.PIDsRunning(h.PostBin)...)
	if h.Setup.CGI {
		pids = nil
		hostkit.WaitFor(t, nil, h.MainLog(), "the stream's CGI process", 10*time.Second, func() bool {
			if pid := h.CGIProcess(room); pid != 0 {
				pids = append(pids, pid)
			}
			return len(pids) > 0
		})
	}
	if len(pids) == 0 {
		t.Fatalf("no process runs %s or %s", h.StreamBin, h.PostBin)
	}
	var errs []error
	for _, pid := range pids {
		errs = append(errs, a.RunsAs(pid))
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("suEXEC did not run the programs as the account: %v", err)
	}
}

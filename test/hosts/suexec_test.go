package hosts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cgichat/test/hostkit"
)

// TestSuexec deploys cgichat as a throwaway account onto Apache with
// suEXEC, as a cPanel host runs CGI, under mod_cgid and under mod_fcgid
// (batch), with a database path and a history length of its own. suEXEC
// passes no SetEnv to a CGI program, so the settings reach the programs
// through the settings file deploy.sh writes beside them: the database is
// at the deployed path (not the programs' default), a new reader gets the
// deployed history, the programs run as the account and -check, run as
// the account over "SSH", reports the settings with their source.
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
			// Seven posts from one address in a few seconds: above the default
			// rate limit, which is not what this test is about.
			h.Env = []string{"CHAT_HISTORY=2", "CHAT_RATE_LIMIT=100/10s"}
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

	// The database is where it was deployed, made by the account.
	if _, err := os.Stat(h.DB); err != nil {
		t.Fatalf("no database at the deployed path (--db %s): %v", h.DB, err)
	}
	if _, err := os.Stat(a.DefaultDB()); err == nil {
		t.Errorf("a database at the programs' default %s too: the deployed path did not reach a program", a.DefaultDB())
	}
	if err := a.Owns(h.DB); err != nil {
		t.Errorf("suEXEC did not run post as the account: %v", err)
	}
	// The account reads it over SSH.
	out, err := a.Command("sqlite3", h.DB, "SELECT count(*) FROM messages").CombinedOutput()
	if g, e := strings.TrimSpace(string(out)), fmt.Sprint(posts); err != nil || g != e {
		t.Errorf("sqlite3 as the account: got %q (%v), want %s messages", out, err, e)
	}

	// A new reader gets the deployed history, in the deployed mode.
	mode := "live"
	if h.Setup.Batch {
		mode = "batch"
	}
	s := c.openStream(room, "")
	defer s.close()
	backlog, ready := untilReady(t, s, 15*time.Second)
	if len(backlog) != 2 {
		t.Errorf("a new reader got %d of %d messages, want 2 (CHAT_HISTORY=2 deployed)", len(backlog), posts)
	}
	if want := `"mode":"` + mode + `"`; !strings.Contains(ready, want) {
		t.Errorf("ready: got %s, want %s (--mode %s)", ready, want, h.Setup.Args[1])
	}

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

	// -check, run as the account over SSH, says where each setting came
	// from.
	report, got := runCheck(t, a.Command(h.PostBin, "-check"))
	checkReport(t, report, got, map[string]string{
		"CHAT_DB":          h.DB + " [file, line ",
		"CHAT_HISTORY":     "2 [file, line ",
		"CHAT_STREAM_MODE": mode + " [file, line ",
		"CHAT_POLL_MS":     "250 [default]",
	})

	// The settings file is the account's alone: the web server could not
	// serve it even without the .htaccess that refuses it.
	conf := filepath.Join(h.Docroot, "cgi-bin", "cgichat.conf")
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 || a.Owns(conf) != nil {
		t.Errorf("%s: got %v (%v), want mode 0600 and the account's", conf, fi.Mode().Perm(), err)
	}
	if resp, body := c.get(t, "/cgi-bin/cgichat.conf"); resp.StatusCode != 403 && resp.StatusCode != 404 || strings.Contains(body, "CHAT_DB") {
		t.Errorf("GET /cgi-bin/cgichat.conf: got %d %q, want 403 or 404", resp.StatusCode, body)
	}

	// A SetEnv beside the programs: under mod_cgid suEXEC drops it, and
	// the programs log that it did not reach them; under mod_fcgid it
	// arrives with each request and wins over the file.
	appendFile(t, filepath.Join(h.Docroot, "cgi-bin", ".htaccess"), "SetEnv CHAT_HISTORY 1\n")
	room = hostkit.NewRoom("setenv")
	for i := range 3 {
		c.post(t, room, "ada", fmt.Sprint("hello ", i))
	}
	s2 := c.openStream(room, "")
	defer s2.close()
	backlog, _ = untilReady(t, s2, 15*time.Second)
	want := map[bool]int{true: 2, false: 1}[h.Setup.CGI]
	if len(backlog) != want {
		t.Errorf("with SetEnv CHAT_HISTORY 1 in cgi-bin/.htaccess a new reader got %d messages, want %d", len(backlog), want)
	}
	if h.Setup.CGI {
		hostkit.WaitFor(t, nil, h.MainLog(), "the warning about SetEnv", 10*time.Second, func() bool {
			log := hostkit.Tail(h.MainLog(), 200)
			return strings.Contains(log, "did not reach it") && strings.Contains(log, "setting=CHAT_HISTORY")
		})
	}
}

package hosts

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"cgichat/test/hostkit"
)

// deploy.sh --check URL (issue 19) against real hosts, each started once
// and checked in the states that matter to it: what the check reports,
// line by line, and its exit status (1 with a problem, 0 with warnings
// only, 2 when it cannot run).

// checkPath is the PATH the check runs with: the system's tools, and no
// Go, as for someone who installed cgichat from an archive.
const checkPath = "/usr/bin:/bin"

// runOutsideCheck runs deploy.sh --check url from the source copy, without Go,
// and returns its output and exit status.
func runOutsideCheck(t *testing.T, url string, path string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(hostkit.SourceDir(t), "deploy.sh"), "--check", url)
	cmd.Env = []string{"PATH=" + path, "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir()}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("deploy.sh --check %s: %v\n%s", url, err, out)
	}
	t.Logf("deploy.sh --check %s: exit %d after %v\n%s", url, code, time.Since(start).Round(time.Millisecond), out)
	return string(out), code
}

// wantCheck fails unless the check's output has each of lines (a verdict
// and the start of its text, or any text) and ended with status.
func wantCheck(t *testing.T, out string, code, status int, lines ...string) {
	t.Helper()
	if code != status {
		t.Errorf("exit status %d, want %d", code, status)
	}
	for _, l := range lines {
		if !strings.Contains(out, l) {
			t.Errorf("the report lacks %q", l)
		}
	}
}

// checkRoom is the room the check said it posts into.
var checkRoom = regexp.MustCompile(`a test message goes to room (cgichat-check-[0-9a-f]{8}), nick (cgichat-check-[0-9a-f]{8})`)

func TestCheck(t *testing.T) {
	t.Parallel()
	hostkit.RequireTools(t, hostkit.ApacheBin, hostkit.NginxBin, hostkit.ModSecurityModule, hostkit.ModSecurityConf, hostkit.ModSecurityCRSLoad, "/usr/bin/sqlite3", "/usr/bin/curl")
	for _, dir := range filepath.SplitList(checkPath) {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			t.Fatalf("%s holds go: the check would not run without Go here", dir)
		}
	}
	hostkit.WarmBuild(t)
	t.Run("tools and arguments", testCheckTools)
	t.Run("a hostile host", testCheckHostile)
	t.Run("buffering, batch, a database left downloadable", func(t *testing.T) {
		t.Parallel()
		testCheckFcgid(t)
	})
	t.Run("ModSecurity", func(t *testing.T) {
		t.Parallel()
		testCheckModSecurity(t)
	})
	t.Run("no Options in .htaccess", func(t *testing.T) {
		t.Parallel()
		h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_cgid-no-options"))
		h.Deploy(t)
		startTimed(t, h)
		out, code := runOutsideCheck(t, h.URL+"/", checkPath)
		wantCheck(t, out, code, 1,
			"ok       the page and its ",
			"problem  cgi-bin/post: the web host did not run the program (HTTP 500, its own page)",
			"problem  the stream (cgi-bin/stream): the same answer as cgi-bin/post (HTTP 500)",
			"Options not allowed here",
			"#500-internal-server-error",
			"ok       nothing private is served",
		)
	})
	t.Run("nginx, the daemons stopped", func(t *testing.T) {
		t.Parallel()
		h := hostkit.NewHost(t, lookupSetup(t, "nginx-daemon"))
		h.Deploy(t)
		startTimed(t, h)
		for _, p := range h.Procs() {
			if strings.HasPrefix(p.Name, "cgichat@") {
				p.Stop()
			}
		}
		out, code := runOutsideCheck(t, h.URL+"/", checkPath)
		wantCheck(t, out, code, 1,
			"ok       the page and its ",
			"problem  cgi-bin/post: the chat's programs are not answering (HTTP 502 from the web server)",
			"problem  the stream (cgi-bin/stream): the same answer as cgi-bin/post (HTTP 502)",
			"systemctl status cgichat@post cgichat@stream",
			"#502-bad-gateway-503-504",
		)
	})
}

// testCheckTools: the check says what it needs and what it was given, and
// runs nothing else of deploy.sh.
func testCheckTools(t *testing.T) {
	t.Parallel()
	// Every tool of checkPath but curl.
	bin := t.TempDir()
	for _, dir := range filepath.SplitList(checkPath) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "curl" {
				os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(bin, e.Name()))
			}
		}
	}
	out, code := runOutsideCheck(t, "http://127.0.0.1:9/", bin)
	wantCheck(t, out, code, 2, "deploy: --check needs curl, which this machine lacks")

	out, code = runOutsideCheck(t, "127.0.0.1/chat/", checkPath)
	wantCheck(t, out, code, 2, "beginning with https:// or http://")

	// Nothing answers on the discard port.
	out, code = runOutsideCheck(t, "http://127.0.0.1:9/chat/", checkPath)
	wantCheck(t, out, code, 1, "problem  the page: no answer (", "#no-answer-at-all")
}

// testCheckHostile checks a host that answers as an attacker would: a page
// naming files with glob characters, which must reach the host as they
// are and never as the names of the files where the check runs; answers
// with terminal escape sequences and other control characters in the
// fields the report prints, which must reach the terminal without them.
func testCheckHostile(t *testing.T) {
	t.Parallel()
	const hostile = "1.0\x1b]0;owned\x07\x1b[2J\r\u009b31m"
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case "/":
			io.WriteString(w, `<html><script type="module" src="chat.js"></script><link href="*" rel="x"><img src="../*"></html>`)
		case "/chat.js":
			w.Header().Set("Content-Type", "text/javascript")
			io.WriteString(w, `export {};`)
		case "/cgi-bin/post":
			w.Header().Set("Content-Type", "application/json")
			var body struct{ Action string }
			json.NewDecoder(r.Body).Decode(&body)
			if body.Action == "about" {
				io.WriteString(w, `{"program":"post","version":"`+hostile+`","hosting":"cgi","streamMode":"live","maxStreams":8,"history":50,"database":"sqlite","settings":[{"name":"CHAT_LOG_LEVEL","value":"*","from":"file"}]}`)
				return
			}
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":"`+hostile+`"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	out, _ := runOutsideCheck(t, srv.URL+"/", checkPath)
	if i := strings.IndexFunc(out, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }); i >= 0 {
		t.Errorf("the report holds the control character %q at %d: a host's answer reaches the terminal with its escapes", out[i:min(i+8, len(out))], i)
	}
	wantCheck(t, out, 1, 1, "cgichat 1.0]0;owned[2J31m as CGI", "CHAT_LOG_LEVEL=* (cgichat.conf)")
	// The files of the check's working directory and of the one above.
	here, err := os.ReadDir(".")
	above, err2 := os.ReadDir("..")
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	here = append(here, above...)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range asked {
		for _, e := range here {
			if strings.HasSuffix(p, "/"+e.Name()) {
				t.Errorf("the check asked the host for %s: a * in the host's page became the name of a file where the check ran", p)
			}
		}
	}
	if !slices.Contains(asked, "/*") {
		t.Errorf("the check did not ask for /* as the page names it; it asked for %q", asked)
	}
}

// testCheckFcgid deploys into a folder of the docroot (as into
// public_html/chat) behind mod_fcgid with its default buffer: first with a
// live stream, which the host holds back; then in batch mode, mod_fcgid's
// default, which works, leaving the rooms people use as they were; then
// with a copy of the database where deploy.sh's former default put it,
// beside the chat's folder, which the host serves.
func testCheckFcgid(t *testing.T) {
	h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_fcgid"))
	docroot := h.Docroot
	chat := filepath.Join(docroot, "chat")
	hostkit.MustMkdir(t, docroot, 0o755)
	deploy := func(extra ...string) {
		t.Helper()
		// Host.Deploy installs into h.Docroot; the server serves the
		// parent.
		h.Docroot = chat
		defer func() { h.Docroot = docroot }()
		h.Deploy(t, extra...)
	}
	deploy("--stream-mode", "live")
	startTimed(t, h)
	page := h.URL + "/chat/"

	t.Run("held back", func(t *testing.T) {
		out, code := runOutsideCheck(t, page, checkPath)
		wantCheck(t, out, code, 1,
			"ok       the programs answer: cgichat (devel) as FastCGI on stdin (mod_fcgid); stream live",
			"ok       a post is stored: message ",
			"problem  the stream is held back: a live stream sent nothing within 8 s",
			"deploy with --stream-mode batch",
			"FcgidOutputBufferSize 0",
			"batch mode works here: the test message came at once with ?mode=batch",
			"#the-stream-is-held-back",
		)
	})

	// A person's message in the room people use, which the check must leave
	// alone.
	c := newClient(h.URL + "/chat")
	person, _ := c.post(t, "lobby", "ada", "hello, anyone here?")
	deploy()
	t.Run("batch", func(t *testing.T) {
		out, code := runOutsideCheck(t, page, checkPath)
		wantCheck(t, out, code, 0,
			"ok       the page and its ",
			"ok       the programs answer: cgichat (devel) as FastCGI on stdin (mod_fcgid); stream batch, budget 8 streams, history 50, database sqlite",
			"CHAT_STREAM_MODE=batch (cgichat.conf)",
			"ok       the stream works in batch mode",
			"ok       text that looks like code is not refused by a firewall (2 samples",
			"ok       the check deleted its 3 test messages again",
			"ok       nothing private is served",
			"ok       the programs' headers arrive",
			"0 problem(s), 0 warning(s)",
		)
		m := checkRoom.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the report names no room and nick of the check's")
		}
		// Every row the checks left (this one's, and the first one's) is a
		// tombstone in the room named as its nick; this check's room holds
		// the tombstones of its three messages. The person's message is
		// untouched.
		rows := sqliteRows(t, h, "SELECT room || ' ' || nick || ' ' || kind FROM messages ORDER BY id")
		mine, others := 0, 0
		for _, r := range rows {
			f := strings.Fields(r)
			switch {
			case len(f) != 3:
				t.Errorf("row %q", r)
			case strings.HasPrefix(f[1], "cgichat-check-"):
				if f[0] != f[1] || f[2] != "delete" {
					t.Errorf("the check left %q, want only tombstones in the room named as its nick", r)
				}
				if f[0] == m[1] {
					mine++
				}
			case r != "lobby ada message":
				t.Errorf("row %q, want only the person's message besides the check's", r)
			default:
				others++
			}
		}
		if mine != 3 || others != 1 {
			t.Errorf("%d tombstones in room %s and %d messages of people, want 3 and the person's 1 (id %d):\n%s",
				mine, m[1], others, person.ID, strings.Join(rows, "\n"))
		}
	})

	t.Run("database downloadable", func(t *testing.T) {
		// A careless copy where deploy.sh's former default put the
		// database: beside the chat's folder, which the host serves.
		leaked := filepath.Join(docroot, "cgichat-data", "chat.db")
		hostkit.MustMkdir(t, filepath.Dir(leaked), 0o755)
		b, err := os.ReadFile(h.DB)
		if err != nil {
			t.Fatal(err)
		}
		hostkit.MustWrite(t, leaked, string(b), 0o644)
		out, code := runOutsideCheck(t, page, checkPath)
		wantCheck(t, out, code, 1,
			"problem  anyone can download what must stay private:",
			"         "+h.URL+"/cgichat-data/chat.db\n",
			"move it out of every served folder",
			"#the-database-or-the-settings-can-be-downloaded",
		)
		if strings.Contains(out, h.URL+"/chat/cgichat-data/chat.db\n") {
			t.Errorf("the report names the chat folder's cgichat-data, which holds nothing")
		}
	})
}

// testCheckModSecurity: behind ModSecurity with the OWASP CRS the check
// reports the firewall's refusal of code-like text as a warning (the chat
// works; only such messages are refused, and the page tells their
// writers), and with the rule exclusion docs/troubleshooting.md gives
// admins the same check passes without it.
func testCheckModSecurity(t *testing.T) {
	h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_cgid-modsecurity"))
	h.Deploy(t)
	startTimed(t, h)
	out, code := runOutsideCheck(t, h.URL+"/", checkPath)
	wantCheck(t, out, code, 0,
		"ok       the programs answer: cgichat (devel) as CGI; stream live",
		"ok       the stream delivers live",
		`warning  the web host's firewall refuses messages that look like code or commands (its own 403 page for "the <script> tag is how you add js", "run cat /etc/passwd to see users")`,
		"cPanel: Security › ModSecurity",
		"#a-firewall-refuses-messages",
		"ok       the check deleted its test message again",
		"ok       nothing private is served",
		"0 problem(s), 1 warning(s)",
	)
	denials := hostkit.ModSecurityDenials(h)
	if len(denials) < 2 {
		t.Errorf("ModSecurity logged %d denials, want the check's two samples at least", len(denials))
	}
	// Which rules refused them, for docs/troubleshooting.md.
	for _, d := range denials {
		t.Logf("ModSecurity: %s", regexp.MustCompile(`\[(id|uri|msg|data) "[^"]*"\]`).FindAllString(d, -1))
	}
	if b, err := os.ReadFile(hostkit.ModSecurityAuditLog(h)); err == nil {
		ids := regexp.MustCompile(`\[id "(\d+)"\]`).FindAllStringSubmatch(string(b), -1)
		seen := map[string]bool{}
		for _, m := range ids {
			seen[m[1]] = true
		}
		t.Logf("rules matched in the audit log: %v", seen)
	}

	// The exclusion for admins, from the troubleshooting guide.
	h.Stop()
	h.ApacheConf = modSecurityExclusion(t)
	startTimed(t, h)
	out, code = runOutsideCheck(t, h.URL+"/", checkPath)
	wantCheck(t, out, code, 0,
		"ok       text that looks like code is not refused by a firewall (2 samples",
		"ok       the check deleted its 3 test messages again",
		"0 problem(s), 0 warning(s)",
	)
}

// modSecurityExclusion returns the rule exclusion docs/troubleshooting.md
// gives admins, the block between its markers.
func modSecurityExclusion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(hostkit.SourceDir(t), "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```apache\n(# cgichat: ModSecurity.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/troubleshooting.md has no ```apache block starting with '# cgichat: ModSecurity'")
	}
	return "\n" + string(m[1])
}

// sqliteRows runs a query on h's database with the sqlite3 shell, as the
// programs' user (the account's, on a host of accounts; so that no file of
// another user is left beside it), and returns its lines.
func sqliteRows(t *testing.T, h *hostkit.Host, query string) []string {
	t.Helper()
	cmd := exec.Command("sqlite3", h.DB, query)
	if h.Account != nil {
		cmd = h.Account.Command("sqlite3", h.DB, query)
	} else {
		h.User.RunAs(cmd)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", query, err, out)
	}
	if len(out) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

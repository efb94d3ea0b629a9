package hosts

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cgichat/test/hostkit"
)

// TestDeployDataDirDefaults checks where deploy.sh puts the database of a
// local TARGET when --db is not given: outside every served tree, first in
// the home of the user the programs run as, then beside TARGET, then (as
// root) in /var/lib/cgichat, never below a directory named like a document
// root. The runs are dry: the decision is what is under test, and one of
// them is the machine's /var/lib.
func TestDeployDataDirDefaults(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// No default is left when neither the home nor TARGET's parent will do:
	// root gets the system's place, anyone else a refusal.
	const system = "/var/lib/cgichat"
	tests := []struct {
		name   string
		home   string // the programs' user's home below the test's directory; "" for none
		target string // TARGET below the test's directory
		want   string // the data directory, below the test's directory unless absolute
		why    string
	}{
		{"PlainDirectory", "", "site/chat", "site/cgichat-data", "beside TARGET, in "},
		{"OnlyLikeADocrootName", "", "webapps/chat", "webapps/cgichat-data", "beside TARGET, in "},
		{"HomeFirst", "home", "site/chat", "home/cgichat-data", "the home of " + me.Username + ", who runs the programs"},
		{"UnderPublicHTML", "home", "home/public_html/chat", "home/cgichat-data", "the home of "},
		{"PublicHTMLItself", "home", "home/public_html", "home/cgichat-data", "the home of "},
		{"UnderPublicHTMLWithoutHome", "", "home/public_html/chat", system, "TARGET's parent "},
		{"UnderWWW", "", "www/chat", system, "is named like a document root, so it may be served"},
		{"DeepUnderHtdocs", "", "htdocs/sites/chat", system, "named like a document root, so it may be served"},
		// Arch Linux's Apache and nginx serve /srv/http; Laravel, Symfony
		// and Rails apps their public/.
		{"UnderArchSrvHTTP", "", "srv/http/chat", system, "named like a document root, so it may be served"},
		{"UnderAnAppsPublic", "", "app/public/chat", system, "named like a document root, so it may be served"},
		// As www-data's home is /var/www on Debian.
		{"HomeServed", "srv/www", "srv/www/html/chat", system, "home "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			home := filepath.Join(base, "no-home")
			if tt.home != "" {
				home = filepath.Join(base, tt.home)
				hostkit.MustMkdir(t, home, 0o755)
			}
			target := filepath.Join(base, tt.target)
			hostkit.MustMkdir(t, filepath.Dir(target), 0o755)
			out, err := hostkit.RunDeploy(t, []string{"HOME=" + home}, "--dry-run", "--web-user", me.Username, target)
			want := tt.want
			if !filepath.IsAbs(want) {
				want = filepath.Join(base, want)
			}
			if want == system && os.Geteuid() != 0 {
				if err == nil {
					t.Fatalf("deploy.sh found a place for the database, want a refusal asking for --db:\n%s", out)
				}
				if w := "found no place for the database outside the served tree: "; !strings.Contains(out, w) || !strings.Contains(out, "Choose one with --db") {
					t.Errorf("the refusal does not say %q and ask for --db:\n%s", w, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("deploy.sh: %v\n%s", err, out)
			}
			line := regexp.MustCompile(`(?m)^deploy: database: .*$`).FindString(out)
			if wantLine := "deploy: database: " + want + "/chat.db ("; !strings.HasPrefix(line, wantLine) || !strings.Contains(line, tt.why) {
				t.Errorf("got %q\nwant a line starting %q that says %q", line, wantLine, tt.why)
			}
			if w := "install -d -m 0750 "; !strings.Contains(out, w) || !strings.Contains(out, " "+want+"\n") {
				t.Errorf("the dry run does not say it would make %s:\n%s", want, out)
			}
			if w := "would install " + filepath.Join(filepath.Dir(want), "cgichat-conf") + "/"; !strings.Contains(out, w) {
				t.Errorf("the samples do not go beside the data directory (%q):\n%s", w, out)
			}
		})
	}
}

// TestDeployDatabaseServed checks a --db the operator chose inside a tree
// that may be served: a warning in words, and the deny-all .htaccess in
// its directory, written again when it has gone.
func TestDeployDatabaseServed(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	base := t.TempDir()
	docroot := filepath.Join(base, "www", "chat")
	hostkit.MustMkdir(t, filepath.Dir(docroot), 0o755)
	data := filepath.Join(base, "www", "data")
	args := []string{"--web-user", hostkit.ServerUser(t).Name, "--db", data + "/chat.db", docroot}
	htaccess := filepath.Join(data, ".htaccess")
	for _, run := range []string{"first", "after the .htaccess went"} {
		out, err := deployIn(t, base, args...)
		if err != nil {
			t.Fatalf("deploy.sh, %s: %v\n%s", run, err, out)
		}
		for _, want := range []string{
			"warning: the database's directory " + data + " is in " + filepath.Join(base, "www") + ", named like a document root, so it may be served",
			"which nginx, lighttpd, Caddy and Apache with AllowOverride None do not read",
			"write " + htaccess + " (Require all denied)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("deploy.sh, %s, does not say %q:\n%s", run, want, out)
			}
		}
		if text := readFile(t, htaccess); !strings.Contains(text, "\nRequire all denied\n") {
			t.Errorf("%s, %s:\n%s", htaccess, run, text)
		}
		if err := os.Remove(htaccess); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeployMovesNoDatabase takes a deployment whose database sits where
// deploy.sh used to put it, beside TARGET inside public_html: deploy.sh
// refuses to go on without --db, changing nothing, and says how to move
// the database; its steps, run as written, move the chat with its history.
// While both copies are there, it refuses again, without a copy step.
func TestDeployMovesNoDatabase(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	hostkit.RequireTools(t, "/usr/bin/sqlite3")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	home := filepath.Join(base, "home")
	docroot := filepath.Join(home, "public_html", "chat")
	hostkit.MustMkdir(t, filepath.Dir(docroot), 0o755)
	old := filepath.Join(home, "public_html", "cgichat-data", "chat.db")
	env := []string{"HOME=" + home}
	deploy := func(args ...string) (string, error) {
		return hostkit.RunDeploy(t, env, append(append([]string{"--web-user", me.Username}, args...), docroot)...)
	}
	post := func(db, nick, text string) string {
		got, stderr := postCGI(t, exec.Command(filepath.Join(docroot, "cgi-bin", "post")), []string{"CHAT_DB=" + db}, nick, text)
		if !strings.HasPrefix(got, "Status: 201") {
			t.Fatalf("post: got %q, want a 201\n%s", got, stderr)
		}
		return got
	}

	// The former default, as an earlier deploy.sh made it.
	if out, err := deploy("--db", old); err != nil {
		t.Fatalf("deploy.sh --db %s: %v\n%s", old, err, out)
	}
	post(old, "ada", "before the move")
	before := snapshot(t, base)
	out, err := deploy()
	if err == nil {
		t.Fatalf("deploy.sh went on with a database in public_html:\n%s", out)
	}
	compareSnapshots(t, "the refused deployment", before, snapshot(t, base))
	newDB := filepath.Join(home, "cgichat-data", "chat.db")
	for _, want := range []string{
		"an earlier deployment put the database at " + old + ", which is in " + filepath.Join(home, "public_html") + ", named like a document root",
		"deploy.sh never moves a database; to move it:",
		`sqlite3 ` + old + ` ".backup ` + newDB + `"`,
		"./deploy.sh --db " + newDB + " [your other options] " + docroot,
		"Or keep it there, knowingly: ./deploy.sh --db " + old,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}

	// The steps, as written.
	advice := out
	step := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(advice)
		if m == nil {
			t.Fatalf("no step matching %q in:\n%s", re, advice)
		}
		return m[1]
	}
	shell := func(command string) {
		if b, err := exec.Command("sh", "-c", command).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", command, err, b)
		}
	}
	shell(step(`(?m)1\. stop the chat: (.*)$`))
	if _, err := os.Stat(filepath.Join(docroot, "cgi-bin", "post")); err == nil {
		t.Errorf("the chat is not stopped: cgi-bin/post is still there")
	}
	shell(step(`(?m)2\. copy the database.*\n\s+(.*)$`))
	out, err = deploy("--db", step(`(?m)3\. deploy onto the copy.*\n\s+\./deploy\.sh --db (\S+) `))
	if err != nil {
		t.Fatalf("deploy.sh onto the copy: %v\n%s", err, out)
	}
	if want := "note: an earlier deployment's database is still at " + old + ", and this one does not use it"; !strings.Contains(out, want) {
		t.Errorf("deploy.sh onto the copy does not say %q:\n%s", want, out)
	}
	if got := post(newDB, "bob", "after the move"); !strings.Contains(got, `"id":2,`) {
		t.Errorf("the first post after the move got %q, want id 2: the history did not move", got)
	}
	// Both databases there: without --db, deploy.sh cannot tell which
	// one is in use, and a second copy would overwrite the new posts.
	before = snapshot(t, base)
	out, err = deploy()
	if want := "there are two databases, " + old; err == nil || !strings.Contains(out, want) || strings.Contains(out, ".backup") {
		t.Errorf("deploy.sh without --db while both databases are there: %v, want a refusal saying %q and no copy step:\n%s", err, want, out)
	}
	compareSnapshots(t, "the refused deployment", before, snapshot(t, base))
	shell(step(`(?m)4\. once the chat shows its history: (.*)$`))
	for _, gone := range []string{filepath.Dir(old), filepath.Join(docroot, "cgi-bin.stopped")} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("%s is still there after step 4", gone)
		}
	}
	out, err = deploy("--db", newDB)
	if err != nil || !strings.Contains(out, "nothing to change") || strings.Contains(out, "note:") {
		t.Errorf("deploying again after the move: %v, want nothing to change and no note:\n%s", err, out)
	}
}

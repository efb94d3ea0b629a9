package hosts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cgichat/test/hostkit"
)

// The release the tests build: a tag on a commit of the checkout as it
// is, made at a fixed time.
const (
	releaseTag    = "v0.0.0-test"
	releaseCommit = 1735787045 // 2025-01-02 03:04:05 UTC
)

// packageTimeout bounds one deploy.sh --package: two static builds, cold
// when the build cache has none of them yet.
const packageTimeout = 15 * time.Minute

// TestRelease builds the release archives with deploy.sh --package twice,
// from one tagged commit in two checkouts at different paths, and requires
// the same bytes; reads them with GNU tar and unzip; then installs the
// amd64 archive as INSTALL.txt tells a person with an FTP client (plain
// file copies, the permissions it lists, the edit it asks for when the
// page says so) under Apache mod_cgid, where the programs run as the web
// server's user, and under suEXEC, where they run as the account; and with
// the archive's own deploy.sh --from, without Go.
func TestRelease(t *testing.T) {
	t.Parallel()
	hostkit.RequireTools(t, hostkit.ApacheBin, "/usr/bin/git", "/usr/bin/unzip", "/usr/bin/sqlite3",
		"/usr/bin/aarch64-linux-gnu-gcc")
	hostkit.WarmBuild(t)
	base := t.TempDir()
	hostkit.Reachable(t, base)

	first := filepath.Join(base, "first")
	commitCheckout(t, first)
	second := filepath.Join(base, "elsewhere", "second")
	git(t, base, "clone", "-q", first, second)
	dist := filepath.Join(base, "dist")
	for i, src := range []string{first, second} {
		out := dist
		if i == 1 {
			out = filepath.Join(base, "dist2")
		}
		began := time.Now()
		if got, err := runScript(t, filepath.Join(src, "deploy.sh"), nil, "--package", out); err != nil {
			t.Fatalf("deploy.sh --package in %s: %v\n%s", src, err, got)
		}
		t.Logf("deploy.sh --package in %s took %v", src, time.Since(began).Round(time.Second))
	}
	names := releaseFiles(t, dist)
	for _, name := range names {
		a, b := readFile(t, filepath.Join(dist, name)), readFile(t, filepath.Join(base, "dist2", name))
		if a != b {
			t.Errorf("%s differs between the two builds of one commit", name)
		}
		if fi, err := os.Stat(filepath.Join(dist, name)); err == nil {
			t.Logf("%s: %d bytes", name, fi.Size())
		}
	}

	tree := unpackRelease(t, dist, runtime.GOARCH)
	t.Run("Contents", func(t *testing.T) { testReleaseContents(t, dist, tree) })
	t.Run("Dirty", func(t *testing.T) { testReleaseDirty(t, base, second) })
	t.Run("FTP", func(t *testing.T) {
		t.Parallel()
		testFTPInstall(t, tree)
	})
	t.Run("FTPSuexec", func(t *testing.T) {
		t.Parallel()
		testFTPSuexec(t, tree)
	})
	t.Run("From", func(t *testing.T) {
		t.Parallel()
		testFrom(t, dist, tree)
	})
	t.Run("Refuses", func(t *testing.T) {
		t.Parallel()
		testReleaseRefuses(t, dist)
	})
}

// commitCheckout makes dir a git repository holding the checkout as it is
// (from hostkit's copy), committed at releaseCommit and tagged releaseTag.
func commitCheckout(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", hostkit.SourceDir(t), dir).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	// A worktree's .git is a file naming the checkout's repository, which
	// hostkit's copy keeps: the release's must be a repository of its own.
	if err := os.RemoveAll(filepath.Join(dir, ".git")); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q")
	if g, e := strings.TrimSpace(git(t, dir, "rev-parse", "--absolute-git-dir")), filepath.Join(dir, ".git"); g != e {
		t.Fatalf("git in %s uses the repository %s, want %s", dir, g, e)
	}
	git(t, dir, "add", "-A")
	git(t, dir, "-c", "user.name=cgichat tests", "-c", "user.email=tests@example.org", "commit", "-q", "-m", "release")
	git(t, dir, "tag", releaseTag)
}

// git runs git in dir, away from the caller's configuration, with the
// commit time releaseCommit.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	date := fmt.Sprintf("@%d +0000", releaseCommit)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runScript runs a deploy.sh with args and extra environment, returning
// its combined output.
func runScript(t *testing.T, script string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), packageTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// releaseName returns the name of the archive for arch.
func releaseName(arch string) string { return "cgichat-" + releaseTag + "-linux-" + arch }

// releaseFiles checks that dist holds the archives of both architectures
// in both formats and a SHA256SUMS that lists each with its hash, and
// nothing else; it returns their names.
func releaseFiles(t *testing.T, dist string) []string {
	t.Helper()
	var want []string
	for _, arch := range []string{"amd64", "arm64"} {
		want = append(want, releaseName(arch)+".tar.gz", releaseName(arch)+".zip")
	}
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if e := append(slices.Clone(want), "SHA256SUMS"); !slices.Equal(got, slices.Sorted(slices.Values(e))) {
		t.Fatalf("%s holds %v, want %v", dist, got, e)
	}
	var sums strings.Builder
	for _, name := range want {
		sum := sha256.Sum256([]byte(readFile(t, filepath.Join(dist, name))))
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
	}
	if g, e := readFile(t, filepath.Join(dist, "SHA256SUMS")), sums.String(); g != e {
		t.Errorf("SHA256SUMS:\n%s\nwant\n%s", g, e)
	}
	return append(want, "SHA256SUMS")
}

// unpackRelease unpacks the .tar.gz for arch with GNU tar, as a person
// does, and returns the tree it holds.
func unpackRelease(t *testing.T, dist, arch string) string {
	t.Helper()
	dir := t.TempDir()
	hostkit.Reachable(t, dir)
	if out, err := exec.Command("tar", "-xzf", filepath.Join(dist, releaseName(arch)+".tar.gz"), "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, out)
	}
	return filepath.Join(dir, releaseName(arch))
}

// testReleaseContents checks what the archives hold, as tar and unzip
// list and unpack them.
func testReleaseContents(t *testing.T, dist, tree string) {
	// Every entry owned by 0:0 and dated at the commit.
	for _, arch := range []string{"amd64", "arm64"} {
		cmd := exec.Command("tar", "--numeric-owner", "--full-time", "-tvzf", filepath.Join(dist, releaseName(arch)+".tar.gz"))
		cmd.Env = append(os.Environ(), "TZ=UTC")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tvzf: %v\n%s", err, out)
		}
		when := time.Unix(releaseCommit, 0).UTC().Format("2006-01-02 15:04:05")
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) != 6 || f[1] != "0/0" || f[3]+" "+f[4] != when || !strings.HasPrefix(f[5], releaseName(arch)+"/") {
				t.Errorf("%s: %q, want owner 0/0, time %s, a path in %s/", arch, line, when, releaseName(arch))
			}
		}
	}

	// The programs, static, for their architecture; the page as public/
	// has it.
	checkStatic(t, filepath.Join(tree, "chat", "cgi-bin", "post"), runtime.GOARCH)
	checkStatic(t, filepath.Join(tree, "chat", "cgi-bin", "stream"), runtime.GOARCH)
	checkServerDrivers(t, filepath.Join(tree, "chat", "cgi-bin", "post"), false)
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	checkStatic(t, filepath.Join(unpackRelease(t, dist, other), "chat", "cgi-bin", "post"), other)
	checkPage(t, filepath.Join(tree, "chat"))
	for _, p := range []string{"chat/.htaccess", "chat/cgi-bin/.htaccess", "cgichat-data/.htaccess", "deploy.sh", "INSTALL.txt"} {
		if _, err := os.Stat(filepath.Join(tree, p)); err != nil {
			t.Errorf("the archive lacks %s: %v", p, err)
		}
	}

	// The zip holds the same files, with the same executables.
	zipped := t.TempDir()
	if out, err := exec.Command("unzip", "-q", filepath.Join(dist, releaseName(runtime.GOARCH)+".zip"), "-d", zipped).CombinedOutput(); err != nil {
		t.Fatalf("unzip: %v\n%s", err, out)
	}
	if g, e := treeSums(t, filepath.Join(zipped, releaseName(runtime.GOARCH))), treeSums(t, tree); !slices.Equal(g, e) {
		t.Errorf("the zip holds\n%s\nthe tar.gz\n%s", strings.Join(g, "\n"), strings.Join(e, "\n"))
	}

	// INSTALL.txt: which machine, where to upload, in which mode, which
	// permissions, what to edit when, how to check.
	install := readFile(t, filepath.Join(tree, "INSTALL.txt"))
	if m := regexp.MustCompile(`@[A-Z_]+@`).FindString(install); m != "" {
		t.Errorf("INSTALL.txt still holds the placeholder %s", m)
	}
	for _, want := range []string{
		"cgichat " + releaseTag + " for linux/" + runtime.GOARCH, "Raspberry Pi", "x86_64", "aarch64",
		"public_html/", "never inside public_html/", "binary mode", ".htaccess", "755",
		"The chat's database cannot be opened", "777", releaseDBLine, "suEXEC",
		"./deploy.sh --check https://YOUR-SITE/chat/", "--from " + releaseName(runtime.GOARCH) + ".tar.gz",
	} {
		if !strings.Contains(install, want) {
			t.Errorf("INSTALL.txt does not say %q:\n%s", want, install)
		}
	}
	for i, line := range strings.Split(install, "\n") {
		if len([]rune(line)) > 80 && !strings.Contains(line, "--from") {
			t.Errorf("INSTALL.txt line %d is %d characters long, want at most 80: %q", i+1, len([]rune(line)), line)
		}
	}

	// The settings file: every setting commented out, and loading as the
	// defaults, with the database in the home of the user the programs
	// run as.
	conf := readFile(t, filepath.Join(tree, "chat", "cgi-bin", "cgichat.conf"))
	if m := regexp.MustCompile(`(?m)^\s*CHAT_`).FindString(conf); m != "" {
		t.Errorf("the archive's cgichat.conf sets a setting:\n%s", conf)
	}
	if g := strings.Count(conf, "\n"+releaseDBLine+"\n"); g != 1 {
		t.Errorf("the archive's cgichat.conf holds %q %d times, want once:\n%s", releaseDBLine, g, conf)
	}
	home := t.TempDir()
	check := exec.Command(filepath.Join(tree, "chat", "cgi-bin", "post"), "-check")
	check.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	report, got := runCheck(t, check)
	checkReport(t, report, got, map[string]string{
		"CHAT_DB":          filepath.Join(home, "cgichat-data", "chat.db") + " [default]",
		"CHAT_STREAM_MODE": "live [default]",
		"CHAT_MAX_STREAMS": "8 [default]",
	})
	if !strings.Contains(report, "settings file: "+filepath.Join(tree, "chat", "cgi-bin", "cgichat.conf")) ||
		!strings.Contains(report, "SetHandler cgi-script") {
		t.Errorf("post -check in the archive's tree does not report its settings file and CGI:\n%s", report)
	}
}

// releaseDBLine is the line of the archive's settings file that INSTALL.txt
// tells people to edit when the programs do not run as their account.
const releaseDBLine = "# CHAT_DB=/home/YOUR-ACCOUNT/cgichat-data/chat.db"

// treeSums lists every file under root with its SHA-256 and whether it is
// executable, and every directory.
func treeSums(t *testing.T, root string) []string {
	t.Helper()
	var list []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			list = append(list, rel+"/")
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(readFile(t, p)))
		list = append(list, fmt.Sprintf("%s %s executable=%v", rel, hex.EncodeToString(sum[:8]), fi.Mode()&0o111 != 0))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// testReleaseDirty checks that a checkout with a change says so in the
// version: it stops at the missing C compiler, after naming the version.
func testReleaseDirty(t *testing.T, base, src string) {
	appendFile(t, filepath.Join(src, "README.md"), "A change.\n")
	bin := toolDir(t, filepath.Join(t.TempDir(), "bin"), "bash", "dirname", "go", "git", "mkdir", "mktemp")
	out, err := runScript(t, filepath.Join(src, "deploy.sh"), []string{"PATH=" + bin}, "--package", filepath.Join(base, "dist-dirty"))
	if err == nil {
		t.Fatalf("deploy.sh --package without a C compiler succeeded:\n%s", out)
	}
	for _, want := range []string{"packaging cgichat " + releaseTag + "-dirty,", "no C compiler ('gcc')"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy.sh --package in a changed checkout does not say %q:\n%s", want, out)
		}
	}
}

// upload copies the tree at from into to as an FTP upload does: each
// directory made 0755 and each file 0644 (an FTP server's umask 022),
// whatever the archive said, owned by uid:gid, the uploading account.
func upload(t *testing.T, from, to string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dest := filepath.Join(to, rel)
		if d.IsDir() {
			hostkit.MustMkdir(t, dest, 0o755)
		} else {
			hostkit.MustWrite(t, dest, readFile(t, p), 0o644)
		}
		return os.Lchown(dest, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// setPermissions sets the permissions INSTALL.txt's step 2 lists ("chat/x
// and chat/y   755"), on the chat uploaded to chat.
func setPermissions(t *testing.T, install, chat string) {
	t.Helper()
	lines := regexp.MustCompile(`(?m)^\s+(chat/\S*)(?: and (chat/\S*))?\s+([0-7]{3})$`).FindAllStringSubmatch(install, -1)
	if len(lines) == 0 {
		t.Fatalf("INSTALL.txt lists no permissions:\n%s", install)
	}
	for _, m := range lines {
		mode, _ := strconv.ParseUint(m[3], 8, 32)
		for _, p := range m[1:3] {
			if p == "" {
				continue
			}
			if err := os.Chmod(filepath.Join(chat, strings.TrimPrefix(p, "chat/")), fs.FileMode(mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// testFTPInstall uploads the archive's tree into a docroot and a home,
// sets the permissions INSTALL.txt lists, and serves it with Apache
// mod_cgid, which runs the programs as the web server's user, not as the
// account that uploaded them: the page loads, a post fails saying the
// database cannot be opened, and after the edit INSTALL.txt asks for then,
// a post is stored where the settings file says and the stream delivers
// it.
func testFTPInstall(t *testing.T, tree string) {
	if os.Geteuid() != 0 {
		t.Skip("the programs run as a user of the host's own (www-data) only when the test runs as root")
	}
	h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_cgid"))
	// The account that uploads is root; h.Base stands for its home.
	chat := filepath.Join(h.Docroot, "chat")
	hostkit.MustMkdir(t, h.Docroot, 0o755)
	upload(t, filepath.Join(tree, "chat"), chat, 0, 0)
	upload(t, filepath.Join(tree, "cgichat-data"), filepath.Join(h.Base, "cgichat-data"), 0, 0)
	install := readFile(t, filepath.Join(tree, "INSTALL.txt"))
	setPermissions(t, install, chat)
	h.Start(t)
	c := newClient(h.URL + "/chat")
	checkServedPage(t, c, tree)

	// www-data may not write in its own home: the page says so, from
	// what the stream answers when it asks why the stream failed.
	resp, body := c.get(t, "/cgi-bin/stream?room=lobby")
	if want := "The chat's database cannot be opened"; resp.StatusCode != 500 || !strings.Contains(body, want) {
		t.Fatalf("the stream before the edit: got %d %q, want 500 saying %q, as INSTALL.txt expects", resp.StatusCode, body, want)
	}

	// What INSTALL.txt says to do then.
	data := filepath.Join(h.Base, "cgichat-data")
	if !strings.Contains(install, "set the permissions of cgichat-data/ to 777") {
		t.Fatalf("INSTALL.txt no longer says to set cgichat-data/ to 777:\n%s", install)
	}
	if err := os.Chmod(data, 0o777); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(data, "chat.db")
	confPath := filepath.Join(chat, "cgi-bin", "cgichat.conf")
	conf := readFile(t, confPath)
	edited := strings.Replace(conf, releaseDBLine+"\n", "CHAT_DB="+db+"\n", 1)
	if edited == conf {
		t.Fatalf("cgichat.conf lacks the line INSTALL.txt says to edit, %q", releaseDBLine)
	}
	hostkit.MustWrite(t, confPath, edited, 0o644)
	testServedChat(t, h, c, db)
}

// testFTPSuexec uploads the archive's tree as a throwaway account on a
// host where suEXEC runs its programs as the account, with the
// permissions INSTALL.txt lists and nothing edited: the database is in
// the account's home, where the programs find cgichat-data/ themselves.
func testFTPSuexec(t *testing.T, tree string) {
	if err := hostkit.CanCreateAccounts(); err != nil {
		t.Skip(err)
	}
	h := hostkit.NewHost(t, lookupSetup(t, "apache-suexec-mod_cgid"))
	a := h.Account
	chat := filepath.Join(h.Docroot, "chat")
	upload(t, filepath.Join(tree, "chat"), chat, a.UID, a.GID)
	upload(t, filepath.Join(tree, "cgichat-data"), filepath.Join(a.Home, "cgichat-data"), a.UID, a.GID)
	setPermissions(t, readFile(t, filepath.Join(tree, "INSTALL.txt")), chat)
	h.Start(t)
	c := newClient(h.URL + "/chat")
	checkServedPage(t, c, tree)
	testServedChat(t, h, c, a.DefaultDB())
	if err := a.Owns(a.DefaultDB()); err != nil {
		t.Errorf("suEXEC did not run post as the account: %v", err)
	}
}

// checkServedPage loads the chat's page and checks it is the archive's.
func checkServedPage(t *testing.T, c *client, tree string) {
	t.Helper()
	resp, body := c.get(t, "/")
	if want := readFile(t, filepath.Join(tree, "chat", "index.html")); resp.StatusCode != 200 || body != want {
		t.Errorf("GET /chat/: got %d, %d bytes; want 200 and the archive's index.html", resp.StatusCode, len(body))
	}
	if resp, body := c.get(t, "/cgi-bin/cgichat.conf"); resp.StatusCode != 403 && resp.StatusCode != 404 || strings.Contains(body, "CHAT_") {
		t.Errorf("GET /chat/cgi-bin/cgichat.conf: got %d %q, want 403 or 404", resp.StatusCode, body)
	}
}

// testServedChat posts to the chat h serves through c and checks that the
// message is stored in db and that a stream delivers it, in its history
// and live.
func testServedChat(t *testing.T, h *hostkit.Host, c *client, db string) {
	t.Helper()
	room := hostkit.NewRoom("release")
	first, _ := c.post(t, room, "ada", "uploaded by FTP")
	out, err := exec.Command("sqlite3", db, "SELECT text FROM messages WHERE id = "+strconv.FormatInt(first.ID, 10)).CombinedOutput()
	if g, e := strings.TrimSpace(string(out)), first.Text; err != nil || g != e {
		t.Errorf("sqlite3 %s: got %q (%v), want %q: the post is not where the settings say", db, out, err, e)
	}
	s := c.openStream(room, "")
	defer s.close()
	if backlog, _ := untilReady(t, s, 15*time.Second); len(backlog) != 1 || backlog[0] != first {
		t.Errorf("the stream's history: got %+v, want %+v", backlog, first)
	}
	second, _ := c.post(t, room, "bob", "and read live")
	ev, ok := s.next("message", 10*time.Second)
	if !ok {
		t.Fatalf("the stream delivered no message after a post (it ended with %v); %s:\n%s", s.result(0), h.MainLog(), hostkit.Tail(h.MainLog(), 20))
	}
	if g := decode(t, ev); g != second {
		t.Errorf("the stream delivered %+v, want %+v", g, second)
	}
}

// testFrom installs the archive with its own deploy.sh --from, with no Go
// on the PATH, into a docroot that Apache mod_cgid serves: a dry run
// first, which writes nothing; then the chat works; a second run, after
// an edit of the settings file, changes nothing.
func testFrom(t *testing.T, dist, tree string) {
	h := hostkit.NewHost(t, lookupSetup(t, "apache-mod_cgid"))
	script := filepath.Join(tree, "deploy.sh")
	archive := filepath.Join(dist, releaseName(runtime.GOARCH)+".tar.gz")
	// The system's directories, without Go's (unless Debian's golang is
	// installed).
	path := "/usr/sbin:/usr/bin:/sbin:/bin"
	for _, dir := range filepath.SplitList(path) {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			t.Logf("%s/go is on the PATH of the install without Go", dir)
		}
	}
	// HOME: the database's default may be the home of the user the
	// programs run as, who is the caller when the test is not root.
	env := []string{"PATH=" + path, "HOME=" + h.Base}
	args := []string{"--from", archive, "--web-user", h.User.Name, h.Docroot}
	from := func(extra ...string) string {
		t.Helper()
		out, err := runScript(t, script, env, append(extra, args...)...)
		if err != nil {
			t.Fatalf("deploy.sh --from %s: %v\n%s", strings.Join(extra, " "), err, out)
		}
		return out
	}

	out := from("--dry-run")
	if _, err := os.Stat(h.Docroot); err == nil {
		t.Errorf("deploy.sh --from --dry-run created %s:\n%s", h.Docroot, out)
	}
	out = from()
	db := filepath.Join(h.Base, "cgichat-data", "chat.db")
	for _, want := range []string{
		"checked: " + releaseName(runtime.GOARCH) + ".tar.gz matches " + filepath.Join(dist, "SHA256SUMS"),
		"installing cgichat " + releaseTag + " for linux/" + runtime.GOARCH + " from " + releaseName(runtime.GOARCH) + ".tar.gz",
		"settings: the archive's cgi-bin/cgichat.conf, with CHAT_DB=" + db,
		"CHAT_DB=" + db + " ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy.sh --from does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "building") {
		t.Errorf("deploy.sh --from built something:\n%s", out)
	}
	for _, prog := range []string{"post", "stream"} {
		if g, e := readFile(t, filepath.Join(h.Docroot, "cgi-bin", prog)), readFile(t, filepath.Join(tree, "chat", "cgi-bin", prog)); g != e {
			t.Errorf("cgi-bin/%s is not the archive's", prog)
		}
	}
	h.Start(t)
	c := newClient(h.URL)
	testServedChat(t, h, c, db)

	// The settings file is the person's from now on.
	conf := filepath.Join(h.Docroot, "cgi-bin", "cgichat.conf")
	appendFile(t, conf, "CHAT_HISTORY=3\n")
	before := snapshot(t, h.Docroot)
	out = from()
	for _, want := range []string{"is kept as it is; its database: " + db, "nothing to change"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy.sh --from again does not say %q:\n%s", want, out)
		}
	}
	compareSnapshots(t, "deploy.sh --from again", before, snapshot(t, h.Docroot))
}

// testReleaseRefuses checks that --from refuses, before writing anything,
// an archive that does not match its SHA256SUMS, an archive for another
// machine (this one's, or a remote one's as uname -m says), the zip, and
// options it does not take; and that --package refuses a TARGET and other
// options.
func testReleaseRefuses(t *testing.T, dist string) {
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	own := releaseName(runtime.GOARCH) + ".tar.gz"
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	machine := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

	damaged := filepath.Join(base, "damaged")
	hostkit.MustMkdir(t, damaged, 0o755)
	b := []byte(readFile(t, filepath.Join(dist, own)))
	b[len(b)/2] ^= 1
	hostkit.MustWrite(t, filepath.Join(damaged, own), string(b), 0o644)
	hostkit.MustWrite(t, filepath.Join(damaged, "SHA256SUMS"), readFile(t, filepath.Join(dist, "SHA256SUMS")), 0o644)
	// The same, with SHA256SUMS as a Windows editor saves it: its lines
	// are still read.
	crlf := filepath.Join(base, "crlf")
	hostkit.MustMkdir(t, crlf, 0o755)
	hostkit.MustWrite(t, filepath.Join(crlf, own), string(b), 0o644)
	hostkit.MustWrite(t, filepath.Join(crlf, "SHA256SUMS"), strings.ReplaceAll(readFile(t, filepath.Join(dist, "SHA256SUMS")), "\n", "\r\n"), 0o644)

	tests := []struct {
		name   string
		env    []string
		args   []string
		target string
		want   string
	}{
		{"Damaged", nil, []string{"--from", filepath.Join(damaged, own)}, docroot,
			own + " is damaged or not the released file: its SHA-256 is "},
		{"DamagedWindowsSums", nil, []string{"--from", filepath.Join(crlf, own)}, docroot,
			own + " is damaged or not the released file: its SHA-256 is "},
		{"OtherArch", nil, []string{"--from", filepath.Join(dist, releaseName(other)+".tar.gz")}, docroot,
			"holds programs for linux/" + other + ", and TARGET needs linux/" + runtime.GOARCH + " (this machine's architecture, " + machine[runtime.GOARCH] + "): use " + own},
		{"RemoteArch", fakeSSH(t, base, machine[other]), []string{"--from", filepath.Join(dist, own)}, "me@example.org:" + docroot,
			"holds programs for linux/" + runtime.GOARCH + ", and TARGET needs linux/" + other + " (the architecture of me@example.org, " + machine[other] + "): use " + releaseName(other) + ".tar.gz"},
		{"Zip", nil, []string{"--from", filepath.Join(dist, releaseName(runtime.GOARCH)+".zip")}, docroot,
			"--from takes the .tar.gz archive"},
		{"Mode", nil, []string{"--from", filepath.Join(dist, own), "--mode", "fcgid"}, docroot,
			"takes only --dry-run, --db, --web-user and --arch, not --mode"},
		{"ServerDatabase", nil, []string{"--from", filepath.Join(dist, own), "--db", "mysql://chat:pw@db.example/chat"}, docroot,
			"the archives' programs have SQLite only"},
		{"PackageTarget", nil, []string{"--package", filepath.Join(base, "dist")}, docroot,
			"--package takes no TARGET (got '" + docroot + "')"},
		{"PackageOption", nil, []string{"--package", filepath.Join(base, "dist"), "--arch", "arm64"}, "",
			"--package takes no other option (got --arch)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.target != "" {
				args = append(args, tt.target)
			}
			out, err := hostkit.RunDeploy(t, append([]string{"HOME=" + base}, tt.env...), args...)
			if err == nil {
				t.Fatalf("deploy.sh %s succeeded:\n%s", strings.Join(tt.args, " "), out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("deploy.sh %s: got\n%s\nwant a message containing %q", strings.Join(tt.args, " "), out, tt.want)
			}
			if _, err := os.Stat(docroot); err == nil {
				t.Errorf("deploy.sh %s created %s", strings.Join(tt.args, " "), docroot)
			}
		})
	}
	for _, p := range []string{"cgichat-data", "dist"} {
		if _, err := os.Stat(filepath.Join(base, p)); err == nil {
			t.Errorf("a refused deploy.sh created %s", p)
		}
	}
}

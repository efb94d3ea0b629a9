package hosts

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cgichat/test/hostkit"
)

// TestDeployRemoteSSH deploys the README's own shared-host example,
// user@host:public_html/chat, over ssh to a throwaway account served by a
// real sshd on loopback. The database goes to the account's home, outside
// public_html, where the deployed post finds it through the settings file
// deploy.sh writes beside it (as under suEXEC, which drops SetEnv); a
// second deployment changes nothing.
func TestDeployRemoteSSH(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root, to create a throwaway account and run sshd (CI runs the tests as root)")
	}
	t.Parallel()
	hostkit.RequireTools(t, "/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen", "/usr/sbin/useradd",
		"/usr/sbin/userdel", "/usr/bin/rsync")
	hostkit.WarmBuild(t)
	base := t.TempDir()
	hostkit.Reachable(t, base)

	acct := newAccount(t, filepath.Join(base, "home"))
	key := filepath.Join(base, "id_ed25519")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cgichat test", "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	sshDir := filepath.Join(acct.home, ".ssh")
	hostkit.MustMkdir(t, sshDir, 0o700)
	hostkit.MustWrite(t, filepath.Join(sshDir, "authorized_keys"), string(pub), 0o600)
	publicHTML := filepath.Join(acct.home, "public_html")
	hostkit.MustMkdir(t, publicHTML, 0o755)
	acct.own(t, sshDir, filepath.Join(sshDir, "authorized_keys"), publicHTML)
	port := startSSHD(t, base, acct.name)

	host := acct.name + "@127.0.0.1"
	env := []string{"RSYNC_RSH=ssh -p " + strconv.Itoa(port) + " -i " + key +
		" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"}
	out, err := hostkit.RunDeploy(t, env, host+":public_html/chat")
	if err != nil {
		t.Fatalf("deploy.sh %s:public_html/chat: %v\n%s", host, err, out)
	}
	docroot := filepath.Join(publicHTML, "chat")
	data := filepath.Join(acct.home, "cgichat-data")
	db := filepath.Join(data, "chat.db")
	machine := strings.TrimSpace(run(t, "uname", "-m"))
	for _, want := range []string{
		"assuming the web server runs the programs as " + acct.name + " (your account on " + host,
		"database: " + db + " (the home of " + acct.name + ", who runs the programs: outside every served directory",
		"static linux/" + runtime.GOARCH + " binaries (the architecture of " + host + ", " + machine + ";",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}

	// What landed where: the page and programs in public_html/chat, the
	// data and the samples in the home, nothing else in public_html.
	for _, prog := range []string{"post", "stream"} {
		checkStatic(t, filepath.Join(docroot, "cgi-bin", prog), runtime.GOARCH)
	}
	checkPage(t, docroot)
	if entries, err := os.ReadDir(publicHTML); err != nil || len(entries) != 1 {
		t.Errorf("public_html holds %v (%v), want chat/ alone", entries, err)
	}
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatalf("no data directory in the account's home: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != acct.uid || fi.Mode().Perm() != 0o750 {
		t.Errorf("%s: owner %d, mode %v; want %s's, 0750", data, st.Uid, fi.Mode().Perm(), acct.name)
	}
	if _, err := os.Stat(filepath.Join(acct.home, "cgichat-conf", "nginx-fcgiwrap.conf")); err != nil {
		t.Errorf("the samples are not beside the data directory: %v", err)
	}

	// The programs find the database: through the settings file beside
	// them (with its settings in the environment too, or without), as
	// under suEXEC, which passes no SetEnv.
	var settings []string
	for _, m := range regexp.MustCompile(`(?m)^(CHAT_\w+)=(\S+)$`).FindAllStringSubmatch(readFile(t, filepath.Join(docroot, "cgi-bin", "cgichat.conf")), -1) {
		settings = append(settings, m[1]+"="+m[2])
	}
	if want := "CHAT_DB=" + db; !strings.Contains(strings.Join(settings, " "), want) {
		t.Errorf("cgi-bin/cgichat.conf sets %v, want %s", settings, want)
	}
	for i, env := range [][]string{settings, nil} {
		cmd := exec.Command(filepath.Join(docroot, "cgi-bin", "post"))
		acct.runAs(cmd)
		nick := fmt.Sprint("ada", i)
		got, stderr := postCGI(t, cmd, env, nick, "hello from "+nick)
		if want := fmt.Sprintf(`"id":%d,`, i+1); !strings.HasPrefix(got, "Status: 201") || !strings.Contains(got, want) {
			t.Errorf("post as %s with %v: got %q, want a 201 with %s\n%s", acct.name, env, got, want, stderr)
		}
	}
	if fi, err := os.Stat(db); err != nil {
		t.Errorf("the posts did not make %s: %v", db, err)
	} else if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != acct.uid {
		t.Errorf("%s belongs to %d, want %s", db, st.Uid, acct.name)
	}

	before := snapshot(t, acct.home)
	out, err = hostkit.RunDeploy(t, env, host+":public_html/chat")
	if err != nil {
		t.Fatalf("deploy.sh, again: %v\n%s", err, out)
	}
	if !strings.Contains(out, "nothing to change") || strings.Contains(out, "deploy: install") {
		t.Errorf("the second deployment does not say it had nothing to change:\n%s", out)
	}
	compareSnapshots(t, "the second deployment", before, snapshot(t, acct.home))

	// The same TARGET with the home written out as ~/, as rsync takes it:
	// no shell expands it after the colon.
	out, err = hostkit.RunDeploy(t, env, host+":~/public_html/chat")
	if err != nil {
		t.Fatalf("deploy.sh %s:~/public_html/chat: %v\n%s", host, err, out)
	}
	if !strings.Contains(out, "nothing to change: "+host+":"+docroot+" is up to date") {
		t.Errorf("deploying to ~/public_html/chat does not say that %s is up to date:\n%s", docroot, out)
	}
	compareSnapshots(t, "the deployment to ~/public_html/chat", before, snapshot(t, acct.home))
}

// account is a throwaway user with a home of its own.
type account struct {
	name, home string
	uid, gid   int
}

// newAccount creates a user with a home in dir and a login shell, whose
// key-only ssh logins work (its password is not locked, just unusable),
// and removes it when the test ends.
func newAccount(t *testing.T, dir string) account {
	t.Helper()
	hostkit.MustMkdir(t, dir, 0o755)
	var b [3]byte
	rand.Read(b[:])
	name := "cgichat-" + hex.EncodeToString(b[:])
	home := filepath.Join(dir, name)
	run(t, "useradd", "--create-home", "--home-dir", home, "--shell", "/bin/bash", "--password", "*", name)
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{name: name, home: home, uid: uid, gid: gid}
}

// own gives paths to the account.
func (a account) own(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Chown(p, a.uid, a.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// runAs makes cmd run as the account.
func (a account) runAs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid)}}
}

// startSSHD runs sshd on a free 127.0.0.1 port with a host key of its own,
// letting only user in, with a key; it returns the port.
func startSSHD(t *testing.T, dir, user string) int {
	t.Helper()
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	// sshd wants its privilege separation directory, which its service
	// would make.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	port := hostkit.FreePort(t)
	config := filepath.Join(dir, "sshd_config")
	hostkit.MustWrite(t, config, fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile %s
AllowUsers %s
PermitRootLogin no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
LogLevel VERBOSE
`, port, hostKey, filepath.Join(dir, "sshd.pid"), user), 0o600)
	logPath := filepath.Join(dir, "sshd.log")
	p := hostkit.StartProc(t, "sshd", exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", config), logPath)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	hostkit.WaitFor(t, p, logPath, "sshd listening on "+addr, 10*time.Second, hostkit.Listening("tcp", addr))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", logPath, hostkit.Tail(logPath, 40))
		}
	})
	return port
}

// run runs a command and returns its output, failing the test if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

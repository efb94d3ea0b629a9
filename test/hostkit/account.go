package hostkit

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// AccountsRoot is where accounts live: the document root Debian's
// apache2-suexec-custom accepts (the first line of
// /etc/apache2/suexec/www-data).
const AccountsRoot = "/var/www"

// accountPrefix starts the name of every account hostkit creates; the
// GECOS field says which test process created it.
const (
	accountPrefix = "cgichat-"
	accountGECOS  = "cgichat test account, pid "
)

// Account is a throwaway shared-hosting account, laid out as cPanel lays
// one out, with /var/www in place of /home (where suEXEC is allowed here):
// a user with a group of its own, its home AccountsRoot/NAME (0711), the
// web site's docroot public_html in it (0750, group www-data, so only the
// web server may enter). Apache runs the account's programs as the account
// through suEXEC (SuexecUserGroup in its virtual host), and the account
// deploys over "SSH" (a stand-in running the command as the account), so
// deploy.sh takes the account for the programs' user, as on such a host.
type Account struct {
	Name     string
	UID, GID int
	Home     string // AccountsRoot/NAME
	Docroot  string // Home/public_html
	// ProcessLimit, when set before the host starts, caps the account's
	// processes and threads while Apache runs its programs (RLimitNPROC
	// N N, enforced by the kernel as RLIMIT_NPROC), the way a CloudLinux
	// plan caps an account.
	ProcessLimit int
}

// CanCreateAccounts says why accounts cannot be made here, or nil: they
// need root (useradd, suEXEC) and Debian's apache2-suexec-custom.
func CanCreateAccounts() error {
	if os.Geteuid() != 0 {
		return errors.New("creating a throwaway account for suEXEC needs root (CI runs test/run as root)")
	}
	for _, p := range []string{"/usr/sbin/useradd", "/usr/sbin/userdel", "/usr/sbin/runuser", SuexecBin, "/etc/apache2/suexec/www-data"} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s is missing (%v): run test/run, which installs apache2-suexec-custom", p, err)
		}
	}
	return nil
}

// accounts serializes useradd and userdel within this process; other
// processes' are retried.
var accounts sync.Mutex

// NewAccount creates an account, removed with its home and every process
// it runs when t's cleanups run. It first removes accounts left behind by
// test processes that no longer run.
func NewAccount(t T) *Account {
	t.Helper()
	if err := CanCreateAccounts(); err != nil {
		t.Fatalf("%v", err)
	}
	accounts.Lock()
	defer accounts.Unlock()
	removeStaleAccounts(t)
	var b [3]byte
	rand.Read(b[:])
	a := &Account{Name: accountPrefix + hex.EncodeToString(b[:])}
	a.Home = filepath.Join(AccountsRoot, a.Name)
	a.Docroot = filepath.Join(a.Home, "public_html")
	if out, err := retryLocked(func() *exec.Cmd {
		return exec.Command("useradd", "--user-group", "--no-create-home", "--home-dir", a.Home,
			"--shell", "/bin/sh", "--comment", accountGECOS+strconv.Itoa(os.Getpid()), a.Name)
	}); err != nil {
		t.Fatalf("useradd %s: %v\n%s", a.Name, err, out)
	}
	t.Cleanup(func() { a.remove(t) })
	u := ServerUser(t)
	var err error
	if a.UID, a.GID, err = lookupIDs(a.Name); err != nil {
		t.Fatalf("%v", err)
	}
	MustMkdir(t, a.Home, 0o711)
	MustMkdir(t, a.Docroot, 0o750)
	if err := os.Chown(a.Home, a.UID, a.GID); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.Chown(a.Docroot, a.UID, u.GID); err != nil {
		t.Fatalf("%v", err)
	}
	return a
}

// DefaultDB is where the programs put the database when no CHAT_DB reaches
// them: ~/cgichat-data/chat.db of the account. Under suEXEC, which passes
// no SetEnv, that is where it goes today (issue 18).
func (a *Account) DefaultDB() string { return filepath.Join(a.Home, "cgichat-data", "chat.db") }

// Owns reports whether path belongs to the account (its user and group),
// as everything the account's programs create does.
func (a *Account) Owns(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != a.UID || int(st.Gid) != a.GID {
		return fmt.Errorf("%s belongs to %d:%d, not to the account %s (%d:%d)", path, st.Uid, st.Gid, a.Name, a.UID, a.GID)
	}
	return nil
}

// RunsAs reports whether process pid runs as the account (real and
// effective user).
func (a *Account) RunsAs(pid int) error {
	uids, err := procIDs(pid, "Uid:")
	if err != nil {
		return err
	}
	if uids[0] != a.UID || uids[1] != a.UID {
		return fmt.Errorf("process %d runs as real user %d, effective %d, not as the account %s (%d)", pid, uids[0], uids[1], a.Name, a.UID)
	}
	return nil
}

// Processes returns the account's processes.
func (a *Account) Processes() []int {
	var pids []int
	for _, pid := range allPIDs() {
		if uids, err := procIDs(pid, "Uid:"); err == nil && uids[0] == a.UID {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Tasks returns how many threads the account's processes have in all:
// what RLIMIT_NPROC counts on Linux.
func (a *Account) Tasks() int {
	n := 0
	for _, pid := range a.Processes() {
		if threads, err := procIDs(pid, "Threads:"); err == nil {
			n += threads[0]
		}
	}
	return n
}

// Command returns cmd to run as the account in its home, as over SSH:
// its user and group, HOME, USER and a plain PATH.
func (a *Account) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = a.Home
	cmd.Env = []string{"HOME=" + a.Home, "USER=" + a.Name, "LOGNAME=" + a.Name, "PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(a.UID), Gid: uint32(a.GID)}}
	return cmd
}

// Target returns deploy.sh's TARGET for docroot when the account deploys
// over SSH: ACCOUNT@shared.example:DOCROOT.
func (a *Account) Target(docroot string) string {
	return a.Name + "@shared.example:" + docroot
}

// DeployEnv returns the environment that makes deploy.sh copy to the
// account's "SSH": RSYNC_RSH set to a stand-in for ssh that runs the
// remote command here as the account, with a shared host's umask 022.
func (a *Account) DeployEnv(t T) []string {
	t.Helper()
	rsh := filepath.Join(t.TempDir(), "ssh-as-"+a.Name)
	// A shared host: the command runs as the account, in its home.
	StandInSSH(t, rsh, `exec /usr/sbin/runuser -u `+a.Name+` -- /bin/sh -c "umask 022; cd; $*"`)
	return []string{"RSYNC_RSH=" + rsh}
}

// StandInSSH writes at path a stand-in for ssh, for deploy.sh's RSYNC_RSH:
// it skips ssh's options and the host name, then runs run, a shell line in
// which "$*" is the remote command.
func StandInSSH(t T, path, run string) {
	t.Helper()
	MustWrite(t, path, `#!/bin/sh
# Stands in for ssh: skips the options and the host name, runs the command.
while [ $# -gt 0 ]; do
  case $1 in
    -l | -p | -i | -o) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
shift
`+run+"\n", 0o755)
}

// SuexecLog returns the lines of suEXEC's own log (it refuses programs
// there, before Apache's error log says anything useful) about the account.
func (a *Account) SuexecLog() string {
	f, err := os.Open(SuexecLog)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), a.Name) || strings.Contains(sc.Text(), a.Home) {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// remove ends the account's processes, then deletes the user, its group
// and its home.
func (a *Account) remove(t T) {
	if t.Failed() {
		t.Logf("%s, lines about %s:\n%s", SuexecLog, a.Name, a.SuexecLog())
	}
	accounts.Lock()
	defer accounts.Unlock()
	if err := removeAccount(a.Name, a.UID, a.Home); err != nil {
		t.Logf("removing the account %s: %v", a.Name, err)
	}
}

// removeAccount kills uid's processes, deletes the user and its home.
func removeAccount(name string, uid int, home string) error {
	if !strings.HasPrefix(name, accountPrefix) || home != filepath.Join(AccountsRoot, name) {
		return fmt.Errorf("refusing to remove %s (home %s): not an account of hostkit's", name, home)
	}
	// userdel refuses while the user runs a process; a CGI program may
	// still be on its way out.
	for range 50 {
		var pids []int
		for _, pid := range allPIDs() {
			if uids, err := procIDs(pid, "Uid:"); err == nil && uid > 0 && uids[0] == uid {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			break
		}
		KillAll(pids)
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	if out, err := retryLocked(func() *exec.Cmd { return exec.Command("userdel", name) }); err != nil {
		errs = append(errs, fmt.Errorf("userdel %s: %v: %s", name, err, out))
	}
	if err := os.RemoveAll(home); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeStaleAccounts removes the accounts whose creating process has
// ended without its cleanups (a killed test run).
func removeStaleAccounts(t T) {
	t.Helper()
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		// name:x:uid:gid:gecos:home:shell
		f := strings.Split(line, ":")
		if len(f) != 7 || !strings.HasPrefix(f[0], accountPrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(f[4], accountGECOS))
		if err != nil || !strings.HasPrefix(f[4], accountGECOS) || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		uid, _ := strconv.Atoi(f[2])
		if err := removeAccount(f[0], uid, f[5]); err != nil {
			t.Logf("removing the stale account %s: %v", f[0], err)
		} else {
			t.Logf("removed the account %s left behind by process %d", f[0], pid)
		}
	}
}

// retryLocked runs a command of the shadow suite, again while another
// process holds /etc/passwd's lock (exit status 10 for useradd and userdel).
func retryLocked(cmd func() *exec.Cmd) ([]byte, error) {
	for i := 0; ; i++ {
		out, err := cmd().CombinedOutput()
		var exit *exec.ExitError
		if err == nil || !errors.As(err, &exit) || exit.ExitCode() != 10 || i == 20 {
			return out, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// lookupIDs returns a user's id and primary group id.
func lookupIDs(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// procIDs returns the numbers on the line of /proc/PID/status that starts
// with key ("Uid:": real, effective, saved, filesystem).
func procIDs(pid int, key string) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			var ids []int
			for _, f := range strings.Fields(rest) {
				n, err := strconv.Atoi(f)
				if err != nil {
					return nil, fmt.Errorf("/proc/%d/status: %q", pid, line)
				}
				ids = append(ids, n)
			}
			if len(ids) == 0 {
				break
			}
			return ids, nil
		}
	}
	return nil, fmt.Errorf("/proc/%d/status has no %s line", pid, key)
}

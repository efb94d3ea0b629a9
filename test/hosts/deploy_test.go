package hosts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cgichat/test/hostkit"
)

// TestDeployHelp checks that --help explains every option and succeeds.
func TestDeployHelp(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--help", "-h"} {
		out, err := hostkit.RunDeploy(t, nil, flag)
		if err != nil {
			t.Fatalf("deploy.sh %s: %v\n%s", flag, err, out)
		}
		for _, want := range []string{
			"Usage: ./deploy.sh [options] TARGET", "user@host:path",
			"--mode cgi|fcgid|daemon", "--stream-mode live|batch", "--db PATH",
			"--web-user USER", "--env NAME=VALUE", "--dry-run", "FcgidOutputBufferSize 0",
			"--arch amd64|arm64|arm", "gcc-aarch64-linux-gnu", "Raspberry Pi",
			"public_html, www,\n                htdocs, httpdocs, html, web, public, http or wwwroot", "/var/lib/cgichat",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("deploy.sh %s: the help does not mention %q:\n%s", flag, want, out)
			}
		}
	}
}

// TestDeployRefuses checks that bad options and targets fail early, with a
// message that says what is wrong, and leave nothing behind.
func TestDeployRefuses(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	aFile := filepath.Join(base, "file")
	hostkit.MustWrite(t, aFile, "not a directory", 0o644)
	// PATHs with what deploy.sh needs before it looks for Go, and no Go;
	// before it looks for a C cross compiler, and none.
	noGo := toolDir(t, filepath.Join(base, "bin"), "bash", "dirname")
	noCross := toolDir(t, filepath.Join(base, "bin-go"), "bash", "dirname", "go")
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"UnknownMode", nil, []string{"--mode", "php", docroot}, "unknown mode 'php': use --mode cgi, fcgid or daemon"},
		{"UnknownStreamMode", nil, []string{"--stream-mode", "fast", docroot}, "unknown stream mode 'fast'"},
		{"UnknownOption", nil, []string{"--frobnicate", docroot}, "unknown option --frobnicate"},
		{"NoTarget", nil, []string{"--mode", "cgi"}, "no TARGET given"},
		{"TwoTargets", nil, []string{docroot, docroot + "2"}, "only one TARGET"},
		{"MissingValue", nil, []string{docroot, "--db"}, "--db needs a value"},
		{"BadEnv", nil, []string{"--env", "HOME=/", docroot}, "--env wants CHAT_NAME=VALUE"},
		{"EnvForDB", nil, []string{"--env", "CHAT_DB=/tmp/x.db", docroot}, "set the database with --db"},
		{"UnsafeValue", nil, []string{"--env", "CHAT_HISTORY=1 2", docroot}, "may contain only"},
		{"DatabaseInDocroot", nil, []string{"--db", docroot + "/data/chat.db", docroot}, "would be inside TARGET"},
		{"DatabaseURLWithoutDatabase", nil, []string{"--db", "mysql://chat:pw@db.example:3306/", docroot}, "--db URL must name a host and a database"},
		{"DatabaseURLUnsafe", nil, []string{"--db", "postgres://chat:p w@db.example/chat", docroot}, "--db URL may contain only"},
		{"TargetParentMissing", nil, []string{filepath.Join(base, "no", "docroot")}, "does not exist"},
		{"TargetIsFile", nil, []string{aFile}, "exists and is not a directory"},
		{"NoGo", []string{"PATH=" + noGo}, []string{docroot}, "Go is not installed"},
		{"NoCCompiler", []string{"CC=/nonexistent/cc"}, []string{docroot}, "no C compiler ('/nonexistent/cc')"},
		{"UnknownArch", nil, []string{"--arch", "mips", docroot}, "unknown architecture 'mips': use --arch amd64, arm64 or arm"},
		{"NoCrossCompiler", []string{"PATH=" + noCross}, []string{"--arch", "arm64", docroot},
			"needs the C cross compiler aarch64-linux-gnu-gcc (go-sqlite3 uses cgo), which is not installed. On Debian or Ubuntu: apt-get install gcc-aarch64-linux-gnu"},
		{"NoCrossCompiler32", []string{"PATH=" + noCross}, []string{"--arch=arm", docroot}, "apt-get install gcc-arm-linux-gnueabihf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := hostkit.RunDeploy(t, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("deploy.sh %s succeeded, want a failure saying %q:\n%s", strings.Join(tt.args, " "), tt.want, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("deploy.sh %s: got\n%s\nwant a message containing %q", strings.Join(tt.args, " "), out, tt.want)
			}
			if _, err := os.Stat(docroot); err == nil {
				t.Errorf("deploy.sh %s created %s", strings.Join(tt.args, " "), docroot)
			}
		})
	}
}

// toolDir makes dir hold links to the named programs alone, for a PATH
// that lacks the others.
func toolDir(t *testing.T, dir string, tools ...string) string {
	t.Helper()
	hostkit.MustMkdir(t, dir, 0o755)
	for _, tool := range tools {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// deployIn runs deploy.sh with HOME set to base: the database's default is
// the home of the user the programs run as, who is the caller when the
// tests do not run as root, and it must stay in the test's directory.
func deployIn(t *testing.T, base string, args ...string) (string, error) {
	t.Helper()
	return hostkit.RunDeploy(t, []string{"HOME=" + base}, args...)
}

// TestDeployTargetNotWritable checks the refusal of a TARGET the deploying
// user may not write, as an unprivileged user.
func TestDeployTargetNotWritable(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	hostkit.Reachable(t, base)
	docroot := filepath.Join(base, "docroot")
	hostkit.MustMkdir(t, docroot, 0o555)
	cmd := exec.Command(filepath.Join(hostkit.SourceDir(t), "deploy.sh"), docroot)
	cmd.Env = append(os.Environ(), "HOME="+base)
	if os.Geteuid() == 0 {
		// Root may write anywhere: deploy as nobody.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("deploy.sh into a read-only %s succeeded:\n%s", docroot, out)
	}
	if want := "TARGET " + docroot + " is not writable"; !strings.Contains(string(out), want) {
		t.Errorf("got\n%s\nwant a message containing %q", out, want)
	}
}

// TestDeployInstalls checks a first deployment in every mode: the static
// programs, the whole page, the .htaccess files and samples of the mode,
// the data directory given to the web server's user.
func TestDeployInstalls(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	u := hostkit.ServerUser(t)
	tests := []struct {
		mode       string
		args       []string
		handler    string // SetHandler in cgi-bin/.htaccess; "" when it denies all
		streamMode string
		samples    []string
		// Lines a sample holds with the default listen address (80).
		lines map[string][]string
	}{
		{"cgi", nil, "cgi-script", "live", []string{"nginx-fcgiwrap.conf", "fcgiwrap.default", "lighttpd-cgi.conf"}, map[string][]string{
			"lighttpd-cgi.conf": {`$SERVER["socket"] == ":80" {}`},
		}},
		{"fcgid", nil, "fcgid-script", "batch", []string{"apache-fcgid-live.conf"}, nil},
		{"fcgid", []string{"--stream-mode", "live"}, "fcgid-script", "live", []string{"apache-fcgid-live.conf"}, nil},
		{"daemon", nil, "", "live", []string{"nginx-daemon.conf", "apache-daemon.conf", "cgichat@.service", "lighttpd-daemon.conf", "Caddyfile"}, map[string][]string{
			"lighttpd-daemon.conf": {`$SERVER["socket"] == ":80" {}`},
			// No bind line: Caddy listens on every address.
			"Caddyfile": {"http://chat.example.org:80 {\n\t\n\troot * "},
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{tt.mode}, tt.args...), " "), func(t *testing.T) {
			base := t.TempDir()
			docroot := filepath.Join(base, "docroot")
			args := append([]string{"--mode", tt.mode, "--web-user", u.Name}, tt.args...)
			out, err := deployIn(t, base, append(args, docroot)...)
			if err != nil {
				t.Fatalf("deploy.sh: %v\n%s", err, out)
			}
			if want := "assuming the web server runs the programs as " + u.Name; !strings.Contains(out, want) {
				t.Errorf("the output does not say %q:\n%s", want, out)
			}
			for _, prog := range []string{"post", "stream"} {
				checkStatic(t, filepath.Join(docroot, "cgi-bin", prog), runtime.GOARCH)
				checkServerDrivers(t, filepath.Join(docroot, "cgi-bin", prog), false)
			}
			checkPage(t, docroot)

			htaccess := readFile(t, filepath.Join(docroot, "cgi-bin", ".htaccess"))
			db := filepath.Join(base, "cgichat-data", "chat.db")
			if tt.handler == "" {
				if strings.Contains(htaccess, "SetHandler") || !strings.Contains(htaccess, "\nRequire all denied") {
					t.Errorf("cgi-bin/.htaccess must deny everything in daemon mode:\n%s", htaccess)
				}
			} else {
				for _, want := range []string{
					"\nOptions +ExecCGI\n", "\nSetHandler " + tt.handler + "\n", "\nSetEnv no-gzip 1\n",
				} {
					if !strings.Contains(htaccess, want) {
						t.Errorf("cgi-bin/.htaccess lacks %q:\n%s", strings.TrimSpace(want), htaccess)
					}
				}
			}
			settings := readFile(t, filepath.Join(docroot, "cgi-bin", "cgichat.conf"))
			for _, want := range []string{"\nCHAT_DB=" + db + "\n", "\nCHAT_STREAM_MODE=" + tt.streamMode + "\n"} {
				if !strings.Contains(settings, want) {
					t.Errorf("cgi-bin/cgichat.conf lacks %q:\n%s", strings.TrimSpace(want), settings)
				}
			}
			conf := filepath.Join(base, "cgichat-conf")
			for _, name := range tt.samples {
				text := readFile(t, filepath.Join(conf, name))
				if m := regexp.MustCompile(`@[A-Z_]+@`).FindString(text); m != "" {
					t.Errorf("%s still holds the placeholder %s", name, m)
				}
				if !strings.HasPrefix(text, "# cgichat: written by deploy.sh from contrib/") {
					t.Errorf("%s does not start by saying where it comes from:\n%s", name, text)
				}
				for _, want := range tt.lines[name] {
					if !strings.Contains(text, want) {
						t.Errorf("%s lacks %q:\n%s", name, want, text)
					}
				}
			}

			data := filepath.Join(base, "cgichat-data")
			fi, err := os.Stat(data)
			if err != nil {
				t.Fatalf("no data directory: %v", err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != u.UID || fi.Mode().Perm()&0o700 != 0o700 {
				t.Errorf("data directory: got owner %d and mode %v, want %s (%d) with rwx", st.Uid, fi.Mode().Perm(), u.Name, u.UID)
			}
			if _, err := os.Stat(db); err == nil {
				t.Errorf("deploy.sh created the database %s; the programs create it", db)
			}
		})
	}
}

// TestDeployDatabaseServer checks a deployment on a database server: the
// URL reaches the programs' settings file in every mode (a percent-encoded
// password intact), the data directory beside TARGET is made
// for the wake-up sockets, and nothing is taken for a database file.
func TestDeployDatabaseServer(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	u := hostkit.ServerUser(t)
	url := "postgres://chat:p%40ss@db.example:5432/chat?sslmode=require"
	for _, mode := range []string{"cgi", "daemon"} {
		t.Run(mode, func(t *testing.T) {
			base := t.TempDir()
			docroot := filepath.Join(base, "docroot")
			out, err := deployIn(t, base, "--mode", mode, "--web-user", u.Name, "--db", url, docroot)
			if err != nil {
				t.Fatalf("deploy.sh: %v\n%s", err, out)
			}
			data := filepath.Join(base, "cgichat-data")
			file := filepath.Join(docroot, "cgi-bin", "cgichat.conf")
			want := []string{"\nCHAT_DB=" + url + "\n", "\nCHAT_WAKE_DIR=" + data + "/wake\n"}
			text := readFile(t, file)
			for _, w := range want {
				if !strings.Contains(text, w) {
					t.Errorf("%s lacks %q:\n%s", file, strings.TrimSpace(w), text)
				}
			}
			if fi, err := os.Stat(data); err != nil || !fi.IsDir() {
				t.Errorf("no data directory for the wake-up sockets: %v", err)
			}
			if want := "holds the wake-up sockets; the database is on its server"; !strings.Contains(out, want) {
				t.Errorf("the output does not say %q:\n%s", want, out)
			}
			for _, prog := range []string{"post", "stream"} {
				checkServerDrivers(t, filepath.Join(docroot, "cgi-bin", prog), true)
			}
		})
	}
}

// TestDeployDaemonSamples checks what --mode daemon writes for the front
// ends and systemd: the paths, the listen address and the settings that
// keep events flowing. The host tests run these very files.
func TestDeployDaemonSamples(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	sockets := filepath.Join(base, "run")
	out, err := deployIn(t, base, "--mode", "daemon", "--web-user", hostkit.ServerUser(t).Name, "--socket-dir", sockets,
		"--http-listen", "127.0.0.1:8088", "--server-name", "chat.test", "--env", "CHAT_HISTORY=20", docroot)
	if err != nil {
		t.Fatalf("deploy.sh: %v\n%s", err, out)
	}
	conf := filepath.Join(base, "cgichat-conf")
	db := filepath.Join(base, "cgichat-data", "chat.db")
	for _, tt := range []struct {
		file string
		want []string
	}{
		{"nginx-daemon.conf", []string{
			"listen 127.0.0.1:8088;", "server_name chat.test;", "root " + docroot + ";",
			"fastcgi_pass unix:" + sockets + "/post.sock;", "fastcgi_pass unix:" + sockets + "/stream.sock;",
			"fastcgi_buffering off;", "gzip off;",
		}},
		{"apache-daemon.conf", []string{
			"<VirtualHost 127.0.0.1:8088>", "ServerName chat.test", `DocumentRoot "` + docroot + `"`,
			`"unix:` + sockets + `/stream.sock|fcgi://cgichat-stream/" flushpackets=on`,
			`"unix:` + sockets + `/post.sock|fcgi://cgichat-post/"`, "no-gzip",
		}},
		{"lighttpd-daemon.conf", []string{
			`$SERVER["socket"] == "127.0.0.1:8088" {}`, `$HTTP["host"] == "chat.test" {`,
			`server.document-root = "` + docroot + `"`,
			`"socket" => "` + sockets + `/post.sock",`, `"socket" => "` + sockets + `/stream.sock",`,
			"server.stream-response-body = 2",
		}},
		{"Caddyfile", []string{
			"http://chat.test:8088 {", "\tbind 127.0.0.1\n", "root * " + docroot + "\n",
			"reverse_proxy unix/" + sockets + "/post.sock {", "reverse_proxy unix/" + sockets + "/stream.sock {",
			"transport fastcgi",
		}},
		{"cgichat@.service", []string{
			"User=" + hostkit.ServerUser(t).Name, docroot + "/cgi-bin/cgichat.conf",
			"ExecStart=" + docroot + "/cgi-bin/%i -listen unix:" + sockets + "/%i.sock",
		}},
	} {
		text := readFile(t, filepath.Join(conf, tt.file))
		for _, want := range tt.want {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q:\n%s", tt.file, want, text)
			}
		}
	}
	// The daemons read their settings from the file, as every mode does;
	// an Environment= line in the unit would win over it.
	settings := readFile(t, filepath.Join(docroot, "cgi-bin", "cgichat.conf"))
	for _, want := range []string{"\nCHAT_DB=" + db + "\n", "\nCHAT_STREAM_MODE=live\n", "\nCHAT_HISTORY=20\n"} {
		if !strings.Contains(settings, want) {
			t.Errorf("cgi-bin/cgichat.conf lacks %q:\n%s", strings.TrimSpace(want), settings)
		}
	}
	if unit := readFile(t, filepath.Join(conf, "cgichat@.service")); strings.Contains(unit, "\nEnvironment=CHAT_") {
		t.Errorf("cgichat@.service sets a CHAT_ variable, which would hide cgichat.conf's:\n%s", unit)
	}
	for _, want := range []string{"systemctl enable --now cgichat@post cgichat@stream", "-listen unix:" + sockets + "/post.sock"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not tell how to start the daemons (%q):\n%s", want, out)
		}
	}
	// nginx accepts the sample as it is.
	nginxConf := filepath.Join(base, "nginx.conf")
	hostkit.MustWrite(t, nginxConf, fmt.Sprintf("pid %s/nginx.pid;\nevents {}\nhttp {\n access_log off;\n include /etc/nginx/mime.types;\n include %s;\n}\n",
		base, filepath.Join(conf, "nginx-daemon.conf")), 0o644)
	hostkit.MustWrite(t, filepath.Join(base, "fastcgi_params"), readFile(t, "/etc/nginx/fastcgi_params"), 0o644)
	if out, err := exec.Command(hostkit.NginxBin, "-t", "-c", nginxConf, "-p", base, "-e", filepath.Join(base, "nginx-error.log")).CombinedOutput(); err != nil {
		t.Errorf("nginx -t with the sample: %v\n%s", err, out)
	}
}

// TestDeployDryRun checks that --dry-run tells what would change and
// changes nothing, for a new TARGET and for a change of mode.
func TestDeployDryRun(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	user := hostkit.ServerUser(t).Name

	before := snapshot(t, base)
	out, err := deployIn(t, base, "--dry-run", "--web-user", user, docroot)
	if err != nil {
		t.Fatalf("deploy.sh --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{"would install " + docroot + "/cgi-bin/post", "would install " + docroot + "/index.html", "would: install -d", "nothing was written"} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry run does not say %q:\n%s", want, out)
		}
	}
	compareSnapshots(t, "a dry run into a new TARGET", before, snapshot(t, base))

	if out, err := deployIn(t, base, "--web-user", user, docroot); err != nil {
		t.Fatalf("deploy.sh: %v\n%s", err, out)
	}
	before = snapshot(t, base)
	out, err = deployIn(t, base, "--dry-run", "--mode", "daemon", "--web-user", user, docroot)
	if err != nil {
		t.Fatalf("deploy.sh --dry-run --mode daemon: %v\n%s", err, out)
	}
	if want := "would install " + docroot + "/cgi-bin/.htaccess"; !strings.Contains(out, want) {
		t.Errorf("the dry run does not say %q:\n%s", want, out)
	}
	if strings.Contains(out, "would install "+docroot+"/cgi-bin/post") {
		t.Errorf("the dry run would install the unchanged post:\n%s", out)
	}
	compareSnapshots(t, "a dry run over a deployment", before, snapshot(t, base))
}

// TestDeployTwice checks that a second run with the same options changes
// nothing: not a file, not a mode, not a time stamp.
func TestDeployTwice(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	for _, mode := range []string{"cgi", "fcgid", "daemon"} {
		t.Run(mode, func(t *testing.T) {
			base := t.TempDir()
			args := []string{"--mode", mode, "--web-user", hostkit.ServerUser(t).Name, filepath.Join(base, "docroot")}
			if out, err := deployIn(t, base, args...); err != nil {
				t.Fatalf("deploy.sh: %v\n%s", err, out)
			}
			before := snapshot(t, base)
			out, err := deployIn(t, base, args...)
			if err != nil {
				t.Fatalf("deploy.sh, again: %v\n%s", err, out)
			}
			if !strings.Contains(out, "nothing to change") || strings.Contains(out, "deploy: install") {
				t.Errorf("the second run does not say it had nothing to change:\n%s", out)
			}
			compareSnapshots(t, "the second run", before, snapshot(t, base))
		})
	}
}

// TestDeployKeepsDatabase checks that an existing database, its WAL files
// and its directory are left exactly as they are.
func TestDeployKeepsDatabase(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	base := t.TempDir()
	data := filepath.Join(base, "cgichat-data")
	hostkit.MustMkdir(t, data, 0o700)
	old := time.Now().Add(-48 * time.Hour)
	for _, name := range []string{"chat.db", "chat.db-wal", "chat.db-shm"} {
		path := filepath.Join(data, name)
		hostkit.MustWrite(t, path, "SQLite format 3\x00 messages of "+name, 0o600)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, data)
	out, err := deployIn(t, base, "--web-user", hostkit.ServerUser(t).Name, filepath.Join(base, "docroot"))
	if err != nil {
		t.Fatalf("deploy.sh: %v\n%s", err, out)
	}
	for _, want := range []string{
		"database: " + data + "/chat.db, where an earlier deployment put it, beside TARGET: kept there",
		"data directory " + data + " exists: left as it is", "database " + data + "/chat.db exists: not touched",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}
	compareSnapshots(t, "deploying beside a database", before, snapshot(t, data))
}

// TestDeployRefusesForeignHtaccess checks that an .htaccess deploy.sh did
// not write is never replaced.
func TestDeployRefusesForeignHtaccess(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	hostkit.MustMkdir(t, docroot, 0o755)
	hostkit.MustWrite(t, filepath.Join(docroot, ".htaccess"), "Options +Indexes\n", 0o644)
	before := snapshot(t, base)
	out, err := deployIn(t, base, docroot)
	if err == nil {
		t.Fatalf("deploy.sh over a foreign .htaccess succeeded:\n%s", out)
	}
	if want := "were not written by deploy.sh"; !strings.Contains(out, want) {
		t.Errorf("got\n%s\nwant a message containing %q", out, want)
	}
	compareSnapshots(t, "a refused deployment", before, snapshot(t, base))
}

// fakeSSH writes a stand-in for ssh into dir that runs its command on this
// machine, where uname -m answers machine, and returns the environment
// that makes deploy.sh use it, with HOME in dir.
func fakeSSH(t *testing.T, dir, machine string) []string {
	t.Helper()
	uname, err := exec.LookPath("uname")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "fake-bin")
	hostkit.MustMkdir(t, bin, 0o755)
	hostkit.MustWrite(t, filepath.Join(bin, "uname"), fmt.Sprintf(`#!/bin/sh
if [ "$1" = -m ]; then echo %s; else exec %s "$@"; fi
`, machine, uname), 0o755)
	rsh := filepath.Join(dir, "fake-ssh")
	// The command runs here, with the fake uname first in its PATH.
	hostkit.StandInSSH(t, rsh, `PATH=`+bin+`:$PATH exec sh -c "$*"`)
	return []string{"RSYNC_RSH=" + rsh, "HOME=" + dir}
}

// TestDeployRemoteArchRefused checks that a remote machine deploy.sh
// cannot build for is refused, by the name uname -m gives it there, before
// anything is built or written.
func TestDeployRemoteArchRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ machine, want string }{
		{"armv6l", "armv6l (Raspberry Pi 1 and Zero) is not supported: Debian's 32-bit ARM cross compiler builds for ARMv7 and later"},
		{"mips64", "no build for mips64 (me@example.org): deploy.sh builds for amd64 (x86_64), arm64 (aarch64) and arm (ARMv7)"},
		{"i686", "no build for i686"},
	} {
		t.Run(tt.machine, func(t *testing.T) {
			base := t.TempDir()
			docroot := filepath.Join(base, "docroot")
			out, err := hostkit.RunDeploy(t, fakeSSH(t, base, tt.machine), "me@example.org:"+docroot)
			if err == nil {
				t.Fatalf("deploy.sh to a %s machine succeeded:\n%s", tt.machine, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("got\n%s\nwant a message containing %q", out, tt.want)
			}
			if strings.Contains(out, "building") {
				t.Errorf("deploy.sh built before refusing:\n%s", out)
			}
			if _, err := os.Stat(docroot); err == nil {
				t.Errorf("deploy.sh created %s", docroot)
			}
		})
	}
}

// TestDeployArchMismatch checks that --arch naming another processor than
// that of TARGET's machine is said before anything is built: the programs
// would not run there. It is a warning, not a refusal (TARGET may be a card
// or a share for another machine). The runs stop at the C compiler, which
// CC names and does not exist.
func TestDeployArchMismatch(t *testing.T) {
	t.Parallel()
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	for _, tt := range []struct {
		name, machine, arch string // machine: uname -m over ssh; "" for a local TARGET
		want                string // in the warning; "" for none
	}{
		{"AMD64ForAnARM64Host", "aarch64", "amd64", "building for linux/amd64 (--arch), but me@example.org is aarch64: the programs will not run there"},
		{"ARM64ForAnAMD64Host", "x86_64", "arm64", "building for linux/arm64 (--arch), but me@example.org is x86_64"},
		{"ARM64ForAnARM64Host", "aarch64", "arm64", ""},
		{"ARMForAnARM64Host", "aarch64", "arm", ""},
		{"AMD64ForAnAMD64Host", "x86_64", "amd64", ""},
		{"AnotherForThisMachine", "", other, "building for linux/" + other + " (--arch), but this machine is "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			target := filepath.Join(base, "docroot")
			env := []string{"HOME=" + base}
			if tt.machine != "" {
				env = fakeSSH(t, base, tt.machine)
				target = "me@example.org:" + target
			}
			out, _ := hostkit.RunDeploy(t, append(env, "CC=/nonexistent/cc"), "--dry-run", "--arch", tt.arch, target)
			if !strings.Contains(out, "no C compiler ('/nonexistent/cc'") {
				t.Fatalf("deploy.sh did not stop at the C compiler:\n%s", out)
			}
			warned := strings.Contains(out, "warning: building for")
			if tt.want == "" && warned || tt.want != "" && !strings.Contains(out, "warning: "+tt.want) {
				t.Errorf("got\n%s\nwant a warning saying %q (none if empty)", out, tt.want)
			}
		})
	}
}

// elfMachine is how file(1) names each architecture deploy.sh builds for.
var elfMachine = map[string]string{
	"amd64": "ELF 64-bit LSB executable, x86-64,",
	"arm64": "ELF 64-bit LSB executable, ARM aarch64,",
	"arm":   "ELF 32-bit LSB executable, ARM, EABI5",
}

// checkStatic fails unless path is a statically linked executable for
// arch (a GOARCH).
func checkStatic(t *testing.T, path, arch string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("%s: got mode %v, want 0755", path, fi.Mode().Perm())
	}
	out, err := exec.Command("file", "-L", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "statically linked") || !strings.Contains(string(out), elfMachine[arch]) {
		t.Errorf("file %s: got %q (%v), want a statically linked %q", path, out, err, elfMachine[arch])
	}
	if arch != runtime.GOARCH {
		return // ldd runs the binary's loader, which only this architecture can
	}
	if out, err := exec.Command("ldd", path).CombinedOutput(); err == nil {
		t.Errorf("ldd %s lists libraries:\n%s", path, out)
	}
}

// checkServerDrivers fails unless the binary at path was built with the
// MySQL and PostgreSQL drivers when want, and without them (for SQLite)
// otherwise, as its build information says.
func checkServerDrivers(t *testing.T, path string, want bool) {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", path).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m %s: %v\n%s", path, err, out)
	}
	info := string(out)
	for _, mod := range []string{"github.com/jackc/pgx/v5", "github.com/go-sql-driver/mysql"} {
		if got := strings.Contains(info, "\tdep\t"+mod+"\t"); got != want {
			t.Errorf("%s: module %s linked in: %v, want %v", path, mod, got, want)
		}
	}
}

// TestDeploySQLiteOnly runs a post built for SQLite, as deploy.sh builds
// it by default, against a database server's URL: a 500, and a message on
// stderr that says how to get a build with the server's driver.
func TestDeploySQLiteOnly(t *testing.T) {
	t.Parallel()
	hostkit.WarmBuild(t)
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	if out, err := deployIn(t, base, "--mode", "cgi", "--web-user", hostkit.ServerUser(t).Name, docroot); err != nil {
		t.Fatalf("deploy.sh: %v\n%s", err, out)
	}
	for _, db := range []string{"mysql://chat:pw@127.0.0.1:9/chat", "postgres://chat:pw@127.0.0.1:9/chat"} {
		got, stderr := postCGI(t, exec.Command(filepath.Join(docroot, "cgi-bin", "post")), []string{"CHAT_DB=" + db, "HOME=" + base}, "ada", "hello")
		if !strings.HasPrefix(got, "Status: 500") {
			t.Errorf("%s: got response %q, want a 500", db, got)
		}
		if want := "has SQLite only (deploy.sh builds it so for a SQLite --db): deploy again with --db set to the"; !strings.Contains(stderr, want) {
			t.Errorf("%s: stderr does not say %q:\n%s", db, want, stderr)
		}
	}
}

// postCGI runs cmd, a post program, as a web server runs a CGI program,
// with env added to a request that posts text as nick, and returns what it
// wrote to stdout (the response) and to stderr. It fails the test when the
// program does not exit cleanly.
func postCGI(t *testing.T, cmd *exec.Cmd, env []string, nick, text string) (response, stderr string) {
	t.Helper()
	body := url.Values{"nick": {nick}, "text": {text}}.Encode()
	cmd.Env = append([]string{"GATEWAY_INTERFACE=CGI/1.1", "REQUEST_METHOD=POST",
		"SERVER_PROTOCOL=HTTP/1.1", "SERVER_NAME=127.0.0.1", "SERVER_PORT=80", "SCRIPT_NAME=/cgi-bin/post",
		"REMOTE_ADDR=127.0.0.1", "HTTP_HOST=127.0.0.1", "CONTENT_TYPE=application/x-www-form-urlencoded",
		"CONTENT_LENGTH=" + strconv.Itoa(len(body))}, env...)
	cmd.Stdin = strings.NewReader(body)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Errorf("%s exited with %v\n%s", cmd.Path, err, errOut.String())
	}
	return out.String(), errOut.String()
}

// checkPage fails unless every file of public/ is in docroot, as it is.
func checkPage(t *testing.T, docroot string) {
	t.Helper()
	public := filepath.Join(hostkit.SourceDir(t), "public")
	err := filepath.WalkDir(public, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(public, path)
		if g, e := readFile(t, filepath.Join(docroot, rel)), readFile(t, path); g != e {
			t.Errorf("%s differs from public/%s", filepath.Join(docroot, rel), rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// entry is what a snapshot records of one path.
type entry struct {
	mode     fs.FileMode
	uid, gid uint32
	mtime    time.Time
	sum      string // of a file's content
}

func (e entry) String() string {
	return fmt.Sprintf("mode %v, owner %d:%d, modified %s, sha256 %.12s", e.mode, e.uid, e.gid, e.mtime.Format(time.RFC3339Nano), e.sum)
}

// snapshot records every path under dir, so that two snapshots differ
// when anything was created, removed, rewritten, touched or re-owned.
func snapshot(t *testing.T, dir string) map[string]entry {
	t.Helper()
	snap := make(map[string]entry)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, mtime: fi.ModTime()}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.sum = hex.EncodeToString(sum[:])
		}
		rel, _ := filepath.Rel(dir, path)
		snap[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// compareSnapshots reports every path that what changed.
func compareSnapshots(t *testing.T, what string, before, after map[string]entry) {
	t.Helper()
	for _, path := range slices.Sorted(maps.Keys(after)) {
		b, ok := before[path]
		switch {
		case !ok:
			t.Errorf("%s created %s", what, path)
		case b != after[path]:
			t.Errorf("%s changed %s: got %v, want %v", what, path, after[path], b)
		}
	}
	for _, path := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[path]; !ok {
			t.Errorf("%s removed %s", what, path)
		}
	}
}

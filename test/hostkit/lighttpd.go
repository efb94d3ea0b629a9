package hostkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// LighttpdBin is where Debian installs lighttpd.
const LighttpdBin = "/usr/sbin/lighttpd"

// lighttpdBase is every lighttpd setup's main configuration: a server of
// its own (pid file, logs and temp files in the host's directory, an empty
// main document root) on 127.0.0.1, with mod_deflate compressing event
// streams, mod_staticfile ahead of the sample's modules (Debian loads it
// last: the sample must not depend on it), and the sample deploy.sh wrote,
// included as it is. lighttpd opens its error log after taking the
// server's user, who therefore owns it.
const lighttpdBase = `server.document-root = "{{base}}/lighttpd/empty"
server.bind = "127.0.0.1"
server.port = {{port}}
server.pid-file = "{{base}}/lighttpd/lighttpd.pid"
server.errorlog = "{{base}}/logs/lighttpd-error.log"
server.upload-dirs = ("{{base}}/lighttpd/tmp")
{{user}}
server.modules = ("mod_indexfile", "mod_access", "mod_deflate", "mod_staticfile")
deflate.mimetypes = ("text/html", "text/css", "text/javascript", "application/javascript", "text/event-stream")
include_shell "/usr/share/lighttpd/create-mime.conf.pl"
include "{{sample}}"
`

// startLighttpd runs lighttpd in the foreground with the sample
// conf/<sample> until it is stopped.
func startLighttpd(t T, h *Host, sample string) *Proc {
	t.Helper()
	dir := filepath.Join(h.Base, "lighttpd")
	MustMkdir(t, dir, 0o755)
	MustMkdir(t, filepath.Join(dir, "empty"), 0o755)
	MustMkdir(t, filepath.Join(dir, "tmp"), 0o700)
	errorLog := filepath.Join(h.LogDir, "lighttpd-error.log")
	f, err := os.OpenFile(errorLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%v", err)
	}
	f.Close()
	h.User.Own(t, filepath.Join(dir, "tmp"), errorLog)
	user := ""
	if os.Geteuid() == 0 {
		user = fmt.Sprintf("server.username = %q\nserver.groupname = %q", h.User.Name, h.User.Group)
	}
	conf := expand(lighttpdBase, map[string]string{
		"base":   h.Base,
		"port":   fmt.Sprint(h.Port),
		"user":   user,
		"sample": filepath.Join(h.ConfDir, sample),
	})
	path := filepath.Join(dir, "lighttpd.conf")
	MustWrite(t, path, conf, 0o644)
	h.logs = append(h.logs, errorLog)
	if out, err := exec.Command(LighttpdBin, "-tt", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("lighttpd -tt: %v\n%s\nconfiguration:\n%s", err, out, conf)
	}
	p := StartProc(t, "lighttpd", exec.Command(LighttpdBin, "-D", "-f", path), filepath.Join(h.LogDir, "lighttpd-stdout.log"))
	WaitFor(t, p, errorLog, "lighttpd listening", 15*time.Second, Listening("tcp", h.Addr()))
	return p
}

// LighttpdCGI runs the programs under lighttpd's mod_cgi with the sample
// deploy.sh writes.
func LighttpdCGI(t T, h *Host) []*Proc {
	return []*Proc{startLighttpd(t, h, "lighttpd-cgi.conf")}
}

// LighttpdDaemon runs lighttpd's mod_fastcgi with the daemon sample in
// front of the daemons.
func LighttpdDaemon(t T, h *Host) []*Proc {
	daemons := StartDaemons(t, h)
	return append(daemons, startLighttpd(t, h, "lighttpd-daemon.conf"))
}

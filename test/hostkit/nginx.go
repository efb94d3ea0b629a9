package hostkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Where Debian installs nginx and fcgiwrap.
const (
	NginxBin    = "/usr/sbin/nginx"
	FcgiwrapBin = "/usr/sbin/fcgiwrap"
)

// nginxBase is every nginx setup's main configuration: a server of its own
// (prefix, pid file, logs and temp paths in the host's directory), gzip on
// for event streams unless a location turns it off, and the server block
// deploy.sh wrote, included as it is.
const nginxBase = `daemon off;
master_process on;
worker_processes 2;
{{rlimit}}{{user}}
pid {{base}}/nginx/nginx.pid;
error_log {{base}}/logs/nginx-error.log info;
events {
    worker_connections {{connections}};
}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {{base}}/logs/nginx-access.log;
    client_body_temp_path {{base}}/nginx/body;
    fastcgi_temp_path {{base}}/nginx/fastcgi;
    proxy_temp_path {{base}}/nginx/proxy;
    uwsgi_temp_path {{base}}/nginx/uwsgi;
    scgi_temp_path {{base}}/nginx/scgi;
    gzip on;
    gzip_types text/css application/javascript application/json text/event-stream;
    include {{sample}};
}
`

// startNginx runs nginx with the sample conf/<sample> until it is stopped.
func startNginx(t T, h *Host, sample string) *Proc {
	t.Helper()
	dir := filepath.Join(h.Base, "nginx")
	MustMkdir(t, dir, 0o755)
	// The samples include fastcgi_params relative to the configuration,
	// as in /etc/nginx.
	params, err := os.ReadFile("/etc/nginx/fastcgi_params")
	if err != nil {
		t.Fatalf("%v", err)
	}
	MustWrite(t, filepath.Join(dir, "fastcgi_params"), string(params), 0o644)
	user := ""
	if os.Geteuid() == 0 {
		user = fmt.Sprintf("user %s %s;", h.User.Name, h.User.Group)
	}
	connections := 256
	if h.NginxWorkerConnections > 0 {
		connections = h.NginxWorkerConnections
	}
	rlimit := ""
	if h.NginxRlimitNofile > 0 {
		rlimit = fmt.Sprintf("worker_rlimit_nofile %d;\n", h.NginxRlimitNofile)
	}
	conf := expand(nginxBase, map[string]string{
		"base":        h.Base,
		"rlimit":      rlimit,
		"user":        user,
		"connections": fmt.Sprint(connections),
		"sample":      filepath.Join(h.ConfDir, sample),
	})
	path := filepath.Join(dir, "nginx.conf")
	MustWrite(t, path, conf, 0o644)
	errorLog := filepath.Join(h.LogDir, "nginx-error.log")
	h.logs = append(h.logs, errorLog)
	args := []string{"-c", path, "-p", dir, "-e", errorLog}
	if out, err := exec.Command(NginxBin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	p := StartProc(t, "nginx", exec.Command(NginxBin, args...), filepath.Join(h.LogDir, "nginx-stdout.log"))
	WaitFor(t, p, errorLog, "nginx listening", 15*time.Second, Listening("tcp", h.Addr()))
	return p
}

// NginxDaemon runs nginx with the daemon sample in front of the daemons.
func NginxDaemon(t T, h *Host) []*Proc {
	daemons := StartDaemons(t, h)
	return append(daemons, startNginx(t, h, "nginx-daemon.conf"))
}

// NginxFcgiwrap runs fcgiwrap with the options deploy.sh wrote for
// /etc/default/fcgiwrap, and nginx with the fcgiwrap sample.
func NginxFcgiwrap(t T, h *Host) []*Proc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.ConfDir, "fcgiwrap.default"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	m := regexp.MustCompile(`(?m)^DAEMON_OPTS="([^"]*)"$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("fcgiwrap.default sets no DAEMON_OPTS:\n%s", b)
	}
	sock := filepath.Join(h.RunDir, "fcgiwrap.sock")
	os.Remove(sock) // left by the previous start
	args := append(strings.Fields(string(m[1])), "-s", "unix:"+sock)
	cmd := exec.Command(FcgiwrapBin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	h.User.RunAs(cmd)
	logPath := filepath.Join(h.LogDir, "fcgiwrap.log")
	h.logs = append(h.logs, logPath)
	p := StartProc(t, "fcgiwrap", cmd, logPath)
	WaitFor(t, p, logPath, "fcgiwrap's socket", 10*time.Second, Listening("unix", sock))
	return []*Proc{p, startNginx(t, h, "nginx-fcgiwrap.conf")}
}

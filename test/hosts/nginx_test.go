package hosts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	nginxBin    = "/usr/sbin/nginx"
	fcgiwrapBin = "/usr/sbin/fcgiwrap"
)

// nginxBase is every nginx setup's main configuration: a server of its own
// (prefix, pid file, logs and temp paths in the host's directory), gzip on
// for event streams unless a location turns it off, and the server block
// deploy.sh wrote, included as it is.
const nginxBase = `daemon off;
master_process on;
worker_processes 2;
{{user}}
pid {{base}}/nginx/nginx.pid;
error_log {{base}}/logs/nginx-error.log info;
events {
    worker_connections 256;
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

// startNginx runs nginx with the sample conf/<sample> until the test ends.
func startNginx(t *testing.T, h *host, sample string) *proc {
	t.Helper()
	dir := filepath.Join(h.base, "nginx")
	mustMkdir(t, dir, 0o755)
	// The samples include fastcgi_params relative to the configuration,
	// as in /etc/nginx.
	params, err := os.ReadFile("/etc/nginx/fastcgi_params")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "fastcgi_params"), string(params), 0o644)
	user := ""
	if os.Geteuid() == 0 {
		user = fmt.Sprintf("user %s %s;", h.user.name, h.user.group)
	}
	conf := expand(nginxBase, map[string]string{
		"base":   h.base,
		"user":   user,
		"sample": filepath.Join(h.confDir, sample),
	})
	path := filepath.Join(dir, "nginx.conf")
	mustWrite(t, path, conf, 0o644)
	errorLog := filepath.Join(h.logDir, "nginx-error.log")
	h.logs = append(h.logs, errorLog)
	args := []string{"-c", path, "-p", dir, "-e", errorLog}
	if out, err := exec.Command(nginxBin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	p := startProc(t, "nginx", exec.Command(nginxBin, args...), filepath.Join(h.logDir, "nginx-stdout.log"))
	waitFor(t, p, errorLog, "nginx listening", 15*time.Second, listening("tcp", h.addr()))
	return p
}

// nginxDaemon runs nginx with the daemon sample in front of the daemons.
func nginxDaemon(t *testing.T, h *host) []*proc {
	daemons := startDaemons(t, h)
	return append(daemons, startNginx(t, h, "nginx-daemon.conf"))
}

// nginxFcgiwrap runs fcgiwrap with the options deploy.sh wrote for
// /etc/default/fcgiwrap, and nginx with the fcgiwrap sample.
func nginxFcgiwrap(t *testing.T, h *host) []*proc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.confDir, "fcgiwrap.default"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^DAEMON_OPTS="([^"]*)"$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("fcgiwrap.default sets no DAEMON_OPTS:\n%s", b)
	}
	sock := filepath.Join(h.runDir, "fcgiwrap.sock")
	os.Remove(sock) // left by the previous start
	args := append(strings.Fields(string(m[1])), "-s", "unix:"+sock)
	cmd := exec.Command(fcgiwrapBin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	h.user.runAs(cmd)
	logPath := filepath.Join(h.logDir, "fcgiwrap.log")
	h.logs = append(h.logs, logPath)
	p := startProc(t, "fcgiwrap", cmd, logPath)
	waitFor(t, p, logPath, "fcgiwrap's socket", 10*time.Second, listening("unix", sock))
	return []*proc{p, startNginx(t, h, "nginx-fcgiwrap.conf")}
}

package hosts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	apacheBin     = "/usr/sbin/apache2"
	apacheModules = "/usr/lib/apache2/modules"
)

// apacheBase is every Apache setup's configuration: a server of its own
// (root, pid file, logs, runtime files in the host's temp directory) on
// 127.0.0.1, with the modules a shared host has, mod_deflate compressing
// event streams unless told not to, and the docroot open to .htaccess with
// the rights a shared host gives.
const apacheBase = `ServerRoot "{{base}}/apache"
ServerName 127.0.0.1
Listen 127.0.0.1:{{port}}
PidFile "{{base}}/apache/httpd.pid"
DefaultRuntimeDir "{{base}}/apache"
ErrorLog "{{base}}/logs/apache-error.log"
LogLevel warn
{{user}}
Timeout 60
LoadModule mpm_event_module {{modules}}/mod_mpm_event.so
LoadModule authz_core_module {{modules}}/mod_authz_core.so
LoadModule mime_module {{modules}}/mod_mime.so
LoadModule dir_module {{modules}}/mod_dir.so
LoadModule autoindex_module {{modules}}/mod_autoindex.so
LoadModule alias_module {{modules}}/mod_alias.so
LoadModule env_module {{modules}}/mod_env.so
LoadModule setenvif_module {{modules}}/mod_setenvif.so
LoadModule filter_module {{modules}}/mod_filter.so
LoadModule deflate_module {{modules}}/mod_deflate.so
TypesConfig /etc/mime.types
AddOutputFilterByType DEFLATE text/html text/plain text/css text/javascript application/json text/event-stream

DocumentRoot "{{docroot}}"
<Directory "{{docroot}}">
    Options Indexes FollowSymLinks
    AllowOverride FileInfo Options=ExecCGI Indexes AuthConfig Limit
    Require all granted
</Directory>
`

// startApache writes the configuration (apacheBase, then extra) and runs
// Apache in the foreground until the test ends.
func startApache(t *testing.T, h *host, extra string) []*proc {
	t.Helper()
	dir := filepath.Join(h.base, "apache")
	mustMkdir(t, dir, 0o755)
	user := ""
	if os.Geteuid() == 0 {
		user = fmt.Sprintf("User %s\nGroup %s", h.user.name, h.user.group)
	}
	conf := expand(apacheBase+extra, map[string]string{
		"base":    h.base,
		"port":    fmt.Sprint(h.port),
		"user":    user,
		"modules": apacheModules,
		"docroot": h.docroot,
		"conf":    h.confDir,
		"run":     h.runDir,
	})
	path := filepath.Join(dir, "httpd.conf")
	mustWrite(t, path, conf, 0o644)
	errorLog := filepath.Join(h.logDir, "apache-error.log")
	h.logs = append(h.logs, errorLog)
	if out, err := exec.Command(apacheBin, "-t", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("apache2 -t: %v\n%s\nconfiguration:\n%s", err, out, conf)
	}
	p := startProc(t, "apache2", exec.Command(apacheBin, "-f", path, "-DFOREGROUND"), filepath.Join(h.logDir, "apache-stdout.log"))
	waitFor(t, p, errorLog, "Apache listening", 15*time.Second, listening("tcp", h.addr()))
	return []*proc{p}
}

// apacheCGID runs the programs under mod_cgid, through .htaccess alone.
func apacheCGID(t *testing.T, h *host) []*proc {
	return startApache(t, h, `
LoadModule cgid_module {{modules}}/mod_cgid.so
ScriptSock "{{base}}/apache/cgid.sock"
`)
}

// apacheFcgid runs the programs under mod_fcgid with its default output
// buffer, through .htaccess alone.
func apacheFcgid(t *testing.T, h *host) []*proc {
	return startApache(t, h, fcgidConf)
}

// apacheFcgidUnbuffered adds the server setting deploy.sh writes for admins
// (FcgidOutputBufferSize 0), exactly as written.
func apacheFcgidUnbuffered(t *testing.T, h *host) []*proc {
	return startApache(t, h, fcgidConf+`Include "{{conf}}/apache-fcgid-live.conf"
`)
}

// fcgidConf loads mod_fcgid with its runtime files in the host's
// directories and every timeout at its default.
const fcgidConf = `
LoadModule fcgid_module {{modules}}/mod_fcgid.so
FcgidIPCDir "{{run}}/fcgid"
FcgidProcessTableFile "{{base}}/apache/fcgid_shm"
`

// apacheProxyFCGI runs Apache with the mod_proxy_fcgi virtual host
// deploy.sh writes, in front of the two daemons.
func apacheProxyFCGI(t *testing.T, h *host) []*proc {
	daemons := startDaemons(t, h)
	return append(daemons, startApache(t, h, `
LoadModule proxy_module {{modules}}/mod_proxy.so
LoadModule proxy_fcgi_module {{modules}}/mod_proxy_fcgi.so
Include "{{conf}}/apache-daemon.conf"
`)...)
}

// expand replaces every {{name}} in s.
func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	return s
}

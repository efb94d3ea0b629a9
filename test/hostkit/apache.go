package hostkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Where Debian installs Apache.
const (
	ApacheBin     = "/usr/sbin/apache2"
	ApacheModules = "/usr/lib/apache2/modules"
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
LoadModule headers_module {{modules}}/mod_headers.so
TypesConfig /etc/mime.types
AddOutputFilterByType DEFLATE text/html text/plain text/css text/javascript application/json text/event-stream

DocumentRoot "{{docroot}}"
<Directory "{{docroot}}">
    Options Indexes FollowSymLinks
    AllowOverride FileInfo Options=ExecCGI Indexes AuthConfig Limit
    Require all granted
</Directory>
`

// startApache writes the configuration (apacheBase, extra, then
// h.ApacheConf) and runs Apache in the foreground until it is stopped.
func startApache(t T, h *Host, extra string) []*Proc {
	t.Helper()
	dir := filepath.Join(h.Base, "apache")
	MustMkdir(t, dir, 0o755)
	user := ""
	if os.Geteuid() == 0 {
		user = fmt.Sprintf("User %s\nGroup %s", h.User.Name, h.User.Group)
	}
	conf := expand(apacheBase+extra+h.ApacheConf, map[string]string{
		"base":    h.Base,
		"port":    fmt.Sprint(h.Port),
		"user":    user,
		"modules": ApacheModules,
		"docroot": h.Docroot,
		"conf":    h.ConfDir,
		"run":     h.RunDir,
	})
	path := filepath.Join(dir, "httpd.conf")
	MustWrite(t, path, conf, 0o644)
	errorLog := filepath.Join(h.LogDir, "apache-error.log")
	h.logs = append(h.logs, errorLog)
	if out, err := exec.Command(ApacheBin, "-t", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("apache2 -t: %v\n%s\nconfiguration:\n%s", err, out, conf)
	}
	p := StartProc(t, "apache2", exec.Command(ApacheBin, "-f", path, "-DFOREGROUND"), filepath.Join(h.LogDir, "apache-stdout.log"))
	WaitFor(t, p, errorLog, "Apache listening", 15*time.Second, Listening("tcp", h.Addr()))
	return []*Proc{p}
}

// ApacheCGID runs the programs under mod_cgid, through .htaccess alone.
func ApacheCGID(t T, h *Host) []*Proc {
	return startApache(t, h, cgidConf)
}

// cgidConf loads mod_cgid with its socket in the host's directory.
const cgidConf = `
LoadModule cgid_module {{modules}}/mod_cgid.so
ScriptSock "{{base}}/apache/cgid.sock"
`

// ApacheCGIDH2C is ApacheCGID speaking HTTP/2 without TLS (h2c) as well
// as HTTP/1.1, through mod_http2.
func ApacheCGIDH2C(t T, h *Host) []*Proc {
	return startApache(t, h, `
LoadModule cgid_module {{modules}}/mod_cgid.so
ScriptSock "{{base}}/apache/cgid.sock"
LoadModule http2_module {{modules}}/mod_http2.so
Protocols h2c http/1.1
`)
}

// ApacheFcgid runs the programs under mod_fcgid with its default output
// buffer, through .htaccess alone.
func ApacheFcgid(t T, h *Host) []*Proc {
	return startApache(t, h, fcgidConf)
}

// ApacheFcgidUnbuffered adds the server setting deploy.sh writes for
// admins (FcgidOutputBufferSize 0), exactly as written.
func ApacheFcgidUnbuffered(t T, h *Host) []*Proc {
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

// ApacheProxyFCGI runs Apache with the mod_proxy_fcgi virtual host
// deploy.sh writes, in front of the two daemons.
func ApacheProxyFCGI(t T, h *Host) []*Proc {
	daemons := StartDaemons(t, h)
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

package hostkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Where Debian installs suEXEC (apache2-suexec-custom), where it logs, and
// ModSecurity's recommended configuration and the OWASP CRS loader
// (libapache2-mod-security2, modsecurity-crs).
const (
	SuexecBin           = "/usr/lib/apache2/suexec"
	SuexecLog           = "/var/log/apache2/suexec.log"
	ModSecurityModule   = ApacheModules + "/mod_security2.so"
	ModSecurityConf     = "/etc/modsecurity/modsecurity.conf-recommended"
	ModSecurityCRSLoad  = "/usr/share/modsecurity-crs/owasp-crs.load"
	modSecurityAuditLog = "modsec_audit.log"
)

// Variants are hosts set up as particular shared hosts are, for tests of
// what the chat does there; the common host tests (test/hosts TestHosts)
// do not run on them. LookupSetup finds them by name.
var Variants = []Setup{
	// cPanel-style hosting: the programs run as the account through
	// suEXEC, which passes them no SetEnv.
	{Name: "apache-suexec-mod_cgid", Args: []string{"--mode", "cgi"}, CGI: true, Account: true, Start: ApacheSuexecCGID},
	{Name: "apache-suexec-mod_fcgid", Args: []string{"--mode", "fcgid"}, Batch: true, Account: true, Start: ApacheSuexecFcgid},
	// ModSecurity with the OWASP Core Rule Set, blocking, in front of
	// mod_cgid.
	{Name: "apache-mod_cgid-modsecurity", Args: []string{"--mode", "cgi"}, CGI: true, Start: ApacheModSecurity},
	// mod_cgid where .htaccess may not set Options: every program answers
	// Apache's 500.
	{Name: "apache-mod_cgid-no-options", Args: []string{"--mode", "cgi"}, CGI: true, Start: ApacheNoOptions},
}

// useAccount makes h an account's host: a new account, its public_html
// the docroot, and a database path other than deploy.sh's default
// (~/cgichat-data/chat.db, which is also the programs' default and would
// hide a setting that did not arrive).
func useAccount(t T, h *Host) {
	t.Helper()
	h.Account = NewAccount(t)
	h.Docroot = h.Account.Docroot
	h.DB = filepath.Join(h.Account.Home, "data", "chat.db")
}

// suexecVhost is an account's virtual host as cPanel writes one: its
// docroot, its programs run as the account by suEXEC, and the account's
// process limit when it has one.
const suexecVhost = `
LoadModule suexec_module {{modules}}/mod_suexec.so
<VirtualHost 127.0.0.1:{{port}}>
    ServerName 127.0.0.1
    DocumentRoot "{{docroot}}"
    SuexecUserGroup {{account}} {{account}}
{{limit}}</VirtualHost>
`

// accountVhost returns suexecVhost for h's account.
func accountVhost(t T, h *Host) string {
	t.Helper()
	if h.Account == nil {
		t.Fatalf("setup %s runs the programs as an account, and the host has none: make it with NewHost", h.Setup.Name)
	}
	limit := ""
	if n := h.Account.ProcessLimit; n > 0 {
		limit = fmt.Sprintf("    RLimitNPROC %d %d\n", n, n)
	}
	return expand(suexecVhost, map[string]string{"account": h.Account.Name, "limit": limit})
}

// ApacheSuexecCGID runs the account's programs under mod_cgid through
// suEXEC: Apache starts as root, works as www-data, and suEXEC switches to
// the account for each program.
func ApacheSuexecCGID(t T, h *Host) []*Proc {
	return startApache(t, h, cgidConf+accountVhost(t, h))
}

// ApacheSuexecFcgid runs the account's programs under mod_fcgid (default
// buffer) through suEXEC.
func ApacheSuexecFcgid(t T, h *Host) []*Proc {
	return startApache(t, h, fcgidConf+accountVhost(t, h))
}

// modSecurityConf loads ModSecurity, its configuration (Debian's
// recommended one, blocking, with its files in the host's directories),
// and the Core Rule Set as Debian ships it.
const modSecurityConf = `
LoadModule unique_id_module {{modules}}/mod_unique_id.so
LoadModule security2_module {{modules}}/mod_security2.so
Include "{{base}}/modsecurity/modsecurity.conf"
Include "` + ModSecurityCRSLoad + `"
# The tests reach the host as 127.0.0.1, which adds 3 points to every
# request's anomaly score (920350, "Host header is a numeric IP address")
# that visitors of a site by its name never get; without it the scores
# are a real site's.
SecRuleRemoveById 920350
`

// ApacheModSecurity runs the programs under mod_cgid behind ModSecurity
// and the OWASP CRS with SecRuleEngine On, the audit log in the host's
// log directory (ModSecurityAuditLog).
func ApacheModSecurity(t T, h *Host) []*Proc {
	t.Helper()
	RequireTools(t, ModSecurityModule, ModSecurityConf, ModSecurityCRSLoad)
	dir := filepath.Join(h.Base, "modsecurity")
	for _, d := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "data")} {
		MustMkdir(t, d, 0o750)
		h.User.Own(t, d)
	}
	b, err := os.ReadFile(ModSecurityConf)
	if err != nil {
		t.Fatalf("%v", err)
	}
	conf := string(b)
	// What an admin changes when enabling it, and the paths that would
	// otherwise be shared with the system's Apache; each must be found,
	// so that a changed Debian file is noticed.
	for _, r := range [][2]string{
		{"\nSecRuleEngine DetectionOnly\n", "\nSecRuleEngine On\n"},
		{"\nSecTmpDir /tmp/\n", "\nSecTmpDir " + filepath.Join(dir, "tmp") + "\n"},
		{"\nSecDataDir /tmp/\n", "\nSecDataDir " + filepath.Join(dir, "data") + "\n"},
		{"\nSecAuditLog /var/log/apache2/modsec_audit.log\n", "\nSecAuditLog " + ModSecurityAuditLog(h) + "\n"},
		{"\nSecUnicodeMapFile unicode.mapping ", "\nSecUnicodeMapFile /etc/modsecurity/unicode.mapping "},
	} {
		if n := strings.Count(conf, r[0]); n != 1 {
			t.Fatalf("%s holds %q %d times, want once", ModSecurityConf, strings.TrimSpace(r[0]), n)
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	MustWrite(t, filepath.Join(dir, "modsecurity.conf"), conf, 0o644)
	h.logs = append(h.logs, ModSecurityAuditLog(h))
	return startApache(t, h, cgidConf+modSecurityConf)
}

// ModSecurityAuditLog is where ApacheModSecurity's audit log goes: every
// refused request in full, with the rules that matched.
func ModSecurityAuditLog(h *Host) string { return filepath.Join(h.LogDir, modSecurityAuditLog) }

// ModSecurityDenials returns the lines of h's Apache error log where
// ModSecurity refused a request ("Access denied with code 403 ..."), each
// naming the rule that decided and the request's URI.
func ModSecurityDenials(h *Host) []string {
	b, _ := os.ReadFile(filepath.Join(h.LogDir, "apache-error.log"))
	var denials []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "ModSecurity: Access denied") {
			denials = append(denials, line)
		}
	}
	return denials
}

// ApacheNoOptions runs the programs under mod_cgid where the docroot's
// .htaccess files may not set Options (AllowOverride without Options), as
// some hosts give it: cgi-bin/.htaccess's Options +ExecCGI is an error.
func ApacheNoOptions(t T, h *Host) []*Proc {
	return startApache(t, h, cgidConf+`
<Directory "{{docroot}}">
    AllowOverride FileInfo AuthConfig Indexes Limit
</Directory>
`)
}

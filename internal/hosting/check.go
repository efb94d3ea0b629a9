package hosting

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"cgichat/internal/config"
	"cgichat/internal/tail"
)

// Check prints, for a person over SSH or for deploy.sh, the settings
// program p runs with here and where each comes from (the settings file,
// the environment, the default), the hosting mode it would run in, and
// what stands in its way; listen is -listen's value, if given. It returns
// the exit status: 0 when the settings are valid, 1 when not.
func Check(p Program, listen string, out io.Writer) int {
	dir := ProgramDir()
	fmt.Fprintf(out, "%s -check: the settings %s runs with here, as %s\n\n", p.Name, p.Name, whoami())

	filePath := filepath.Join(dir, config.FileName)
	file, err := config.ReadFile(filePath)
	switch {
	case err != nil:
		fmt.Fprintf(out, "settings file: %s\n", filePath)
	case len(file.Names()) == 0:
		fmt.Fprintf(out, "settings file: %s (none there: every setting comes from the environment or is the default)\n", filePath)
	case len(file.Names()) == 1:
		fmt.Fprintf(out, "settings file: %s (1 setting)\n", filePath)
	default:
		fmt.Fprintf(out, "settings file: %s (%d settings)\n", filePath, len(file.Names()))
	}
	ht, htOK := ReadHtaccess(dir)
	mode, why := checkMode(listen, ht, htOK)
	fmt.Fprintf(out, "hosting mode:  %s\n", why)
	fmt.Fprintf(out, "               %s\n\n", requestRule(mode))
	if err != nil {
		fmt.Fprintf(out, "error: %v\n", err)
		return 1
	}

	l := config.Layers{Env: os.Getenv, File: file}
	c, err := l.Load()
	if err != nil {
		fmt.Fprintf(out, "error: %v\n", err)
		if config.IsFileError(err) {
			fmt.Fprintf(out, "(in %s)\n", filePath)
		}
		return 1
	}
	settings := l.Settings(c)
	for i, s := range settings {
		// The budget's and the heartbeat's defaults depend on the mode.
		switch {
		case s.Name == "CHAT_MAX_STREAMS" && s.Value == "":
			settings[i].Value = strconv.Itoa(c.StreamBudget(mode.Concurrent()))
		case s.Name == "CHAT_HEARTBEAT_SECONDS" && s.Value == "":
			settings[i].Value = strconv.Itoa(int(c.Database().HeartbeatFor(mode.Concurrent()).Seconds()))
		}
	}
	width := 0
	for _, s := range settings {
		width = max(width, len(s.Name)+1+len(s.Value))
	}
	for _, s := range settings {
		kv := s.Name + "=" + s.Value
		fmt.Fprintf(out, "%-*s  [%s]\n", width, kv, s.Where())
	}
	fmt.Fprintln(out)
	for _, line := range placeLines(c, dir, mode) {
		fmt.Fprintln(out, line)
	}
	for _, w := range htaccessWarnings(ht, mode) {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	return 0
}

// whoami names the user the check runs as, which is what the programs
// run as only when run the same way (over SSH on a suEXEC host, yes).
func whoami() string {
	u, err := user.Current()
	if err != nil {
		return fmt.Sprintf("uid %d", os.Getuid())
	}
	s := fmt.Sprintf("user %s (uid %s)", u.Username, u.Uid)
	if os.Getuid() == 0 {
		s += "; root may write anywhere: run it as the user the web server runs the programs as"
	}
	return s
}

// checkMode tells the hosting mode the program would run in: from -listen,
// else from the .htaccess beside it, which is how deploy.sh sets the mode
// for Apache.
func checkMode(listen string, ht Htaccess, ok bool) (Mode, string) {
	switch {
	case listen != "":
		return Daemon, fmt.Sprintf("%s (-listen %s)", Daemon, listen)
	case ok && ht.Handler == "cgi-script":
		return CGI, fmt.Sprintf("%s: %s sets SetHandler cgi-script (Apache mod_cgid or mod_cgi)", CGI, ht.Path)
	case ok && ht.Handler == "fcgid-script":
		return FastCGIStdin, fmt.Sprintf("%s: %s sets SetHandler fcgid-script (Apache mod_fcgid)", FastCGIStdin, ht.Path)
	case ok && ht.Denied:
		return Daemon, fmt.Sprintf("%s: %s refuses every request here, so the daemons (-listen) answer them", Daemon, ht.Path)
	}
	return 0, "decided by the web server when it starts the program: CGI when it sets REQUEST_METHOD (mod_cgid, fcgiwrap), FastCGI on stdin under mod_fcgid, a daemon with -listen"
}

// requestRule says which variables besides the file and the environment a
// program in mode m takes.
func requestRule(m Mode) string {
	switch m {
	case CGI:
		return "Variables the web server sets for the program (SetEnv, fcgiwrap's fastcgi_param) win over the file; suEXEC passes none."
	case FastCGIStdin:
		return fmt.Sprintf("Variables passed with each request (mod_fcgid's SetEnv) win over the file, except %s: only the environment and the file set those.", strings.Join(config.DatabaseNames, ", "))
	case Daemon:
		return "A daemon takes its settings from its environment and the file only; variables passed with requests are ignored."
	}
	return "Under CGI the environment wins over the file; under mod_fcgid each request's variables do too, except the database's; a daemon ignores them."
}

// placeLines say whether the programs can use the database's, the
// wake-ups' and the tail files' places (the tail folder beside dir, the
// programs' folder, in a mode with a stream budget), as far as this user
// can tell without opening them.
func placeLines(c config.Config, dir string, m Mode) []string {
	var lines []string
	if config.IsServerURL(c.DB) {
		lines = append(lines, "database: on a database server (not contacted by -check)")
	} else {
		switch _, err := os.Stat(c.DB); {
		case err == nil:
			lines = append(lines, "database: "+c.DB+" exists")
		case errors.Is(err, fs.ErrNotExist):
			lines = append(lines, "database: "+c.DB+" does not exist yet: the programs create it on first use")
		default:
			lines = append(lines, fmt.Sprintf("database: %v", err))
		}
		lines = append(lines, "          "+writable(filepath.Dir(c.DB)))
	}
	lines = append(lines, "wake-ups: "+writable(c.WakeDir))
	if !config.IsServerURL(c.DB) && c.StreamBudget(m.Concurrent()) > 0 {
		lines = append(lines, "tail files: "+writable(filepath.Join(dir, "..", tail.DirName)),
			"          (readers past the stream budget read them between polls; without them they start a program at every poll)")
	}
	return lines
}

// writable says whether this user may create files in dir, or dir itself.
func writable(dir string) string {
	d := dir
	for {
		if _, err := os.Stat(d); err == nil {
			break
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	what := dir
	if d != dir {
		what = fmt.Sprintf("%s (to be created in %s)", dir, d)
	}
	if err := syscall.Access(d, 2|1); err != nil { // W_OK|X_OK
		return fmt.Sprintf("%s: NOT writable by this user (%v)", what, err)
	}
	return what + ": writable by this user"
}

// htaccessWarnings are what the SetEnv lines of CHAT_ settings in the
// .htaccess beside the programs do in mode m.
func htaccessWarnings(ht Htaccess, m Mode) []string {
	var out []string
	for _, s := range ht.SetEnv {
		what := fmt.Sprintf("%s line %d sets %s with SetEnv: ", ht.Path, s.Line, s.Name)
		switch {
		case m == Daemon:
			what += "it does not reach the daemons."
		case m == FastCGIStdin && config.IsDatabaseSetting(s.Name):
			what += "under mod_fcgid it arrives with each request, and the programs ignore it there (a request may not choose the database)."
		case m == FastCGIStdin:
			what += "under mod_fcgid it arrives with each request and wins over " + config.FileName + "."
		default:
			what += "suEXEC drops it (mod_cgid, mod_cgi), and where it arrives it wins over " + config.FileName + "."
		}
		out = append(out, what+" Set it in "+config.FileName+" instead, and remove the line.")
	}
	return out
}

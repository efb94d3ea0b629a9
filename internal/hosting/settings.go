package hosting

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"cgichat/internal/config"
	"cgichat/internal/fastcgi"
)

// Params returns the variables the web server passed with r beyond the
// request itself: FastCGI parameters such as nginx's fastcgi_param or the
// SetEnv that mod_fcgid passes along. A CGI request has none: its
// variables are the process environment.
func Params(r *http.Request) map[string]string { return fastcgi.ProcessEnv(r) }

// RequestSetting reports whether the setting name may come with a request
// in mode m, over the environment and the settings file.
//
//   - CGI: yes; the environment is the request's anyway.
//   - FastCGI on stdin (mod_fcgid): yes, since that is how mod_fcgid
//     passes SetEnv, but not the settings that make up a database
//     (config.DatabaseNames): a process opens one database, at the place
//     its own environment and file name.
//   - Daemon: no. A daemon serves whatever reaches its socket, and takes
//     its settings from its environment and the file alone.
func (m Mode) RequestSetting(name string) bool {
	switch m {
	case CGI:
		return true
	case FastCGIStdin:
		return !config.IsDatabaseSetting(name)
	}
	return false
}

// Htaccess is what an Apache .htaccess beside the programs says that
// matters to them.
type Htaccess struct {
	Path    string
	Handler string    // SetHandler: cgi-script, fcgid-script, or ""
	Denied  bool      // "Require all denied" with no handler: the daemons' cgi-bin
	SetEnv  []SetLine // SetEnv lines of CHAT_ settings
}

// SetLine is one SetEnv of a CHAT_ setting in an .htaccess.
type SetLine struct {
	Name, Value string
	Line        int
}

// ReadHtaccess reads the .htaccess in dir; ok is false when there is none
// (or it cannot be read).
func ReadHtaccess(dir string) (h Htaccess, ok bool) {
	h.Path = filepath.Join(dir, ".htaccess")
	f, err := os.Open(h.Path)
	if err != nil {
		return h, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	depth := 0 // inside <Files…>, <IfModule…> and the like
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch first := strings.ToLower(fields[0]); {
		case strings.HasPrefix(first, "</"):
			depth--
			continue
		case strings.HasPrefix(first, "<"):
			depth++
			continue
		}
		switch strings.ToLower(fields[0]) {
		case "sethandler":
			if len(fields) > 1 {
				h.Handler = fields[1]
			}
		case "require":
			if depth == 0 && len(fields) == 3 && fields[1] == "all" && fields[2] == "denied" {
				h.Denied = true
			}
		case "setenv":
			if len(fields) > 1 && strings.HasPrefix(fields[1], "CHAT_") {
				h.SetEnv = append(h.SetEnv, SetLine{Name: fields[1], Value: strings.Join(fields[2:], " "), Line: n})
			}
		}
	}
	if h.Handler != "" {
		h.Denied = false
	}
	return h, true
}

// ProgramDir returns the directory of the running program (symbolic links
// resolved), where its settings file (config.FileName) and the .htaccess
// that runs it are; "." when the system cannot tell.
func ProgramDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "."
	}
	return filepath.Dir(exe)
}

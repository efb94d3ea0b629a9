package hosting

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"cgichat/internal/config"
)

func TestRequestSetting(t *testing.T) {
	for _, name := range config.Names {
		database := config.IsDatabaseSetting(name)
		for _, tt := range []struct {
			mode Mode
			want bool
		}{{CGI, true}, {FastCGIStdin, !database}, {Daemon, false}} {
			if got := tt.mode.RequestSetting(name); got != tt.want {
				t.Errorf("%s.RequestSetting(%s) = %v, want %v", tt.mode, name, got, tt.want)
			}
		}
	}
}

// TestReadHtaccess reads the .htaccess files deploy.sh writes into
// cgi-bin, and one a person added SetEnv lines to.
func TestReadHtaccess(t *testing.T) {
	template := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "contrib", "htaccess", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name, text string
		handler    string
		denied     bool
		setEnv     []string // NAME=value@line
		mode       Mode
	}{
		{"CGI", strings.ReplaceAll(template("cgi-bin.htaccess"), "@HANDLER@", "cgi-script"), "cgi-script", false, nil, CGI},
		{"Fcgid", strings.ReplaceAll(template("cgi-bin.htaccess"), "@HANDLER@", "fcgid-script"), "fcgid-script", false, nil, FastCGIStdin},
		{"Daemon", template("cgi-bin-daemon.htaccess"), "", true, nil, Daemon},
		{"SetEnv", "Options +ExecCGI\nSetHandler cgi-script\n<FilesMatch \"x\">\n  Require all denied\n</FilesMatch>\nSetEnv CHAT_HISTORY 2\nsetenv  CHAT_DB /srv/chat.db\nSetEnv no-gzip 1\n",
			"cgi-script", false, []string{"CHAT_HISTORY=2@6", "CHAT_DB=/srv/chat.db@7"}, CGI},
		{"Nothing", "# empty\n", "", false, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, ".htaccess"), []byte(tt.text), 0o644)
			h, ok := ReadHtaccess(dir)
			if !ok {
				t.Fatal("ReadHtaccess: not found")
			}
			var setEnv []string
			for _, s := range h.SetEnv {
				setEnv = append(setEnv, s.Name+"="+s.Value+"@"+strconv.Itoa(s.Line))
			}
			if h.Handler != tt.handler || h.Denied != tt.denied || !slices.Equal(setEnv, tt.setEnv) {
				t.Errorf("got handler %q, denied %v, SetEnv %v; want %q, %v, %v", h.Handler, h.Denied, setEnv, tt.handler, tt.denied, tt.setEnv)
			}
			if mode, _ := checkMode("", h, ok); mode != tt.mode {
				t.Errorf("-check takes the mode for %v, want %v", mode, tt.mode)
			}
		})
	}
	if _, ok := ReadHtaccess(t.TempDir()); ok {
		t.Error("ReadHtaccess found a file in an empty directory")
	}
}

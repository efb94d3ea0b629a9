package config_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"cgichat/internal/config"
)

func TestParseFile(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    map[string]string // the settings, when the file is valid
		wantErr string            // else in the error, which names the line
	}{
		{"Empty", "", map[string]string{}, ""},
		{"CommentsAndBlankLines", "# the chat\n\n   # indented\n\t\nCHAT_HISTORY=2\n", map[string]string{"CHAT_HISTORY": "2"}, ""},
		{"SpacesAroundEquals", "  CHAT_HISTORY =  2  \nCHAT_DB= /srv/chat.db\n", map[string]string{"CHAT_HISTORY": "2", "CHAT_DB": "/srv/chat.db"}, ""},
		{"DoubleQuotes", `CHAT_ALLOWED_ORIGINS="https://a.example, https://b.example"`, map[string]string{"CHAT_ALLOWED_ORIGINS": "https://a.example, https://b.example"}, ""},
		{"SingleQuotes", "CHAT_RATE_LIMIT='10/1m'", map[string]string{"CHAT_RATE_LIMIT": "10/1m"}, ""},
		{"EmptyValue", "CHAT_KEEP_DAYS=\nCHAT_HISTORY=\"\"", map[string]string{"CHAT_KEEP_DAYS": "", "CHAT_HISTORY": ""}, ""},
		{"HashInValue", "CHAT_DB=/srv/a#b.db", map[string]string{"CHAT_DB": "/srv/a#b.db"}, ""},
		{"EqualsInValue", "CHAT_DB=postgres://chat@db/chat?sslmode=require", map[string]string{"CHAT_DB": "postgres://chat@db/chat?sslmode=require"}, ""},
		{"WindowsLineEnds", "\uFEFF# saved by Notepad\r\nCHAT_HISTORY=2\r\n", map[string]string{"CHAT_HISTORY": "2"}, ""},
		{"NoEquals", "# settings\nCHAT_HISTORY 2\n", nil, `cgichat.conf, line 2: "CHAT_HISTORY" has no "=": write NAME=value`},
		{"Export", "export CHAT_HISTORY=2", nil, `line 1: the line starts with "export": write the setting without it`},
		{"LowerCase", "\n\nchat_history=2", nil, `line 3: "chat_history" is not a setting's name`},
		{"NotChat", "HOME=/tmp", nil, `line 1: "HOME" is not a setting's name`},
		{"Unknown", "CHAT_HISTROY=2", nil, "line 1: CHAT_HISTROY is not one of cgichat's settings"},
		{"Twice", "CHAT_HISTORY=2\n# again\nCHAT_HISTORY=3", nil, "line 3: CHAT_HISTORY is set twice, on lines 1 and 3"},
		{"OpenQuote", `CHAT_DB="/srv/chat.db`, nil, `line 1: the value of CHAT_DB opens a quote (") and does not close it`},
		{"LoneQuote", `CHAT_DB='`, nil, "line 1: the value of CHAT_DB opens a quote (')"},
		{"NoName", "=2", nil, `line 1: the text before "=" is not a setting's name`},
		{"UTF16", "\xff\xfeC\x00H\x00A\x00T\x00", nil, `cgichat.conf: it is saved as UTF-16 ("Unicode"): save it as UTF-8`},
		{"ExportHidesPassword", "export CHAT_DB=postgres://chat:s3cret@db.example/chat", nil, `line 1: the line starts with "export": write the setting without it`},
		{"ColonHidesPassword", "CHAT_DB: mysql://chat:p@ss:w0rd@db.example/chat", nil, `line 1: "CHAT_DB" has no "="`},
		{"NameHidesPassword", "postgres://chat:s3cret@db/chat?sslmode=require", nil, `line 1: the text before "=" is not a setting's name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := config.ParseFile("/srv/www/cgi-bin/cgichat.conf", []byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFile: got error %v, want one containing %q", err, tt.wantErr)
				}
				if !config.IsFileError(err) {
					t.Errorf("ParseFile: got a %T, want a *config.FileError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			got := map[string]string{}
			for _, name := range f.Names() {
				got[name], _, _ = f.Lookup(name)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got settings %v, want %v", got, tt.want)
			}
		})
	}
}

// TestParseFileHidesValues checks that an error about a line repeats no
// more of it than a name: the error reaches clients in a 500, and a
// mistyped line may hold a database's password.
func TestParseFileHidesValues(t *testing.T) {
	const secret = "hunter2"
	tests := []struct {
		name, text string
	}{
		{"NoEquals", "CHAT_DB mysql://chat:hunter2@db/chat"},
		{"Colon", "CHAT_DB: postgres://chat:hunter2@db/chat?sslmode=require"},
		{"WordAlone", "hunter2"},
		{"Export", "export CHAT_DB=mysql://chat:hunter2@db/chat"},
		{"URLAsName", "mysql://chat:hunter2@db/chat?tls=true"},
		{"OpenQuote", `CHAT_DB="mysql://chat:hunter2@db/chat`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseFile("/srv/www/cgi-bin/cgichat.conf", []byte("# a\n"+tt.text+"\n"))
			if err == nil || !strings.Contains(err.Error(), "line 2") {
				t.Fatalf("ParseFile: got error %v, want one naming line 2", err)
			}
			if got := err.Error(); strings.Contains(got, secret) {
				t.Errorf("ParseFile: got error %q, want it without the line's password", got)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	missing, err := config.ReadFile(filepath.Join(dir, "cgichat.conf"))
	if err != nil || len(missing.Names()) != 0 {
		t.Errorf("a missing file: got %v settings and error %v, want none and no error", missing.Names(), err)
	}
	big := filepath.Join(dir, "big.conf")
	os.WriteFile(big, []byte(strings.Repeat("# padding\n", 10000)), 0o644)
	if _, err := config.ReadFile(big); err == nil || !strings.Contains(err.Error(), "longer than 64 KiB") {
		t.Errorf("a 100 KB file: got error %v, want it refused as too long", err)
	}
	if os.Geteuid() != 0 {
		closed := filepath.Join(dir, "closed.conf")
		os.WriteFile(closed, []byte("CHAT_HISTORY=2\n"), 0o000)
		if _, err := config.ReadFile(closed); err == nil || err.Error() != "closed.conf: the user the program runs as may not read it (permission denied)" {
			t.Errorf("an unreadable file: got error %v, want one saying so", err)
		}
	}
	// A file any user may change would let them choose the database.
	for _, mode := range []os.FileMode{0o666, 0o602} {
		open := filepath.Join(dir, "open.conf")
		os.WriteFile(open, []byte("CHAT_HISTORY=2\n"), 0o644)
		os.Chmod(open, mode)
		if _, err := config.ReadFile(open); err == nil || !strings.Contains(err.Error(), "open.conf: every user of this host may change it") {
			t.Errorf("a file of mode %04o: got error %v, want it refused as writable by others", mode, err)
		}
		link := filepath.Join(dir, "link.conf")
		os.Remove(link)
		os.Symlink(open, link)
		if _, err := config.ReadFile(link); err == nil || !strings.Contains(err.Error(), "every user of this host may change it") {
			t.Errorf("a link to a file of mode %04o: got error %v, want it refused as writable by others", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o644, 0o664, 0o600} {
		kept := filepath.Join(dir, "kept.conf")
		os.WriteFile(kept, []byte("CHAT_HISTORY=2\n"), 0o600)
		os.Chmod(kept, mode)
		if f, err := config.ReadFile(kept); err != nil || len(f.Names()) != 1 {
			t.Errorf("a file of mode %04o: got %v and error %v, want its one setting", mode, f.Names(), err)
		}
	}
	unreadable := filepath.Join(dir, "dir.conf")
	os.Mkdir(unreadable, 0o755)
	if _, err := config.ReadFile(unreadable); err == nil || !strings.Contains(err.Error(), "dir.conf") {
		t.Errorf("a directory: got error %v, want one naming the file", err)
	}
}

// TestPrecedence checks that a request's variables win over the
// environment, the environment over the file, the file over the default,
// and that an empty value anywhere counts as none.
func TestPrecedence(t *testing.T) {
	file, err := config.ParseFile("/x/cgichat.conf", []byte("CHAT_DB=/file/chat.db\nCHAT_HISTORY=2\nCHAT_POLL_MS=100\nCHAT_KEEP_DAYS=\nCHAT_NICK_HOURS=5\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := config.Layers{
		Request: env(map[string]string{"CHAT_POLL_MS": "300", "CHAT_NICK_HOURS": ""}),
		Env:     env(map[string]string{"CHAT_HISTORY": "3", "CHAT_POLL_MS": "200", "CHAT_KEEP_DAYS": "9", "CHAT_NICK_HOURS": " "}),
		File:    file,
	}
	tests := []struct {
		name, value string
		from        config.Source
		line        int
	}{
		{"CHAT_DB", "/file/chat.db", config.FromFile, 1},
		{"CHAT_HISTORY", "3", config.FromEnv, 0},
		{"CHAT_POLL_MS", "300", config.FromRequest, 0},
		{"CHAT_KEEP_DAYS", "9", config.FromEnv, 0},
		{"CHAT_NICK_HOURS", "5", config.FromFile, 5},
		{"CHAT_STREAM_MODE", "", config.FromDefault, 0},
	}
	for _, tt := range tests {
		v, from, line := l.Lookup(tt.name)
		if v != tt.value || from != tt.from || line != tt.line {
			t.Errorf("Lookup(%s) = %q, %v, %d; want %q, %v, %d", tt.name, v, from, line, tt.value, tt.from, tt.line)
		}
	}
	c, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.DB != "/file/chat.db" || c.History != 3 || c.Poll.Milliseconds() != 300 || c.KeepDays != 9 || c.NickHold.Hours() != 5 || c.Mode != "live" {
		t.Errorf("Load: got %+v", c)
	}
	wheres := map[string]string{}
	for _, s := range l.Settings(c) {
		wheres[s.Name] = s.Value + " from " + s.Where()
	}
	for name, want := range map[string]string{
		"CHAT_DB": "/file/chat.db from file, line 1", "CHAT_HISTORY": "3 from environment",
		"CHAT_POLL_MS": "300 from request", "CHAT_STREAM_MODE": "live from default",
	} {
		if wheres[name] != want {
			t.Errorf("Settings: %s is %q, want %q", name, wheres[name], want)
		}
	}
}

// invalid holds a value each setting refuses.
var invalid = map[string]string{
	"CHAT_DB":                 "/srv/chat.db?mode=ro",
	"CHAT_WAKE_DIR":           "wake",
	"CHAT_STREAM_SECONDS":     "300",
	"CHAT_HEARTBEAT_SECONDS":  "0",
	"CHAT_POLL_MS":            "fast",
	"CHAT_HISTORY":            "lots",
	"CHAT_STREAM_MODE":        "fast",
	"CHAT_RATE_LIMIT":         "5",
	"CHAT_ALLOWED_ORIGINS":    "example.org",
	"CHAT_ALLOWED_HOSTS":      "https://chat.example.org",
	"CHAT_TRUSTED_PROXIES":    "proxy.local",
	"CHAT_IPV6_PREFIX":        "16",
	"CHAT_NICK_HOURS":         "-1",
	"CHAT_STREAMS_PER_CLIENT": "many",
	"CHAT_MAX_STREAMS":        "-1",
	"CHAT_KEEP_MESSAGES":      "-5",
	"CHAT_KEEP_DAYS":          "1.5",
	"CHAT_KEEP_TOTAL_MB":      "100MB",
	"CHAT_ROOMS_PER_DAY":      "-1",
	"CHAT_LOG_LEVEL":          "loud",
}

// TestInvalidValueNamesLine checks that an invalid value in the file is
// reported with the file and its line, for every setting, and that the
// same value from the environment is reported without them.
func TestInvalidValueNamesLine(t *testing.T) {
	for _, name := range config.Names {
		value, ok := invalid[name]
		if !ok {
			t.Errorf("%s: the test has no invalid value for it; add one to invalid", name)
			continue
		}
		text := "# the chat\nCHAT_DB=/srv/chat.db\n\n" + name + "=" + value + "\n"
		if name == "CHAT_DB" {
			text = "# the chat\n\n\nCHAT_DB=" + value + "\n"
		}
		file, err := config.ParseFile("/srv/www/cgi-bin/cgichat.conf", []byte(text))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = config.Layers{File: file}.Load()
		if err == nil || !strings.HasPrefix(err.Error(), "cgichat.conf, line 4: "+name) {
			t.Errorf("%s=%s in the file: got error %v, want one starting %q", name, value, err, "cgichat.conf, line 4: "+name)
		}
		_, err = config.Layers{Env: env(map[string]string{"CHAT_DB": "/srv/chat.db", name: value}), File: file}.Load()
		if err == nil || config.IsFileError(err) || !strings.HasPrefix(err.Error(), name) {
			t.Errorf("%s=%s in the environment, over the file: got error %v, want one about %s alone", name, value, err, name)
		}
	}
}

// TestNamesAreWhatLoadReads keeps Names, Value and Help in step with Load:
// a setting added to Load must be added to each.
func TestNamesAreWhatLoadReads(t *testing.T) {
	t.Setenv("HOME", "/home/ada")
	var read []string
	if _, err := config.Load(func(name string) string {
		read = append(read, name)
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(read)
	read = slices.Compact(read)
	names := slices.Sorted(slices.Values(config.Names))
	if !slices.Equal(read, names) {
		t.Errorf("Load reads %v; config.Names is %v", read, names)
	}
	for _, name := range config.Names {
		if _, ok := (config.Config{}).Value(name); !ok {
			t.Errorf("Config.Value does not know %s", name)
		}
		if !regexp.MustCompile(`(?m)^  ` + name + ` `).MatchString(config.Help) {
			t.Errorf("Help does not describe %s", name)
		}
	}
	for _, name := range config.DatabaseNames {
		if !slices.Contains(config.Names, name) {
			t.Errorf("DatabaseNames holds %s, which is not a setting", name)
		}
	}
}

// valid holds two accepted values for each setting, neither the default.
var valid = map[string][2]string{
	"CHAT_DB":                 {"/srv/a.db", "/srv/b.db"},
	"CHAT_WAKE_DIR":           {"/run/a", "/run/b"},
	"CHAT_STREAM_SECONDS":     {"30", "60"},
	"CHAT_HEARTBEAT_SECONDS":  {"2", "3"},
	"CHAT_POLL_MS":            {"100", "200"},
	"CHAT_HISTORY":            {"2", "3"},
	"CHAT_STREAM_MODE":        {"batch", "batch"},
	"CHAT_RATE_LIMIT":         {"10/1m0s", "off"},
	"CHAT_ALLOWED_ORIGINS":    {"https://a.example", "https://b.example,https://c.example"},
	"CHAT_ALLOWED_HOSTS":      {"chat.example.org", "*.example.net,127.0.0.1"},
	"CHAT_TRUSTED_PROXIES":    {"127.0.0.1/32", "10.0.0.0/8"},
	"CHAT_IPV6_PREFIX":        {"56", "48"},
	"CHAT_NICK_HOURS":         {"1", "2"},
	"CHAT_STREAMS_PER_CLIENT": {"1", "2"},
	"CHAT_MAX_STREAMS":        {"0", "20"},
	"CHAT_KEEP_MESSAGES":      {"1", "2"},
	"CHAT_KEEP_DAYS":          {"1", "2"},
	"CHAT_KEEP_TOTAL_MB":      {"0", "500"},
	"CHAT_ROOMS_PER_DAY":      {"0", "3"},
	"CHAT_LOG_LEVEL":          {"debug", "error"},
}

// TestValueRoundTrip checks that Value writes each setting as Load reads
// it back.
func TestValueRoundTrip(t *testing.T) {
	t.Setenv("HOME", "/home/ada")
	for _, pick := range []int{0, 1} {
		vars := map[string]string{}
		for _, name := range config.Names {
			v, ok := valid[name]
			if !ok {
				t.Fatalf("%s: the test has no valid values for it; add them to valid", name)
			}
			vars[name] = v[pick]
		}
		c, err := config.Load(env(vars))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range config.Names {
			if got, _ := c.Value(name); got != vars[name] {
				t.Errorf("%s=%s: Value gives %q", name, vars[name], got)
			}
		}
	}
	c, _ := config.Load(env(map[string]string{"CHAT_DB": "postgres://chat:s3cret@db.example/chat"}))
	if got, _ := c.Value("CHAT_DB"); got != "postgres://chat:xxxxx@db.example/chat" {
		t.Errorf("a server URL's Value: got %q, want the password hidden", got)
	}
}

// TestDatabaseNames checks that exactly the settings in DatabaseNames
// change a Config's Database: the others may come with a request.
func TestDatabaseNames(t *testing.T) {
	base, err := config.Load(env(map[string]string{"CHAT_DB": "/srv/chat.db"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range config.Names {
		vars := map[string]string{"CHAT_DB": "/srv/chat.db", name: valid[name][0]}
		if name == "CHAT_DB" {
			vars[name] = "/srv/other.db"
		}
		c, err := config.Load(env(vars))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if g, e := c.Database() != base.Database(), config.IsDatabaseSetting(name); g != e {
			t.Errorf("%s changes the Database: %v; in DatabaseNames: %v", name, g, e)
		}
	}
}

// TestTemplate checks contrib/cgichat.conf, from which deploy.sh writes the
// settings file: every setting but CHAT_DB (which deploy.sh always sets) is
// listed once, commented out, with its default; uncommented, the list
// loads as the defaults.
func TestTemplate(t *testing.T) {
	b, err := os.ReadFile("../../contrib/cgichat.conf")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("@MODE@", "cgi", "@SETTINGS@", "CHAT_DB=/srv/chat.db",
		"@WAKE_DIR@", "/srv/chat.db-wake", "@POLL_MS@", "250", "@MAX_STREAMS@", "8", "@HEARTBEAT@", "5").Replace(string(b))
	if m := regexp.MustCompile(`@[A-Z_]+@`).FindString(text); m != "" {
		t.Fatalf("the template has a placeholder deploy.sh does not fill: %s", m)
	}
	listed := regexp.MustCompile(`(?m)^# (CHAT_[A-Z0-9_]+=.*)$`).FindAllStringSubmatch(text, -1)
	uncommented := "CHAT_DB=/srv/chat.db\n"
	var names []string
	for _, m := range listed {
		uncommented += m[1] + "\n"
		names = append(names, strings.SplitN(m[1], "=", 2)[0])
	}
	want := slices.DeleteFunc(slices.Clone(config.Names), func(n string) bool { return n == "CHAT_DB" })
	if !slices.Equal(names, want) {
		t.Errorf("the template lists %v, want %v in that order", names, want)
	}
	file, err := config.ParseFile("cgichat.conf", []byte(uncommented))
	if err != nil {
		t.Fatalf("the template's list, uncommented: %v", err)
	}
	got, err := config.Layers{File: file}.Load()
	if err != nil {
		t.Fatal(err)
	}
	defaults, _ := config.Load(env(map[string]string{"CHAT_DB": "/srv/chat.db"}))
	// deploy.sh writes the stream budget and heartbeat the mode has by
	// default (8 and 5 s under CGI), where the default depends on the mode.
	if g, e := got.StreamBudget(false), defaults.StreamBudget(false); g != e {
		t.Errorf("the template's CHAT_MAX_STREAMS gives CGI a budget of %d, want the default %d", g, e)
	}
	got.MaxStreams = defaults.MaxStreams
	// So does the heartbeat (5 s under CGI).
	if g, e := got.Database().HeartbeatFor(false), defaults.Database().HeartbeatFor(false); g != e {
		t.Errorf("the template's CHAT_HEARTBEAT_SECONDS gives CGI a heartbeat of %v, want the default %v", g, e)
	}
	got.Heartbeat = defaults.Heartbeat
	if got != defaults {
		t.Errorf("the template's defaults load as %+v, want %+v", got, defaults)
	}
	if _, err := config.ParseFile("cgichat.conf", []byte(text)); err != nil {
		t.Errorf("the file deploy.sh writes from the template: %v", err)
	}
}

func TestWatched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cgichat.conf")
	w := config.Watch(path)
	current := func() string {
		t.Helper()
		f, err := w.Current()
		if err != nil {
			return "error: " + err.Error()
		}
		v, _, _ := f.Lookup("CHAT_HISTORY")
		return v
	}
	if got := current(); got != "" {
		t.Errorf("no file: got %q, want no setting", got)
	}
	os.WriteFile(path, []byte("CHAT_HISTORY=2\n"), 0o644)
	if got := current(); got != "2" {
		t.Errorf("a new file: got %q, want 2", got)
	}
	// Replaced by rename, as an upload or deploy.sh does, with the same size.
	os.WriteFile(path+".new", []byte("CHAT_HISTORY=3\n"), 0o644)
	os.Rename(path+".new", path)
	if got := current(); got != "3" {
		t.Errorf("a replaced file: got %q, want 3", got)
	}
	os.WriteFile(path, []byte("CHAT_HISTORY 4\n"), 0o644)
	if got := current(); !strings.Contains(got, "line 1") {
		t.Errorf("an invalid file: got %q, want its error", got)
	}
	os.Remove(path)
	if got := current(); got != "" {
		t.Errorf("a removed file: got %q, want no setting", got)
	}
	var fe *config.FileError
	if _, err := config.ParseFile(path, []byte("x")); !errors.As(err, &fe) || fe.Line != 1 || fe.Path != path {
		t.Errorf("FileError: got %#v, want line 1 of %s", err, path)
	}
}

// Package config reads cgichat's settings: from the environment, where
// Apache's SetEnv, nginx's fastcgi_param and systemd's Environment= put
// them, and from the settings file beside the programs (file.go), which
// reaches them on every host. Every default lives here, and every value is
// checked before it is used.
package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"cgichat/internal/ratelimit"
	"cgichat/internal/wake"
)

// Stream modes: live keeps the response open; batch answers with what is
// pending (or the first new message) and ends, for hosts that buffer.
const (
	ModeLive  = "live"
	ModeBatch = "batch"
)

// Defaults. Heartbeat and stream life are chosen for Apache: under mod_cgid
// a stream outlives its departed client by a few heartbeats, so the
// heartbeat bounds how long it lingers (docs/contract.md); 120 s stays
// below mod_fcgid's 300 s FcgidBusyTimeout while keeping reconnects rare. The poll interval bounds
// the delay only of writes no wake-up announces: on SQLite the sqlite3
// shell's, rare enough for 250 ms; on a database server every other web
// host's posts, hence 25 ms there (one process per host polls that often).
//
// A daemon behind nginx learns that a reader left from the read side
// (nginx closes the stream's FastCGI connection), so there its heartbeat
// need only keep the front end's 60 s read timeout, and 30 s cuts most of
// the idle cost at 10,000 streams (docs/performance.md). Apache
// mod_proxy_fcgi and Caddy keep the connection until a write fails, so
// behind them only the heartbeat finds a reader who left: the daemons'
// default stays at DefaultHeartbeatSeconds, and docs/configuration.md says
// to set 30 behind nginx. Stream rows are renewed every
// DefaultHeartbeatSeconds in every mode (Renew), so a longer heartbeat
// does not keep a reader who left in the presence list.
const (
	DefaultStreamSeconds          = 120
	DefaultHeartbeatSeconds       = 5
	DefaultDaemonHeartbeatSeconds = DefaultHeartbeatSeconds
	DefaultPollMS                 = 250
	DefaultServerPollMS           = 25
	DefaultHistory                = 50
	DefaultDBDir                  = "cgichat-data"
	DefaultDBName                 = "chat.db"
	DefaultRateLimit              = "5/10s"
	DefaultNickHours              = 24
	DefaultStreamsPerClient       = 10
	// DefaultMaxStreams is the budget of live streams of a host whose
	// every stream is a process (CGI, mod_fcgid): 8 of a shared host's
	// usual 20 entry processes, leaving the rest for posts, polls, the
	// page and the owner's other scripts. A daemon multiplexes streams in
	// one process and has no budget by default.
	DefaultMaxStreams   = 8
	DefaultKeepMessages = 10000
	DefaultKeepDays     = 0
	DefaultIPv6Prefix   = 64
)

// Defaults of the bounds on storage (docs/configuration.md says why these
// numbers). 100 MB of messages is some 600,000 lines of chat, or 12,000
// messages of the longest kind, and leaves a shared host's disk quota
// (often 1 to 10 GB) to the site; 20 new rooms a day is far more than
// people start from one address, and keeps one address from spreading
// its posts over rooms without end.
const (
	DefaultKeepTotalMB = 100
	DefaultRoomsPerDay = 20
)

// Config is one complete set of settings. Under FastCGI settings may
// differ per request; Database is the part that needs a database of its
// own.
type Config struct {
	DB        string        // CHAT_DB: path of the SQLite file, or a mysql:// or postgres:// URL
	WakeDir   string        // CHAT_WAKE_DIR: where post wakes the streams of this host
	Stream    time.Duration // CHAT_STREAM_SECONDS: longest life of one stream response
	Heartbeat time.Duration // CHAT_HEARTBEAT_SECONDS: a comment line this often; 0 the mode's default (HeartbeatFor)
	Poll      time.Duration // CHAT_POLL_MS: how often a stream checks the database unprompted
	History   int           // CHAT_HISTORY: messages sent on first join
	Mode      string        // CHAT_STREAM_MODE: live or batch

	RateLimit        Rate          // CHAT_RATE_LIMIT: posts per client address and per nick; zero is off
	AllowedOrigins   string        // CHAT_ALLOWED_ORIGINS: other origins whose pages may post, comma-separated
	AllowedHosts     string        // CHAT_ALLOWED_HOSTS: the host names the chat is served under, comma-separated
	TrustedProxies   string        // CHAT_TRUSTED_PROXIES: addresses whose X-Forwarded-For is believed
	NickHold         time.Duration // CHAT_NICK_HOURS: how long an idle nick stays its owner's
	StreamsPerClient int           // CHAT_STREAMS_PER_CLIENT: open streams per client address; 0 is no cap
	MaxStreams       int           // CHAT_MAX_STREAMS: live streams this host holds at once; 0 is no budget, -1 the mode's default
	KeepMessages     int           // CHAT_KEEP_MESSAGES: messages kept per room; 0 keeps all
	KeepDays         int           // CHAT_KEEP_DAYS: days a message is kept; 0 keeps it forever
	KeepTotalMB      int           // CHAT_KEEP_TOTAL_MB: megabytes of messages kept in all rooms; 0 keeps all
	RoomsPerDay      int           // CHAT_ROOMS_PER_DAY: rooms one client address may start in 24 hours; 0 is no cap
	IPv6Prefix       int           // CHAT_IPV6_PREFIX: an IPv6 client is its prefix of this many bits
	LogLevel         slog.Level    // CHAT_LOG_LEVEL: debug, info, warn or error
}

// Rate is a token bucket: N posts at once, refilled at N per Per.
type Rate = ratelimit.Rate

// Database is what one opened database serves: its connection, this
// host's wake-ups and the feed that watches it. A process keeps one per
// distinct Database (it is comparable), whatever else differs per request.
type Database struct {
	DB        string        // CHAT_DB
	WakeDir   string        // CHAT_WAKE_DIR
	Poll      time.Duration // CHAT_POLL_MS
	Heartbeat time.Duration // CHAT_HEARTBEAT_SECONDS; 0 the defaults (HeartbeatFor, Renew)
}

// HeartbeatFor returns how often streams get a heartbeat (a comment
// line): CHAT_HEARTBEAT_SECONDS, or by default
// DefaultHeartbeatSeconds where every stream is a process (not
// concurrent: CGI, mod_fcgid) and DefaultDaemonHeartbeatSeconds for a
// daemon.
func (d Database) HeartbeatFor(concurrent bool) time.Duration {
	switch {
	case d.Heartbeat > 0:
		return d.Heartbeat
	case concurrent:
		return DefaultDaemonHeartbeatSeconds * time.Second
	}
	return DefaultHeartbeatSeconds * time.Second
}

// Renew returns how often a process renews its streams' rows, which sets
// how long presence outlives a stream (feed.StaleAfter):
// DefaultHeartbeatSeconds in every mode, or CHAT_HEARTBEAT_SECONDS when
// that is shorter. A longer heartbeat then saves writes per stream without
// keeping a reader who left in the presence list for a minute and more.
func (d Database) Renew() time.Duration {
	if d.Heartbeat > 0 {
		return min(d.Heartbeat, DefaultHeartbeatSeconds*time.Second)
	}
	return DefaultHeartbeatSeconds * time.Second
}

// Database returns the settings c shares with every request on its
// database.
func (c Config) Database() Database {
	return Database{DB: c.DB, WakeDir: c.WakeDir, Poll: c.Poll, Heartbeat: c.Heartbeat}
}

// Load reads the configuration through getenv (os.Getenv, or a lookup that
// prefers FastCGI parameters). The error names the variable, the value and
// what would be accepted.
func Load(getenv func(string) string) (Config, error) {
	c := Config{Mode: ModeLive}
	var err error
	if c.DB, err = database(getenv("CHAT_DB")); err != nil {
		return Config{}, err
	}
	if c.WakeDir, err = wakeDir(getenv("CHAT_WAKE_DIR"), c.DB); err != nil {
		return Config{}, err
	}
	pollMS := DefaultPollMS
	if IsServerURL(c.DB) {
		pollMS = DefaultServerPollMS
	}
	ints := []struct {
		name     string
		def      int
		min, max int
		unit     string
		set      func(int)
	}{
		{"CHAT_STREAM_SECONDS", DefaultStreamSeconds, 1, 299, "seconds", func(n int) { c.Stream = time.Duration(n) * time.Second }},
		{"CHAT_HEARTBEAT_SECONDS", 0, 1, 30, "seconds", func(n int) { c.Heartbeat = time.Duration(n) * time.Second }},
		{"CHAT_POLL_MS", pollMS, 5, 10000, "milliseconds", func(n int) { c.Poll = time.Duration(n) * time.Millisecond }},
		{"CHAT_HISTORY", DefaultHistory, 0, 1000, "messages", func(n int) { c.History = n }},
		{"CHAT_NICK_HOURS", DefaultNickHours, 0, 24 * 365, "hours", func(n int) { c.NickHold = time.Duration(n) * time.Hour }},
		{"CHAT_STREAMS_PER_CLIENT", DefaultStreamsPerClient, 0, 100000, "streams", func(n int) { c.StreamsPerClient = n }},
		{"CHAT_MAX_STREAMS", -1, 0, 100000, "streams", func(n int) { c.MaxStreams = n }},
		{"CHAT_KEEP_MESSAGES", DefaultKeepMessages, 0, 100000000, "messages", func(n int) { c.KeepMessages = n }},
		{"CHAT_KEEP_DAYS", DefaultKeepDays, 0, 100000, "days", func(n int) { c.KeepDays = n }},
		{"CHAT_KEEP_TOTAL_MB", DefaultKeepTotalMB, 0, 1000000, "megabytes", func(n int) { c.KeepTotalMB = n }},
		{"CHAT_ROOMS_PER_DAY", DefaultRoomsPerDay, 0, 100000, "rooms", func(n int) { c.RoomsPerDay = n }},
		{"CHAT_IPV6_PREFIX", DefaultIPv6Prefix, 32, 128, "bits", func(n int) { c.IPv6Prefix = n }},
	}
	for _, v := range ints {
		n, err := intVar(v.name, getenv(v.name), v.def, v.min, v.max, v.unit)
		if err != nil {
			return Config{}, err
		}
		v.set(n)
	}
	switch m := strings.TrimSpace(getenv("CHAT_STREAM_MODE")); m {
	case "":
	case ModeLive, ModeBatch:
		c.Mode = m
	default:
		return Config{}, fmt.Errorf("CHAT_STREAM_MODE must be %q or %q, not %q", ModeLive, ModeBatch, m)
	}
	if c.LogLevel, err = LogLevel(getenv("CHAT_LOG_LEVEL")); err != nil {
		return Config{}, err
	}
	if c.RateLimit, err = rate(getenv("CHAT_RATE_LIMIT")); err != nil {
		return Config{}, err
	}
	if c.AllowedOrigins, err = origins(getenv("CHAT_ALLOWED_ORIGINS")); err != nil {
		return Config{}, err
	}
	if c.TrustedProxies, err = proxies(getenv("CHAT_TRUSTED_PROXIES")); err != nil {
		return Config{}, err
	}
	if c.AllowedHosts, err = hosts(getenv("CHAT_ALLOWED_HOSTS")); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LogLevel parses CHAT_LOG_LEVEL; empty means info.
func LogLevel(s string) (slog.Level, error) {
	var l slog.Level
	s = strings.TrimSpace(s)
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("CHAT_LOG_LEVEL must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// rate parses CHAT_RATE_LIMIT: "off", or N/D with D a duration such as 10s
// or 1m (a bare number is seconds).
func rate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = DefaultRateLimit
	}
	if s == "off" {
		return Rate{}, nil
	}
	bad := fmt.Errorf("CHAT_RATE_LIMIT must be \"off\" or posts per time such as \"5/10s\" (1 to 10000 posts, 1s to 24h), not %q", s)
	ns, ds, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(ns)
	if !ok || err != nil || n < 1 || n > 10000 {
		return Rate{}, bad
	}
	if _, err := strconv.Atoi(ds); err == nil {
		ds += "s"
	}
	d, err := time.ParseDuration(ds)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return Rate{}, bad
	}
	return Rate{N: n, Per: d}, nil
}

// origins checks CHAT_ALLOWED_ORIGINS: scheme://host[:port] entries,
// comma-separated; it returns them lower-cased, joined by commas.
func origins(s string) (string, error) {
	var out []string
	for _, o := range strings.Split(s, ",") {
		o = strings.ToLower(strings.TrimSpace(o))
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			return "", fmt.Errorf("CHAT_ALLOWED_ORIGINS must list origins such as https://example.org, comma-separated; %q is not one", o)
		}
		out = append(out, o)
	}
	return strings.Join(out, ","), nil
}

// hosts checks CHAT_ALLOWED_HOSTS: host names or IP addresses, or
// *.example.org for every name under example.org, comma-separated; it
// returns them lower-cased, without a final dot, joined by commas.
func hosts(s string) (string, error) {
	var out []string
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h == "" {
			continue
		}
		name := strings.TrimPrefix(h, "*.")
		if a, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil && name == h {
			out = append(out, a.String())
			continue
		}
		if !hostName(name) {
			return "", fmt.Errorf("CHAT_ALLOWED_HOSTS must list host names such as chat.example.org or *.example.org, or IP addresses, comma-separated (no scheme, no port); %q is not one", h)
		}
		out = append(out, h)
	}
	return strings.Join(out, ","), nil
}

// hostName reports whether s is a DNS host name: dot-separated labels of
// letters, digits and hyphens (after IDNA, as browsers send them).
func hostName(s string) bool {
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return len(s) <= 253
}

// proxies checks CHAT_TRUSTED_PROXIES: IP addresses or CIDR prefixes,
// comma-separated; it returns them in canonical form, joined by commas.
func proxies(s string) (string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return "", fmt.Errorf("CHAT_TRUSTED_PROXIES must list IP addresses or prefixes such as 127.0.0.1 or 10.0.0.0/8; %q is neither", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, prefix.Masked().String())
	}
	return strings.Join(out, ","), nil
}

// StreamBudget returns how many live streams this host may hold at once:
// CHAT_MAX_STREAMS, or by default DefaultMaxStreams where every stream is a
// process (not concurrent: CGI, mod_fcgid) and no budget (0) for a daemon.
func (c Config) StreamBudget(concurrent bool) int {
	switch {
	case c.MaxStreams >= 0:
		return c.MaxStreams
	case concurrent:
		return 0
	}
	return DefaultMaxStreams
}

// TrustedPrefixes returns the parsed CHAT_TRUSTED_PROXIES.
func (c Config) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range strings.Split(c.TrustedProxies, ",") {
		if prefix, err := netip.ParsePrefix(p); err == nil {
			out = append(out, prefix)
		}
	}
	return out
}

// AllowedHostList returns the parsed CHAT_ALLOWED_HOSTS.
func (c Config) AllowedHostList() []string {
	if c.AllowedHosts == "" {
		return nil
	}
	return strings.Split(c.AllowedHosts, ",")
}

// AllowedOriginList returns the parsed CHAT_ALLOWED_ORIGINS.
func (c Config) AllowedOriginList() []string {
	if c.AllowedOrigins == "" {
		return nil
	}
	return strings.Split(c.AllowedOrigins, ",")
}

// intVar parses one whole-number variable, or returns def when it is unset.
func intVar(name, s string, def, min, max int, unit string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%s must be a whole number of %s from %d to %d, not %q", name, unit, min, max, s)
	}
	return n, nil
}

// urlScheme is what a URL's scheme may be (RFC 3986, section 3.1).
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]{0,19}$`)

// Database server URL schemes CHAT_DB accepts besides a SQLite path.
var serverSchemes = []string{"mysql://", "postgres://", "postgresql://"}

// IsServerURL reports whether db names a database server (MySQL/MariaDB or
// PostgreSQL) rather than a SQLite file.
func IsServerURL(db string) bool {
	for _, s := range serverSchemes {
		if strings.HasPrefix(db, s) {
			return true
		}
	}
	return false
}

// database checks CHAT_DB: a server URL, or else a SQLite path.
func database(s string) (string, error) {
	s = strings.TrimSpace(s)
	if scheme, _, ok := strings.Cut(s, "://"); ok && !IsServerURL(s) {
		// Taken as a path, mariadb://user:password@host/db would be a
		// SQLite file in a directory named after the password.
		if !urlScheme.MatchString(scheme) {
			scheme = "?"
		}
		return "", fmt.Errorf("CHAT_DB names a database server by a scheme cgichat does not know (%s://): write mysql:// (MySQL and MariaDB), postgres:// or a SQLite file's path", scheme)
	}
	if !IsServerURL(s) {
		return dbPath(s)
	}
	u, err := url.Parse(s)
	if err != nil {
		// The error would quote the URL, password and all.
		return "", fmt.Errorf("CHAT_DB is not a valid URL (%s://user:password@host:port/database)", strings.SplitN(s, ":", 2)[0])
	}
	// A server on a Unix socket may be named in the query instead:
	// ?socket=PATH (MySQL), ?host=DIRECTORY (PostgreSQL).
	q := u.Query()
	hosted := u.Host != "" || q.Get("socket") != "" || q.Get("host") != ""
	if !hosted || strings.Trim(u.Path, "/") == "" || strings.Contains(strings.Trim(u.Path, "/"), "/") {
		return "", fmt.Errorf("CHAT_DB must name a host and a database: %s://user:password@host:port/database, not %s", u.Scheme, redacted(u))
	}
	return s, nil
}

// redacted returns u with its password hidden, in the user part or in
// the query (PostgreSQL's ?password=), as url.URL.Redacted hides the first.
func redacted(u *url.URL) string {
	v := *u
	if q := v.Query(); len(q) > 0 {
		hidden := false
		for k := range q {
			if strings.EqualFold(k, "password") {
				q[k], hidden = []string{"xxxxx"}, true
			}
		}
		if hidden {
			v.RawQuery = q.Encode()
		}
	}
	return v.Redacted()
}

// Redacted returns db, a CHAT_DB value, with a database server's password
// hidden, for people and logs.
func Redacted(db string) string {
	if !IsServerURL(db) {
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return strings.SplitN(db, ":", 2)[0] + "://…"
	}
	return redacted(u)
}

// wakeDir returns CHAT_WAKE_DIR when set. Otherwise the wake-up sockets go
// beside a SQLite file, and for a database server into DefaultDBDir in the
// home directory, one directory per server and database.
func wakeDir(s, db string) (string, error) {
	s = strings.TrimSpace(s)
	if s != "" {
		if !filepath.IsAbs(s) {
			return "", fmt.Errorf("CHAT_WAKE_DIR must be an absolute path, not %q", s)
		}
		return filepath.Clean(s), nil
	}
	if !IsServerURL(db) {
		return wake.Dir(db), nil
	}
	u, _ := url.Parse(db)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, u.Host+"-"+strings.Trim(u.Path, "/"))
	home, err := homeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, DefaultDBDir, name+"-wake"), nil
}

// dbPath returns the absolute path of the database: CHAT_DB when set, else
// DefaultDBDir/DefaultDBName in the home directory of the user the program
// runs as, which is outside any docroot on a typical host.
func dbPath(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		home, err := homeDir()
		if err != nil {
			return "", fmt.Errorf("CHAT_DB is not set and the home directory is unknown (%v); set CHAT_DB to the path of the database file", err)
		}
		s = filepath.Join(home, DefaultDBDir, DefaultDBName)
	}
	if strings.ContainsAny(s, "?#") {
		return "", fmt.Errorf("CHAT_DB may not contain '?' or '#': %q", s)
	}
	if strings.HasSuffix(s, "/") {
		return "", fmt.Errorf("CHAT_DB must name a file, not a directory: %q", s)
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", fmt.Errorf("CHAT_DB %q: %w", s, err)
	}
	return abs, nil
}

// homeDir returns $HOME, or the passwd entry's home when the web server
// cleared the environment, as Apache does for CGI programs.
func homeDir() (string, error) {
	if h := os.Getenv("HOME"); h != "" {
		return h, nil
	}
	u, err := user.Current()
	if err != nil {
		return "", err
	}
	if u.HomeDir == "" {
		return "", fmt.Errorf("user %s has no home directory", u.Username)
	}
	return u.HomeDir, nil
}

// Help describes every variable and its default, for usage texts.
var Help = fmt.Sprintf(`Settings: NAME=value lines in cgichat.conf beside the program, or
environment variables (SetEnv, fastcgi_param, systemd), which win over it:
  CHAT_DB                 SQLite file (default ~/%s/%s of the user
                          the program runs as; keep it outside the docroot),
                          or mysql://USER:PASSWORD@HOST:PORT/DATABASE or
                          postgres://USER:PASSWORD@HOST:PORT/DATABASE
  CHAT_WAKE_DIR           where post wakes this host's streams (default:
                          beside the SQLite file, or ~/cgichat-data/HOST-DB-wake)
  CHAT_STREAM_SECONDS     longest life of one stream response (default %d)
  CHAT_HEARTBEAT_SECONDS  a comment line this often (default %d; daemons
                          behind nginx: 30 saves CPU, see docs)
  CHAT_POLL_MS            database check without a wake-up (default %d;
                          %d on a database server, for other hosts' posts)
  CHAT_HISTORY            messages sent on first join (default %d)
  CHAT_STREAM_MODE        live, or batch for hosts that buffer (default live)
  CHAT_RATE_LIMIT         posts per client address and per nick: N/duration,
                          or off (default %s)
  CHAT_ALLOWED_ORIGINS    other sites whose pages may post, comma-separated
  CHAT_ALLOWED_HOSTS      the host names the chat is served under, comma-
                          separated (*.example.org for subdomains); posts
                          naming another host are refused (DNS rebinding)
  CHAT_TRUSTED_PROXIES    proxies whose X-Forwarded-For and -Proto are believed
                          (IPs/CIDRs)
  CHAT_IPV6_PREFIX        an IPv6 client counts as its prefix of this many
                          bits, for limits, caps and bans (default %d)
  CHAT_NICK_HOURS         an idle nick stays its owner's this long (default %d)
  CHAT_STREAMS_PER_CLIENT open streams per client address, 0: no cap (default %d)
  CHAT_MAX_STREAMS        live streams this host holds at once; past it
                          readers poll; 0: no budget (default %d under CGI
                          and mod_fcgid, 0 for the daemons)
  CHAT_KEEP_MESSAGES      messages kept per room, 0: all (default %d)
  CHAT_KEEP_DAYS          days messages are kept, 0: forever (default %d)
  CHAT_KEEP_TOTAL_MB      megabytes of messages kept in all rooms together,
                          the oldest removed first; 0: no bound (default %d)
  CHAT_ROOMS_PER_DAY      new rooms one client address may start in 24
                          hours, 0: no cap (default %d)
  CHAT_LOG_LEVEL          debug, info, warn or error (default info)
`, DefaultDBDir, DefaultDBName, DefaultStreamSeconds, DefaultHeartbeatSeconds, DefaultPollMS, DefaultServerPollMS, DefaultHistory,
	DefaultRateLimit, DefaultIPv6Prefix, DefaultNickHours, DefaultStreamsPerClient, DefaultMaxStreams, DefaultKeepMessages, DefaultKeepDays,
	DefaultKeepTotalMB, DefaultRoomsPerDay)

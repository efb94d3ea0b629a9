package config_test

import (
	"strings"
	"testing"
	"time"

	"cgichat/internal/config"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadDefaults(t *testing.T) {
	t.Setenv("HOME", "/home/ada")
	got, err := config.Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		DB:        "/home/ada/cgichat-data/chat.db",
		WakeDir:   "/home/ada/cgichat-data/chat.db-wake",
		Stream:    120 * time.Second,
		Heartbeat: 0, // the mode's: HeartbeatFor
		Poll:      250 * time.Millisecond,
		History:   50,
		Mode:      "live",

		RateLimit:        config.Rate{N: 5, Per: 10 * time.Second},
		NickHold:         24 * time.Hour,
		StreamsPerClient: 10,
		MaxStreams:       -1,
		KeepMessages:     10000,
		KeepTotalMB:      100,
		RoomsPerDay:      20,
		IPv6Prefix:       64,
	}
	if got != want {
		t.Errorf("Load() = %+v, want %+v", got, want)
	}
}

// TestServerPollDefault checks that a database server, where other web
// hosts' posts come without a wake-up, is polled more often by default,
// and that CHAT_POLL_MS still decides.
func TestServerPollDefault(t *testing.T) {
	t.Setenv("HOME", "/home/ada")
	tests := []struct {
		db, poll string
		want     time.Duration
	}{
		{"", "", 250 * time.Millisecond},
		{"mysql://chat:pw@db.example:3306/chat", "", 25 * time.Millisecond},
		{"postgres://chat@db.example/chat", "", 25 * time.Millisecond},
		{"postgres://chat@db.example/chat", "500", 500 * time.Millisecond},
	}
	for _, tt := range tests {
		c, err := config.Load(env(map[string]string{"CHAT_DB": tt.db, "CHAT_POLL_MS": tt.poll}))
		if err != nil {
			t.Fatalf("CHAT_DB=%q CHAT_POLL_MS=%q: %v", tt.db, tt.poll, err)
		}
		if c.Poll != tt.want {
			t.Errorf("CHAT_DB=%q CHAT_POLL_MS=%q: got poll %v, want %v", tt.db, tt.poll, c.Poll, tt.want)
		}
	}
}

func TestLoadValues(t *testing.T) {
	got, err := config.Load(env(map[string]string{
		"CHAT_DB":                 "/srv/chat/x.db",
		"CHAT_STREAM_SECONDS":     " 30 ",
		"CHAT_HEARTBEAT_SECONDS":  "2",
		"CHAT_POLL_MS":            "20",
		"CHAT_HISTORY":            "0",
		"CHAT_STREAM_MODE":        "batch",
		"CHAT_RATE_LIMIT":         "off",
		"CHAT_ALLOWED_ORIGINS":    "https://Example.org, http://127.0.0.1:8080",
		"CHAT_TRUSTED_PROXIES":    "127.0.0.1, 10.1.2.3/8,::1",
		"CHAT_NICK_HOURS":         "0",
		"CHAT_STREAMS_PER_CLIENT": "0",
		"CHAT_MAX_STREAMS":        "12",
		"CHAT_KEEP_MESSAGES":      "100",
		"CHAT_KEEP_DAYS":          "30",
		"CHAT_ALLOWED_HOSTS":      " Chat.Example.org., *.example.net,[::1], 127.0.0.1 ",
		"CHAT_IPV6_PREFIX":        "56",
		"CHAT_KEEP_TOTAL_MB":      "0",
		"CHAT_ROOMS_PER_DAY":      "3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{DB: "/srv/chat/x.db", WakeDir: "/srv/chat/x.db-wake", Stream: 30 * time.Second, Heartbeat: 2 * time.Second,
		Poll: 20 * time.Millisecond, History: 0, Mode: "batch",
		AllowedOrigins: "https://example.org,http://127.0.0.1:8080",
		TrustedProxies: "127.0.0.1/32,10.0.0.0/8,::1/128",
		AllowedHosts:   "chat.example.org,*.example.net,::1,127.0.0.1",
		MaxStreams:     12, KeepMessages: 100, KeepDays: 30, IPv6Prefix: 56, KeepTotalMB: 0, RoomsPerDay: 3}
	if got != want {
		t.Errorf("Load() = %+v, want %+v", got, want)
	}
}

// TestStreamBudget checks the budget of live streams: CHAT_MAX_STREAMS
// when set (0 turns it off), else a share of a shared host's processes
// where every stream is one, and none for a daemon.
func TestStreamBudget(t *testing.T) {
	tests := []struct {
		set        string
		concurrent bool
		want       int
	}{
		{"", false, config.DefaultMaxStreams},
		{"", true, 0},
		{"10", false, 10},
		{"10", true, 10},
		{"0", false, 0},
	}
	for _, tt := range tests {
		c, err := config.Load(env(map[string]string{"CHAT_DB": "/srv/x.db", "CHAT_MAX_STREAMS": tt.set}))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.StreamBudget(tt.concurrent); got != tt.want {
			t.Errorf("CHAT_MAX_STREAMS=%q, concurrent %v: budget %d, want %d", tt.set, tt.concurrent, got, tt.want)
		}
	}
}

// TestHeartbeatFor checks the heartbeat: CHAT_HEARTBEAT_SECONDS when set,
// else 5 s in every mode (a daemon behind Apache mod_proxy_fcgi or Caddy
// learns of a reader who left only by a write); and that rows are renewed
// every 5 s, or as often as the heartbeat where that is shorter.
func TestHeartbeatFor(t *testing.T) {
	tests := []struct {
		set        string
		concurrent bool
		want       time.Duration
		wantRenew  time.Duration
	}{
		{"", false, 5 * time.Second, 5 * time.Second},
		{"", true, 5 * time.Second, 5 * time.Second},
		{"2", false, 2 * time.Second, 2 * time.Second},
		{"2", true, 2 * time.Second, 2 * time.Second},
		{"30", false, 30 * time.Second, 5 * time.Second},
		{"30", true, 30 * time.Second, 5 * time.Second},
	}
	for _, tt := range tests {
		c, err := config.Load(env(map[string]string{"CHAT_DB": "/srv/x.db", "CHAT_HEARTBEAT_SECONDS": tt.set}))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Database().HeartbeatFor(tt.concurrent); got != tt.want {
			t.Errorf("CHAT_HEARTBEAT_SECONDS=%q, concurrent %v: heartbeat %v, want %v", tt.set, tt.concurrent, got, tt.want)
		}
		if got := c.Database().Renew(); got != tt.wantRenew {
			t.Errorf("CHAT_HEARTBEAT_SECONDS=%q: rows renewed every %v, want %v", tt.set, got, tt.wantRenew)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, key, value, wantInMessage string
	}{
		{"StreamNotANumber", "CHAT_STREAM_SECONDS", "abc", `CHAT_STREAM_SECONDS must be a whole number of seconds from 1 to 299, not "abc"`},
		{"StreamAtFcgidBusyTimeout", "CHAT_STREAM_SECONDS", "300", "from 1 to 299"},
		{"HeartbeatZero", "CHAT_HEARTBEAT_SECONDS", "0", "CHAT_HEARTBEAT_SECONDS"},
		{"PollTooFast", "CHAT_POLL_MS", "1", "CHAT_POLL_MS"},
		{"HistoryNegative", "CHAT_HISTORY", "-1", "CHAT_HISTORY"},
		{"HistoryFraction", "CHAT_HISTORY", "1.5", "CHAT_HISTORY"},
		{"UnknownMode", "CHAT_STREAM_MODE", "fast", `CHAT_STREAM_MODE must be "live" or "batch", not "fast"`},
		{"DBWithQuery", "CHAT_DB", "/x/chat.db?mode=ro", "CHAT_DB may not contain"},
		{"DBDirectory", "CHAT_DB", "/x/", "must name a file"},
		{"DBURLWithoutDatabase", "CHAT_DB", "mysql://chat:pw@127.0.0.1:3306/", "must name a host and a database"},
		{"DBURLWithoutHost", "CHAT_DB", "postgres:///chat", "must name a host and a database"},
		{"DBURLHidesPassword", "CHAT_DB", "postgresql://chat:s3cret@db.example", "postgresql://chat:xxxxx@db.example"},
		{"DBURLBroken", "CHAT_DB", "mysql://chat:pw@[::1/chat", "CHAT_DB is not a valid URL (mysql://"},
		{"DBURLHidesQueryPassword", "CHAT_DB", "postgres://chat@/?password=s3cret", "postgres://chat@/?password=xxxxx"},
		{"DBUnknownScheme", "CHAT_DB", "mariadb://chat:s3cret@db/chat", "CHAT_DB names a database server by a scheme cgichat does not know (mariadb://)"},
		{"DBMistypedScheme", "CHAT_DB", "mysq://chat:s3cret@db/chat", "(mysq://): write mysql://"},
		{"WakeDirRelative", "CHAT_WAKE_DIR", "wake", "CHAT_WAKE_DIR must be an absolute path"},
		{"RateNoSlash", "CHAT_RATE_LIMIT", "5", `CHAT_RATE_LIMIT must be "off" or posts per time`},
		{"RateZero", "CHAT_RATE_LIMIT", "0/10s", "CHAT_RATE_LIMIT"},
		{"RateTooShort", "CHAT_RATE_LIMIT", "5/10ms", "CHAT_RATE_LIMIT"},
		{"RateBadUnit", "CHAT_RATE_LIMIT", "5/10 parsecs", "CHAT_RATE_LIMIT"},
		{"OriginWithPath", "CHAT_ALLOWED_ORIGINS", "https://example.org/chat", "CHAT_ALLOWED_ORIGINS"},
		{"OriginNoScheme", "CHAT_ALLOWED_ORIGINS", "example.org", "CHAT_ALLOWED_ORIGINS"},
		{"ProxyName", "CHAT_TRUSTED_PROXIES", "proxy.local", "CHAT_TRUSTED_PROXIES"},
		{"StreamsNegative", "CHAT_STREAMS_PER_CLIENT", "-1", "CHAT_STREAMS_PER_CLIENT"},
		{"BudgetNegative", "CHAT_MAX_STREAMS", "-1", "CHAT_MAX_STREAMS"},
		{"HostWithScheme", "CHAT_ALLOWED_HOSTS", "https://chat.example.org", `CHAT_ALLOWED_HOSTS must list host names`},
		{"HostWithPort", "CHAT_ALLOWED_HOSTS", "chat.example.org:8080", "CHAT_ALLOWED_HOSTS"},
		{"HostWithSpace", "CHAT_ALLOWED_HOSTS", "chat example", "CHAT_ALLOWED_HOSTS"},
		{"HostWildcardInside", "CHAT_ALLOWED_HOSTS", "chat.*.org", "CHAT_ALLOWED_HOSTS"},
		{"IPv6PrefixTooShort", "CHAT_IPV6_PREFIX", "16", "CHAT_IPV6_PREFIX must be a whole number of bits from 32 to 128"},
		{"IPv6PrefixTooLong", "CHAT_IPV6_PREFIX", "129", "CHAT_IPV6_PREFIX"},
		{"TotalNegative", "CHAT_KEEP_TOTAL_MB", "-1", "CHAT_KEEP_TOTAL_MB must be a whole number of megabytes from 0 to 1000000"},
		{"TotalWithUnit", "CHAT_KEEP_TOTAL_MB", "100MB", "CHAT_KEEP_TOTAL_MB"},
		{"RoomsNegative", "CHAT_ROOMS_PER_DAY", "-5", "CHAT_ROOMS_PER_DAY must be a whole number of rooms from 0 to 100000"},
		{"LogLevel", "CHAT_LOG_LEVEL", "loud", `CHAT_LOG_LEVEL must be debug, info, warn or error, not "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"CHAT_DB": "/tmp/x.db", tt.key: tt.value}
			_, err := config.Load(env(vars))
			if err == nil {
				t.Fatalf("Load with %s=%q: no error", tt.key, tt.value)
			}
			if !strings.Contains(err.Error(), tt.wantInMessage) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantInMessage)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error = %q, want it without the password", err)
			}
		})
	}
}

// TestRedacted checks that CHAT_DB as -check, about and the logs show it
// holds no password, wherever the URL carries it.
func TestRedacted(t *testing.T) {
	tests := []struct {
		db, want string
	}{
		{"/srv/chat/chat.db", "/srv/chat/chat.db"},
		{"mysql://chat:s3cret@db:3306/chat?tls=true", "mysql://chat:xxxxx@db:3306/chat?tls=true"},
		{"postgres://chat@db/chat?sslmode=require&password=s3cret", "postgres://chat@db/chat?password=xxxxx&sslmode=require"},
		{"postgresql://chat@db/chat?PASSWORD=s3cret", "postgresql://chat@db/chat?PASSWORD=xxxxx"},
		{"postgres://db/chat?sslmode=disable", "postgres://db/chat?sslmode=disable"},
		{"mysql://chat:s3cret@[::1/chat", "mysql://…"},
	}
	for _, tt := range tests {
		if got := config.Redacted(tt.db); got != tt.want {
			t.Errorf("Redacted(%q) = %q, want %q", tt.db, got, tt.want)
		}
	}
	c, err := config.Load(env(map[string]string{"CHAT_DB": "postgres://chat@db/chat?password=s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Value("CHAT_DB"); got != "postgres://chat@db/chat?password=xxxxx" {
		t.Errorf("Value(CHAT_DB) = %q, want the password hidden", got)
	}
}

func TestConfigIsAMapKey(t *testing.T) {
	a, _ := config.Load(env(map[string]string{"CHAT_DB": "/a.db"}))
	b, _ := config.Load(env(map[string]string{"CHAT_DB": "/a.db"}))
	m := map[config.Config]int{a: 1}
	if m[b] != 1 {
		t.Errorf("equal configurations are different map keys")
	}
}

func TestRateForms(t *testing.T) {
	tests := []struct{ in, want string }{
		{"5/10s", "5/10s"},
		{"5/10", "5/10s"},
		{"30/1m", "30/1m0s"},
		{" off ", "off"},
	}
	for _, tt := range tests {
		c, err := config.Load(env(map[string]string{"CHAT_DB": "/a.db", "CHAT_RATE_LIMIT": tt.in}))
		if err != nil {
			t.Fatalf("CHAT_RATE_LIMIT=%q: %v", tt.in, err)
		}
		if got := c.RateLimit.String(); got != tt.want {
			t.Errorf("CHAT_RATE_LIMIT=%q gives %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestTrustedPrefixes(t *testing.T) {
	c, _ := config.Load(env(map[string]string{"CHAT_DB": "/a.db", "CHAT_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"}))
	got := c.TrustedPrefixes()
	if len(got) != 2 || got[0].String() != "127.0.0.1/32" || got[1].String() != "10.0.0.0/8" {
		t.Errorf("TrustedPrefixes = %v, want [127.0.0.1/32 10.0.0.0/8]", got)
	}
}

func TestLoadDatabaseServers(t *testing.T) {
	t.Setenv("HOME", "/home/ada")
	tests := []struct {
		name, db, wakeDir, wantWakeDir string
	}{
		{"MySQL", "mysql://chat:pw@127.0.0.1:3306/chat?tls=false", "", "/home/ada/cgichat-data/127.0.0.1_3306-chat-wake"},
		{"PostgreSQL", "postgres://chat:pw@db.example/chat", "", "/home/ada/cgichat-data/db.example-chat-wake"},
		{"PostgreSQL long scheme", "postgresql://chat@db.example:5433/chat", "", "/home/ada/cgichat-data/db.example_5433-chat-wake"},
		{"Wake directory set", "mysql://chat:pw@db/chat", "/srv/chat/wake/", "/srv/chat/wake"},
		{"PostgreSQL on a socket", "postgresql://chat@/chat?host=/run/postgresql", "/w", "/w"},
		{"MySQL on a socket", "mysql://chat:pw@/chat?socket=/run/mysqld/mysqld.sock", "/w", "/w"},
		{"SQLite with a wake directory", "/srv/chat/chat.db", "/run/chat", "/run/chat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Load(env(map[string]string{"CHAT_DB": " " + tt.db + " ", "CHAT_WAKE_DIR": tt.wakeDir}))
			if err != nil {
				t.Fatal(err)
			}
			if got.DB != tt.db || got.WakeDir != tt.wantWakeDir {
				t.Errorf("DB, WakeDir = %q, %q; want %q, %q", got.DB, got.WakeDir, tt.db, tt.wantWakeDir)
			}
			if g, e := config.IsServerURL(got.DB), tt.db[0] != '/'; g != e {
				t.Errorf("IsServerURL(%q) = %v, want %v", got.DB, g, e)
			}
		})
	}
}

package web

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"cgichat/internal/chat"
	"cgichat/internal/config"
)

func TestFromOwnPage(t *testing.T) {
	allowed := []string{"https://friend.example", "http://side.example:8080"}
	plain := frontEnd{port: "80"}
	tests := []struct {
		name            string
		host            string
		fe              frontEnd
		site            string // Sec-Fetch-Site
		origin, referer string
		want            bool
	}{
		// Fetch Metadata first.
		{"Fetch same-origin", "chat.example", plain, "same-origin", "http://chat.example", "", true},
		{"Fetch same-origin behind a port-stripping front end", "chat.example", plain, "same-origin", "http://chat.example:8080", "", true},
		{"Fetch none: the user's own navigation", "chat.example", plain, "none", "", "", true},
		{"Fetch cross-site", "chat.example", plain, "cross-site", "https://evil.example", "", false},
		{"Fetch cross-site even when Origin claims the host", "chat.example", plain, "cross-site", "http://chat.example", "", false},
		{"Fetch cross-site from an allowed origin", "chat.example", plain, "cross-site", "https://friend.example", "", true},
		{"Fetch cross-site from an allowed origin, default port written", "chat.example", plain, "cross-site", "https://friend.example:443", "", true},
		{"Fetch same-site: a sibling subdomain", "chat.example", plain, "same-site", "http://other.chat.example", "", false},
		{"Fetch same-site from an allowed origin", "chat.example", plain, "same-site", "http://side.example:8080", "", true},
		{"Fetch cross-site without Origin", "chat.example", plain, "cross-site", "", "", false},
		{"Unknown Fetch value falls back to Origin", "chat.example", plain, "sideways", "https://evil.example", "", false},

		// Then Origin, as the front end passed the host.
		{"Same host", "chat.example", plain, "", "http://chat.example", "", true},
		{"Same host, name case", "chat.example", plain, "", "http://CHAT.example", "", true},
		{"Same host, fully qualified", "chat.example", plain, "", "http://chat.example.", "", true},
		{"HTTPS page through a TLS proxy", "chat.example", plain, "", "https://chat.example", "", true},
		{"Port in both", "127.0.0.1:8080", plain, "", "http://127.0.0.1:8080", "", true},
		{"Port stripped by nginx, SERVER_PORT has it", "127.0.0.1", frontEnd{port: "8080"}, "", "http://127.0.0.1:8080", "", true},
		{"Port stripped by nginx, another port", "127.0.0.1", frontEnd{port: "8080"}, "", "http://127.0.0.1:9090", "", false},
		{"Default port written out", "chat.example", plain, "", "http://chat.example:80", "", true},
		{"HTTPS default port", "chat.example", frontEnd{https: true, port: "443"}, "", "https://chat.example", "", true},
		{"HTTP page into an HTTPS chat", "chat.example", frontEnd{https: true, port: "443"}, "", "http://chat.example", "", false},
		{"Other port", "chat.example", plain, "", "http://chat.example:8080", "", false},
		{"Host port differs", "chat.example:8080", plain, "", "http://chat.example:9090", "", false},
		{"IPv6 host", "[::1]:8080", plain, "", "http://[::1]:8080", "", true},
		{"Referer same host", "chat.example", plain, "", "", "http://chat.example/room.html", true},
		{"Neither header", "chat.example", plain, "", "", "", true},
		{"Allowed", "chat.example", plain, "", "https://friend.example", "", true},
		{"Allowed needs the scheme", "chat.example", plain, "", "http://friend.example", "", false},
		{"Allowed needs the port", "chat.example", plain, "", "http://side.example", "", false},
		{"Other host", "chat.example", plain, "", "https://evil.example", "", false},
		{"Suffix trick", "chat.example", plain, "", "http://chat.example.evil.example", "", false},
		{"Null", "chat.example", plain, "", "null", "", false},
		{"Referer other host", "chat.example", plain, "", "", "https://evil.example/", false},
		{"Origin wins", "chat.example", plain, "", "https://evil.example", "http://chat.example/", false},
		{"Not http", "chat.example", plain, "", "file:///x", "", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "http://"+tt.host+"/cgi-bin/post", nil)
		for k, v := range map[string]string{"Sec-Fetch-Site": tt.site, "Origin": tt.origin, "Referer": tt.referer} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		if got := fromOwnPage(r, tt.fe, allowed); got != tt.want {
			t.Errorf("%s: fromOwnPage = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	tests := []struct {
		name, host, peer, allowed string
		want                      bool
	}{
		// Without CHAT_ALLOWED_HOSTS a client on this machine must use an
		// address or localhost: DNS rebinding reaches a chat on one's own
		// machine by a foreign name.
		{"Rebinding to loopback", "evil.example", "127.0.0.1", "", false},
		{"Rebinding to loopback with a port", "evil.example:8080", "127.0.0.1", "", false},
		{"Rebinding to IPv6 loopback", "evil.example", "::1", "", false},
		{"Loopback by address", "127.0.0.1:8080", "127.0.0.1", "", true},
		{"Loopback by IPv6 address", "[::1]:8080", "::1", "", true},
		{"Loopback by localhost", "localhost:8080", "127.0.0.1", "", true},
		{"Loopback by a .localhost name", "chat.localhost", "127.0.0.1", "", true},
		{"A trusted proxy on loopback passes the name on", "chat.example", "127.0.0.2", "", true},
		{"Remote client: the web server routed it", "chat.example", "203.0.113.7", "", true},
		// With CHAT_ALLOWED_HOSTS only the names listed.
		{"Listed", "chat.example", "203.0.113.7", "chat.example,*.chat.example", true},
		{"Listed, port ignored", "chat.example:8443", "203.0.113.7", "chat.example", true},
		{"Listed, case and final dot", "CHAT.example.", "203.0.113.7", "chat.example", true},
		{"Listed by wildcard", "eu.chat.example", "203.0.113.7", "chat.example,*.chat.example", true},
		{"Wildcard does not cover the parent", "example", "203.0.113.7", "*.example", false},
		{"Foreign name agreeing with Origin", "evil.example", "203.0.113.7", "chat.example", false},
		{"Suffix trick", "evilchat.example", "203.0.113.7", "*.chat.example", false},
		{"Address not listed", "127.0.0.1", "127.0.0.1", "chat.example", false},
		{"Address listed", "[::1]:8080", "::1", "chat.example,::1", true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/cgi-bin/post", nil)
		r.Host = tt.host
		r.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(tt.peer), 5555).String()
		cfg, err := config.Load(func(k string) string {
			return map[string]string{"CHAT_ALLOWED_HOSTS": tt.allowed, "CHAT_DB": "/tmp/x.db"}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := hostAllowed(r, cfg.AllowedHostList(), trusted); got != tt.want {
			t.Errorf("%s: hostAllowed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name, remote, xff string
		trusted           []netip.Prefix
		want              string
	}{
		{"No proxy", "203.0.113.7:5555", "", nil, "203.0.113.7"},
		{"Header ignored without trust", "203.0.113.7:5555", "198.51.100.1", nil, "203.0.113.7"},
		{"Header ignored from an untrusted peer", "203.0.113.7:5555", "198.51.100.1", trusted, "203.0.113.7"},
		{"Trusted proxy", "127.0.0.1:5555", "198.51.100.1", trusted, "198.51.100.1"},
		{"Spoofed hop on the left", "127.0.0.1:5555", "6.6.6.6, 198.51.100.1", trusted, "198.51.100.1"},
		{"Chain of trusted proxies", "127.0.0.1:5555", "198.51.100.1, 10.1.1.1", trusted, "198.51.100.1"},
		{"Garbage hop stops the walk", "127.0.0.1:5555", "198.51.100.1, junk", trusted, "127.0.0.1"},
		{"IPv6", "[2001:db8::1]:5555", "", nil, "2001:db8::1"},
		{"IPv4 in IPv6", "[::ffff:192.0.2.1]:5555", "", nil, "192.0.2.1"},
		{"No port", "192.0.2.9", "", nil, "192.0.2.9"},
		{"Not an address", "@", "", nil, "@"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = tt.remote
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := clientAddr(r, tt.trusted); got != tt.want {
			t.Errorf("%s: clientAddr = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestClientID(t *testing.T) {
	tests := []struct {
		name, remote, prefix, want string
	}{
		{"IPv4 is itself", "203.0.113.7:5555", "", "203.0.113.7"},
		{"IPv6 is its /64", "[2001:db8:5::1]:5555", "", "2001:db8:5::/64"},
		{"Another address of the /64", "[2001:db8:5:0:ffff:1:2:3]:5555", "", "2001:db8:5::/64"},
		{"Another /64", "[2001:db8:5:1::1]:5555", "", "2001:db8:5:1::/64"},
		{"A /56", "[2001:db8:5:ab::1]:5555", "56", "2001:db8:5::/56"},
		{"Whole addresses", "[2001:db8:5::1]:5555", "128", "2001:db8:5::1"},
		{"IPv4 in IPv6 is IPv4", "[::ffff:192.0.2.1]:5555", "", "192.0.2.1"},
		{"Loopback", "[::1]:5555", "", "::/64"},
	}
	for _, tt := range tests {
		cfg, err := config.Load(func(k string) string {
			return map[string]string{"CHAT_IPV6_PREFIX": tt.prefix, "CHAT_DB": "/tmp/x.db"}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = tt.remote
		if got := clientID(r, cfg); got != tt.want {
			t.Errorf("%s: clientID = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestReadFrontEnd(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name   string
		peer   string
		vars   map[string]string
		header http.Header
		https  bool
	}{
		{"Plain HTTP", "203.0.113.7", nil, nil, false},
		{"HTTPS=on", "203.0.113.7", map[string]string{"HTTPS": "on"}, nil, true},
		{"HTTPS=1", "203.0.113.7", map[string]string{"HTTPS": "1"}, nil, true},
		{"HTTPS=off", "203.0.113.7", map[string]string{"HTTPS": "off"}, nil, false},
		{"REQUEST_SCHEME=https", "203.0.113.7", map[string]string{"REQUEST_SCHEME": "https"}, nil, true},
		{"X-Forwarded-Proto from a trusted proxy", "127.0.0.1", nil, http.Header{"X-Forwarded-Proto": {"https"}}, true},
		{"X-Forwarded-Proto from anyone else", "203.0.113.7", nil, http.Header{"X-Forwarded-Proto": {"https"}}, false},
		{"X-Forwarded-Proto http", "127.0.0.1", nil, http.Header{"X-Forwarded-Proto": {"http"}}, false},
		{"X-Forwarded-Proto of the proxy the client reached", "127.0.0.1", nil,
			http.Header{"X-Forwarded-For": {"198.51.100.1, 10.0.0.5"}, "X-Forwarded-Proto": {"https, http"}}, true},
		{"X-Forwarded-Proto not lined up: the nearest proxy's", "127.0.0.1", nil,
			http.Header{"X-Forwarded-For": {"198.51.100.1, 10.0.0.5"}, "X-Forwarded-Proto": {"HTTPS"}}, true},
		{"Forwarded proto=https", "127.0.0.1", nil, http.Header{"Forwarded": {`for=198.51.100.1;proto=https`}}, true},
		{"Forwarded quoted, other parameters", "127.0.0.1", nil, http.Header{"Forwarded": {`For="[2001:db8::1]:4711";Proto=https;by=10.0.0.1`}}, true},
		{"Forwarded from anyone else", "203.0.113.7", nil, http.Header{"Forwarded": {"proto=https"}}, false},
		{"Forwarded through two proxies", "127.0.0.1", nil, http.Header{"Forwarded": {"for=198.51.100.1;proto=https, for=10.0.0.5;proto=http"}}, true},
		{"Forwarded: a client's own entry is not the proxy's", "127.0.0.1", nil, http.Header{"Forwarded": {"for=6.6.6.6;proto=https, for=198.51.100.1;proto=http"}}, false},
		{"Forwarded beats X-Forwarded-Proto", "127.0.0.1", nil, http.Header{"Forwarded": {"for=198.51.100.1;proto=http"}, "X-Forwarded-Proto": {"https"}}, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = tt.peer + ":5555"
		for k, vs := range tt.header {
			r.Header[k] = vs
		}
		fe := readFrontEnd(r, func(k string) string { return tt.vars[k] }, trusted)
		if fe.https != tt.https {
			t.Errorf("%s: https = %v, want %v", tt.name, fe.https, tt.https)
		}
	}
}

// TestLogNamesTheRequest builds requests the way Go's CGI and FastCGI code
// does (cgi.RequestFromMap, which leaves RequestURI empty) and checks that
// the one log line of a failed request names its path and query, and
// never its body.
func TestLogNamesTheRequest(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"REQUEST_URI", map[string]string{"REQUEST_URI": "/chat/cgi-bin/post?room=dev"}, "/chat/cgi-bin/post?room=dev"},
		{"Without REQUEST_URI", map[string]string{"SCRIPT_NAME": "/cgi-bin/stream", "QUERY_STRING": "room=dev&nick=ada"}, "/cgi-bin/stream?room=dev&nick=ada"},
		{"Without a host", map[string]string{"REQUEST_URI": "/cgi-bin/post"}, "/cgi-bin/post"},
	}
	for _, tt := range tests {
		vars := map[string]string{"REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "chat.example"}
		if tt.name == "Without a host" {
			delete(vars, "HTTP_HOST")
		}
		for k, v := range tt.vars {
			vars[k] = v
		}
		r, err := cgi.RequestFromMap(vars)
		if err != nil {
			t.Fatal(err)
		}
		r.Body = io.NopCloser(strings.NewReader(`{"nick":"ada","text":"a secret"}`))
		var logged bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logged, nil))
		fail(httptest.NewRecorder(), r, log, &chat.Error{Code: chat.EInternal, Message: "store: insert", Err: errString("disk full")})
		m := regexp.MustCompile(`uri=("[^"]*"|\S+)`).FindStringSubmatch(logged.String())
		got := ""
		if m != nil {
			got = m[1]
			if uq, err := strconv.Unquote(got); err == nil {
				got = uq
			}
		}
		if got != tt.want {
			t.Errorf("%s: logged %q, want uri=%s", tt.name, logged.String(), tt.want)
		}
		if strings.Contains(logged.String(), "secret") {
			t.Errorf("%s: logged %q, which holds the body", tt.name, logged.String())
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

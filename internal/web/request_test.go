package web

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestSameOrigin(t *testing.T) {
	allowed := []string{"https://friend.example"}
	tests := []struct {
		name, origin, referer string
		want                  bool
	}{
		{"Same host", "http://chat.example", "", true},
		{"Same host other scheme", "https://chat.example", "", true},
		{"Case", "http://CHAT.example", "", true},
		{"Referer same host", "", "http://chat.example/room.html", true},
		{"Neither header", "", "", true},
		{"Allowed", "https://friend.example", "", true},
		{"Allowed needs the scheme", "http://friend.example", "", false},
		{"Other host", "https://evil.example", "", false},
		{"Other port", "http://chat.example:8080", "", false},
		{"Suffix trick", "http://chat.example.evil.example", "", false},
		{"Null", "null", "", false},
		{"Referer other host", "", "https://evil.example/", false},
		{"Origin wins", "https://evil.example", "http://chat.example/", false},
		{"Not http", "file:///x", "", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "http://chat.example/cgi-bin/post", nil)
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if tt.referer != "" {
			r.Header.Set("Referer", tt.referer)
		}
		if got := sameOrigin(r, allowed); got != tt.want {
			t.Errorf("%s: sameOrigin = %v, want %v", tt.name, got, tt.want)
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

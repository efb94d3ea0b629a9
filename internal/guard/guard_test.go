package guard

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"cgichat/internal/config"
)

func TestNickKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Ada", "ada"},
		{"ADA", "ada"},
		{"Ａｄａ", "ada"},         // full-width
		{"A\u200bda", "ada"},   // zero-width space
		{"a\u00addda", "adda"}, // soft hyphen
		{"ada  lovelace", "ada lovelace"},
		{"ﬁsh", "fish"},       // ligature
		{"Straße", "strasse"}, // case folding, not lower-casing
		{"ℌ𝔢𝔩𝔩𝔬", "hello"},    // mathematical letters
		{"Ådá", "ådá"},
	}
	for _, tt := range tests {
		if got := NickKey(tt.in); got != tt.want {
			t.Errorf("NickKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestClaims(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	a := Claim{Key: "ada", Issued: 1}
	b := Claim{Key: "bob lee", Issued: 2}
	value := AddClaim([]Claim{a}, b, secret)
	got := ParseClaims(value, secret)
	if len(got) != 2 || got[0] != b || got[1] != a {
		t.Fatalf("ParseClaims(AddClaim) = %+v, want [%+v %+v]", got, b, a)
	}
	tests := []struct {
		name  string
		value string
		want  int
	}{
		{"Other secret", AddClaim(nil, a, []byte("another secret of some length")), 0},
		{"Tampered issue time", strings.Replace(a.Sign(secret), ".1.", ".2.", 1), 0},
		{"Garbage", "x~y.z~...", 0},
		{"Empty", "", 0},
		{"One good among bad", "junk~" + a.Sign(secret), 1},
	}
	for _, tt := range tests {
		if got := ParseClaims(tt.value, secret); len(got) != tt.want {
			t.Errorf("%s: %d claims, want %d", tt.name, len(got), tt.want)
		}
	}
	// A new claim for a key replaces the old one, and the cookie keeps at
	// most five.
	var claims []Claim
	for i := 0; i < 8; i++ {
		claims = ParseClaims(AddClaim(claims, Claim{Key: string(rune('a' + i%6)), Issued: int64(i)}, secret), secret)
	}
	if len(claims) != 5 || claims[0].Issued != 7 {
		t.Errorf("after 8 claims over 6 keys: %+v; want 5, newest first", claims)
	}
}

func TestTake(t *testing.T) {
	r := config.Rate{N: 2, Per: 10 * time.Second} // 0.2 tokens a second
	b, ok, _ := Take(Bucket{}, false, r, 100)
	if !ok || b.Tokens != 1 {
		t.Fatalf("first take: %+v %v, want ok with 1 left", b, ok)
	}
	b, ok, _ = Take(b, true, r, 100)
	if !ok || b.Tokens != 0 {
		t.Fatalf("second take: %+v %v, want ok with 0 left", b, ok)
	}
	_, ok, wait := Take(b, true, r, 102.5)
	if ok || wait < 2400*time.Millisecond || wait > 2600*time.Millisecond {
		t.Fatalf("empty bucket after 2.5 s: ok %v, wait %v; want a wait of 2.5 s", ok, wait)
	}
	b, ok, _ = Take(b, true, r, 105)
	if !ok || b.Tokens > 0.0001 {
		t.Errorf("after 5 s (one token back): %+v %v, want ok with none left", b, ok)
	}
	if b, ok, _ := Take(Bucket{Tokens: 0, Updated: 0}, true, r, 1000); !ok || b.Tokens != 1 {
		t.Errorf("after a long rest: %+v %v, want capped at capacity, one taken", b, ok)
	}
}

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
		if got := SameOrigin(r, allowed); got != tt.want {
			t.Errorf("%s: SameOrigin = %v, want %v", tt.name, got, tt.want)
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
		if got := ClientAddr(r, tt.trusted); got != tt.want {
			t.Errorf("%s: ClientAddr = %q, want %q", tt.name, got, tt.want)
		}
	}
}

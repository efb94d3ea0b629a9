package identity

import (
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
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
		if got := Key(tt.in); got != tt.want {
			t.Errorf("Key(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestClaims(t *testing.T) {
	k := New([]byte("0123456789abcdef0123456789abcdef"))
	a := Claim{Key: "ada", Issued: 1}
	b := Claim{Key: "bob lee", Issued: 2}
	value := k.add(Claims{a}, b)
	got := k.parse(value)
	if len(got) != 2 || got[0] != b || got[1] != a {
		t.Fatalf("parse(add) = %+v, want [%+v %+v]", got, b, a)
	}
	tests := []struct {
		name  string
		value string
		want  int
	}{
		{"Other secret", New([]byte("another secret of some length")).add(nil, a), 0},
		{"Tampered issue time", strings.Replace(k.sign(a), ".1.", ".2.", 1), 0},
		{"Garbage", "x~y.z~...", 0},
		{"Empty", "", 0},
		{"One good among bad", "junk~" + k.sign(a), 1},
	}
	for _, tt := range tests {
		if got := k.parse(tt.value); len(got) != tt.want {
			t.Errorf("%s: %d claims, want %d", tt.name, len(got), tt.want)
		}
	}
	// A new claim for a key replaces the old one, and the cookie keeps at
	// most five.
	var claims Claims
	for i := 0; i < 8; i++ {
		claims = k.parse(k.add(claims, Claim{Key: string(rune('a' + i%6)), Issued: int64(i)}))
	}
	if len(claims) != 5 || claims[0].Issued != 7 {
		t.Errorf("after 8 claims over 6 keys: %+v; want 5, newest first", claims)
	}
}

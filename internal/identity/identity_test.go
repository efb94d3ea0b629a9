package identity

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

func TestKey(t *testing.T) {
	tests := []struct {
		name, a, b string
		same       bool
	}{
		{"Case", "Ada", "ada", true},
		{"Upper case", "ADA", "ada", true},
		{"Full width", "Ａｄａ", "ada", true},
		{"Cyrillic а", "\u0430da", "ada", true},
		{"Cyrillic о in troll", "tr\u043ell", "troll", true},
		{"Greek ο and Cyrillic а", "\u03bfp\u0430l", "opal", true},
		{"Mathematical letters", "ℌ𝔢𝔩𝔩𝔬", "hello", true},
		{"Ligature", "ﬁsh", "fish", true},
		{"Case folding, not lower-casing", "Straße", "strasse", true},
		{"White space runs", "ada \u00a0 lovelace", "ada lovelace", true},
		{"Digit one and small L", "ada1", "adal", true},
		{"rn and m", "rnoe", "moe", true},
		{"Composed and decomposed", "ad\u00e1", "ada\u0301", true},
		{"Other nick", "ada", "bob", false},
		{"Accent matters", "ada", "adá", false},
		{"One letter more", "ada", "adda", false},
		{"Emoji", "ada😀", "ada😃", false},
	}
	for _, tt := range tests {
		ka, kb := Key(tt.a), Key(tt.b)
		if (ka == kb) != tt.same {
			t.Errorf("%s: Key(%+q) = %+q, Key(%+q) = %+q; want same: %v", tt.name, tt.a, ka, tt.b, kb, tt.same)
		}
	}
}

// TestKeyOfLegacyKeys checks that a key made by the rules before PRECIS
// and skeletons (kept in claims cookies issued then) has the key its nick
// has now, so nobody loses a nick across the change.
func TestKeyOfLegacyKeys(t *testing.T) {
	for _, nick := range []string{"Ada", "ADA", "Ａｄａ", "ada  lovelace", "ﬁsh", "Straße", "ℌ𝔢𝔩𝔩𝔬", "Ådá", "\u0430da", "ζωή", "Σίσυφος", "李小龙", "ada😀", "O'Brien", "x_y-z.1"} {
		if got, want := Key(legacyKey(nick)), Key(nick); got != want {
			t.Errorf("Key(legacyKey(%q)) = %+q, want Key(%q) = %+q", nick, got, nick, want)
		}
	}
}

// legacyKey is Key as it was before PRECIS and skeletons: NFKC, case
// folded, invisible characters dropped, white space runs as one space.
func legacyKey(nick string) string {
	s := fold.String(norm.NFKC.String(nick))
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
		case unicode.Is(unicode.Cf, r):
		default:
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestKeyOfRefusedNicks(t *testing.T) {
	// A ban typed with an invisible character still matches the nick.
	for _, tt := range []struct{ ban, nick string }{
		{"troll\u200b", "troll"},
		{" tr\u00adoll ", "TROLL"},
		{"tr\u043ell\ufe0f", "troll"},
	} {
		if Key(tt.ban) != Key(tt.nick) {
			t.Errorf("Key(%+q) = %+q, want Key(%+q) = %+q", tt.ban, Key(tt.ban), tt.nick, Key(tt.nick))
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
	// A claim signed before keys were skeletons holds its old key, which
	// now reads as the key of its nick.
	legacy := "YWRh.7." // base64("ada"), issued 7
	legacy += base64.RawURLEncoding.EncodeToString(k.mac(strings.TrimSuffix(legacy, ".")))
	if got := k.parse(legacy); len(got) != 1 || got[0] != (Claim{Key: Key("аda"), Issued: 7}) {
		t.Errorf("legacy claim = %+v, want the key of ada issued 7", got)
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

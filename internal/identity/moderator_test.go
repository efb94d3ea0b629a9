package identity

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestModeratorKeys(t *testing.T) {
	a, ha := NewModeratorKey()
	b, hb := NewModeratorKey()
	if a == b || ha == hb {
		t.Fatal("two keys alike")
	}
	if !strings.HasPrefix(a, "cgmk_") || len(a) != len("cgmk_")+32 {
		t.Errorf("key %q, want cgmk_ and 32 characters", a)
	}
	if g, e := ModeratorKeyHash(" "+a+"\r\n"), ha; g != e {
		t.Errorf("hash of the key pasted with white space = %s, want %s", g, e)
	}
	if strings.Contains(ha, a) || len(ha) != 64 {
		t.Errorf("hash %q, want 64 hex digits", ha)
	}
}

func TestValidLabel(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{" alice ", "alice", true},
		{"Zoë on duty", "Zoë on duty", true},
		{"ops-1.night_shift", "ops-1.night_shift", true},
		{"", "", false},
		{"a'b", "", false},
		{"a;DROP", "", false},
		{strings.Repeat("x", 33), "", false},
		{"tab\there", "", false},
	}
	for _, tt := range tests {
		got, err := ValidLabel(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ValidLabel(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestModeratorSession(t *testing.T) {
	k := New([]byte("0123456789abcdef0123456789abcdef"))
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	c := k.ModeratorCookie("Zoë", "hash-1", now, true)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Name != ModeratorCookieName {
		t.Errorf("cookie %+v, want HttpOnly, Secure, SameSite=Strict", c)
	}
	read := func(value string, at time.Time) (ModeratorSession, bool) {
		r := httptest.NewRequest("POST", "/cgi-bin/post", nil)
		r.Header.Set("Cookie", ModeratorCookieName+"="+value)
		return k.ReadModerator(r, at)
	}
	s, ok := read(c.Value, now.Add(time.Hour))
	if !ok || s.Label != "Zoë" || !k.SessionValid(s, "hash-1") {
		t.Fatalf("session %+v, %v; want Zoë's, valid", s, ok)
	}
	if k.SessionValid(s, "hash-2") {
		t.Error("a session is valid for another key with the same label")
	}
	if other := New([]byte("another secret of thirty-two by.")); other.SessionValid(s, "hash-1") {
		t.Error("a session is valid under another secret")
	}
	if _, ok := read(c.Value, now.Add(ModeratorSessionAge)); ok {
		t.Error("a session read after it expired")
	}
	// A label swapped in keeps the signature of another.
	forged := strings.Replace(c.Value, c.Value[3:strings.IndexByte(c.Value[3:], '.')+3], "YWxpY2U", 1)
	if s, ok := read(forged, now); ok && k.SessionValid(s, "hash-1") {
		t.Errorf("a forged session %+v is valid", s)
	}
	for _, bad := range []string{"", "x", "m1.", "m1.YQ.notanumber.sig", "m1.YQ.99999999999.%%%"} {
		if s, ok := read(bad, now); ok && k.SessionValid(s, "hash-1") {
			t.Errorf("cookie %q gives a valid session", bad)
		}
	}
}

func TestAddrHash(t *testing.T) {
	k := New([]byte("0123456789abcdef0123456789abcdef"))
	a, b := k.AddrHash("203.0.113.7"), k.AddrHash("2001:db8:5::/64")
	if a == b || len(a) != 32 || a != k.AddrHash("203.0.113.7") {
		t.Errorf("hashes %s, %s: want 32 hex digits, stable, distinct", a, b)
	}
	if strings.Contains(a, "203") && strings.Contains(a, "113") {
		t.Errorf("hash %s shows the address", a)
	}
	if New([]byte("another secret of thirty-two by.")).AddrHash("203.0.113.7") == a {
		t.Error("the hash does not depend on the secret")
	}
}

func TestTransferCodes(t *testing.T) {
	code, hash := NewTransferCode()
	if len(code) != 11 || code[5] != '-' {
		t.Fatalf("code %q, want XXXXX-XXXXX", code)
	}
	tests := []struct {
		typed string
		same  bool
	}{
		{code, true},
		{strings.ToLower(code), true},
		{strings.ReplaceAll(code, "-", " "), true},
		{strings.ReplaceAll(code, "-", ""), true},
		{code[:10], false},
		{code + "0", false},
		{"", false},
	}
	for _, tt := range tests {
		got, ok := TransferCodeHash(tt.typed)
		if (ok && got == hash) != tt.same {
			t.Errorf("TransferCodeHash(%q) = %s, %v; same as the code's: want %v", tt.typed, got, ok, tt.same)
		}
	}
	// Letters people misread are read as the digits they look like.
	a, _ := TransferCodeHash("0O1IL-00000")
	b, _ := TransferCodeHash("00111-00000")
	if a != b {
		t.Error("O, I and L are not read as 0, 1 and 1")
	}
	if _, ok := TransferCodeHash("UUUUU-UUUUU"); ok {
		t.Error("U, outside Crockford's alphabet, accepted")
	}
}

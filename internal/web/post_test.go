package web

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"cgichat/internal/chat"
)

// FuzzReadPost feeds any body under either content type to the request
// parser: it must never panic, must refuse with a client error code, and
// whatever it accepts must be valid by the rules the stored text obeys.
func FuzzReadPost(f *testing.F) {
	seeds := []struct{ ct, body string }{
		{"application/json", `{"room":"dev","nick":"ada","text":"hi"}`},
		{"application/json", `{"nick":"a","nick":"b","text":"c"}`},
		{"application/json", `{"nick":5,"text":null}`},
		{"application/json", `{"nick":"a","text":"b"} {}`},
		{"application/json; charset=utf-8", "{\"nick\":\"\\u200b\",\"text\":\"\\ud800\"}"},
		{"application/x-www-form-urlencoded", "nick=ada&text=hi%0A%0Aevent%3A+x"},
		{"application/x-www-form-urlencoded", "nick=%zz&text=b&text=c"},
		{"text/plain", "hello"},
	}
	for _, s := range seeds {
		f.Add(s.ct, s.body)
	}
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		in, err := readPost(r)
		if err != nil {
			switch code := chat.ErrorCode(err); code {
			case chat.EInvalid, chat.ETooLarge, chat.EUnsupported:
			default:
				t.Fatalf("refused with code %q (%v), want a client error", code, err)
			}
			return
		}
		if got, err := chat.ValidRoom(in.room); err != nil || got != in.room {
			t.Errorf("accepted room %q is not valid: %v", in.room, err)
		}
		if got, err := chat.ValidNick(in.nick); err != nil || got != in.nick {
			t.Errorf("accepted nick %q is not valid: %v", in.nick, err)
		}
		if got, err := chat.ValidText(in.text); err != nil || got != in.text {
			t.Errorf("accepted text %q is not valid: %v", in.text, err)
		}
	})
}

// TestMaximumMessageFits posts the largest valid message in every
// encoding post accepts: each must fit in MaxBody and come out exactly as
// meant. A byte more than MaxBody is refused.
func TestMaximumMessageFits(t *testing.T) {
	jsonEscape := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			if r > 0xFFFF {
				hi, lo := utf16.EncodeRune(r)
				fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		}
		return b.String()
	}
	formEscape := func(s string) string {
		var b strings.Builder
		for _, c := range []byte(s) {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		return b.String()
	}
	room := strings.Repeat("r", chat.MaxRoomLen)
	for _, ch := range []string{"中", "😀", "é", "a"} {
		text := strings.Repeat(ch, chat.MaxTextLen)
		nick := strings.Repeat(ch, chat.MaxNickLen)
		bodies := []struct{ name, ct, body string }{
			{"JSON", typeJSON, fmt.Sprintf(`{"room":%q,"nick":%q,"text":%q}`, room, nick, text)},
			{"JSON escapes", typeJSON, `{"room":"` + jsonEscape(room) + `","nick":"` + jsonEscape(nick) + `","text":"` + jsonEscape(text) + `"}`},
			{"Form", typeForm, "room=" + room + "&nick=" + url.QueryEscape(nick) + "&text=" + url.QueryEscape(text)},
			{"Form escapes", typeForm, "room=" + formEscape(room) + "&nick=" + formEscape(nick) + "&text=" + formEscape(text)},
		}
		for _, b := range bodies {
			t.Run(b.name+" "+ch, func(t *testing.T) {
				if len(b.body) > MaxBody {
					t.Fatalf("%d bytes, over MaxBody (%d)", len(b.body), MaxBody)
				}
				r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(b.body))
				r.Header.Set("Content-Type", b.ct)
				in, err := readPost(r)
				if err != nil {
					t.Fatalf("%d bytes: %v", len(b.body), err)
				}
				if in.text != text || in.nick != nick || in.room != room {
					t.Errorf("got room %q, nick %q and %d characters of text, want them as sent", in.room, in.nick, utf8.RuneCountInString(in.text))
				}
			})
		}
	}
	for _, announced := range []bool{true, false} {
		r := httptest.NewRequest("POST", "/cgi-bin/post", io.MultiReader(strings.NewReader(strings.Repeat(" ", MaxBody+1))))
		if announced {
			r.ContentLength = MaxBody + 1
		} else {
			r.ContentLength = -1
		}
		r.Header.Set("Content-Type", typeJSON)
		if _, err := readPost(r); chat.ErrorCode(err) != chat.ETooLarge {
			t.Errorf("MaxBody+1 bytes (length announced: %v): %v, want too large", announced, err)
		}
	}
}

// TestLoneSurrogates checks that a \u escape of half a surrogate pair is
// refused as the same code point in raw UTF-8 is, wherever it stands,
// while pairs and escaped backslashes are read as they are.
func TestLoneSurrogates(t *testing.T) {
	tests := []struct {
		name, text string // the JSON text of the "text" field, without quotes
		want       string
		wantErr    string
	}{
		{"Pair", `\ud83d\ude00`, "😀", ""},
		{"Pair in upper case", `a\uD83D\uDE00b`, "a😀b", ""},
		{"Escaped backslash then u", `\\ud800`, `\ud800`, ""},
		{"Two escaped backslashes then a pair", `\\\\\ud83d\ude00`, `\\😀`, ""},
		{"BMP escapes", `\u4e2d\u0041`, "中A", ""},
		{"Lone high", `\ud800`, "", `\ud800`},
		{"Lone low", `\udc00`, "", `\udc00`},
		{"High then letter", `\ud83dx`, "", `\ud83d`},
		{"High then high", `\ud83d\ud83d\ude00`, "", `\ud83d`},
		{"Low then high", `\ude00\ud83d`, "", `\ude00`},
		{"High at the end", `ok\udbff`, "", `\udbff`},
		{"Escaped backslash, then a lone one", `\\\ud800`, "", `\ud800`},
	}
	for _, tt := range tests {
		body := `{"nick":"ada","text":"` + tt.text + `"}`
		r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(body))
		r.Header.Set("Content-Type", typeJSON)
		in, err := readPost(r)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		case tt.wantErr == "" && in.text != tt.want:
			t.Errorf("%s: text %q, want %q", tt.name, in.text, tt.want)
		case tt.wantErr != "" && (chat.ErrorCode(err) != chat.EInvalid || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "UTF-8")):
			t.Errorf("%s: %v, want invalid UTF-8 naming %s", tt.name, err, tt.wantErr)
		}
	}
	// The same code point raw is refused alike, in the nick too.
	for _, body := range []string{"{\"nick\":\"ada\",\"text\":\"\xed\xa0\x80\"}", `{"nick":"\ud800","text":"hi"}`, `{"nick":"\udfff","text":"hi"}`} {
		r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(body))
		r.Header.Set("Content-Type", typeJSON)
		if _, err := readPost(r); chat.ErrorCode(err) != chat.EInvalid || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%q: %v, want invalid UTF-8", body, err)
		}
	}
}

// TestBodyShorterThanAnnounced reads a body that ends before the length
// the web server announced, as Apache mod_fcgid passes HTTP/2 bodies sent
// without a length: the error says so instead of blaming the JSON.
func TestBodyShorterThanAnnounced(t *testing.T) {
	for _, body := range []string{"", `{"nick":"ada",`} {
		r := httptest.NewRequest("POST", "/cgi-bin/post", strings.NewReader(body))
		r.ContentLength = 40
		r.Header.Set("Content-Type", typeJSON)
		_, err := readPost(r)
		if chat.ErrorCode(err) != chat.EInvalid || !strings.Contains(err.Error(), fmt.Sprintf("%d of the 40 bytes", len(body))) {
			t.Errorf("%q announced as 40 bytes: %v, want one saying the body did not arrive whole", body, err)
		}
	}
}

func TestIdempotencyKey(t *testing.T) {
	const uuid = "8e03978e-40d5-43e8-bc93-6894a57f9324"
	tests := []struct {
		name    string
		values  []string
		want    string
		wantErr string // part of the message; empty: accepted
	}{
		{"none", nil, "", ""},
		{"structured string", []string{`"` + uuid + `"`}, uuid, ""},
		{"bare", []string{uuid}, uuid, ""},
		{"white space around", []string{"  \"" + uuid + "\" "}, uuid, ""},
		{"base64 characters", []string{`"ab+/=cd_-.:~0123456"`}, "ab+/=cd_-.:~0123456", ""},
		{"shortest", []string{strings.Repeat("k", minKeyLen)}, strings.Repeat("k", minKeyLen), ""},
		{"longest", []string{strings.Repeat("k", maxKeyLen)}, strings.Repeat("k", maxKeyLen), ""},
		{"too short", []string{`"` + strings.Repeat("k", minKeyLen-1) + `"`}, "", "16 to 128"},
		{"too long", []string{strings.Repeat("k", maxKeyLen+1)}, "", "16 to 128"},
		{"empty string", []string{`""`}, "", "16 to 128"},
		{"unterminated", []string{`"` + uuid}, "", "quoted string"},
		{"escape", []string{`"` + uuid + `\""`}, "", "quoted string"},
		{"space inside", []string{`"` + uuid + ` x"`}, "", "quoted string"},
		{"not ASCII", []string{`"` + uuid + `é"`}, "", "quoted string"},
		{"two headers", []string{uuid, uuid}, "", "one Idempotency-Key"},
		{"joined by a server", []string{uuid + ", " + uuid}, "", "one Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("Idempotency-Key", v)
			}
			got, err := idempotencyKey(h)
			switch {
			case tt.wantErr == "" && (err != nil || got != tt.want):
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			case tt.wantErr != "" && (err == nil || chat.ErrorCode(err) != chat.EInvalid || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %q, %v; want an invalid-request error containing %q", got, err, tt.wantErr)
			}
		})
	}
}

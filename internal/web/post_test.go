package web

import (
	"net/http/httptest"
	"strings"
	"testing"

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

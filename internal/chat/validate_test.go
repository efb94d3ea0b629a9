package chat_test

import (
	"strings"
	"testing"
	"time"

	"cgichat/internal/chat"
)

func TestValidRoom(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"Empty gets the default", "", "lobby", false},
		{"Letters digits dash underscore", "Dev-ops_2", "Dev-ops_2", false},
		{"32 bytes", strings.Repeat("a", 32), strings.Repeat("a", 32), false},
		{"ErrTooLong", strings.Repeat("a", 33), "", true},
		{"ErrSpace", "a b", "", true},
		{"ErrSlash", "a/b", "", true},
		{"ErrNonASCIILetter", "café", "", true},
		{"ErrNewline", "a\nb", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chat.ValidRoom(tt.in)
			if g, w := err != nil, tt.wantErr; g != w {
				t.Fatalf("ValidRoom(%q) error = %v, want error: %v", tt.in, err, w)
			}
			if got != tt.want {
				t.Errorf("ValidRoom(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if err != nil && chat.ErrorCode(err) != chat.EInvalid {
				t.Errorf("code = %q, want %q", chat.ErrorCode(err), chat.EInvalid)
			}
		})
	}
}

func TestValidNick(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"Plain", "ada", "ada", false},
		{"Trimmed", "  ada\t", "ada", false},
		{"Unicode counts characters", strings.Repeat("é", 32), strings.Repeat("é", 32), false},
		{"ErrEmpty", "", "", true},
		{"ErrOnlySpace", "   ", "", true},
		{"ErrTooLong", strings.Repeat("é", 33), "", true},
		{"ErrControl", "a\x07b", "", true},
		{"ErrNewline", "a\nb", "", true},
		{"ErrInvalidUTF8", "a\xffb", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chat.ValidNick(tt.in)
			if g, w := err != nil, tt.wantErr; g != w {
				t.Fatalf("ValidNick(%q) error = %v, want error: %v", tt.in, err, w)
			}
			if got != tt.want {
				t.Errorf("ValidNick(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidText(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"Plain", "hello", "hello", false},
		{"Newlines kept", "a\n\nb", "a\n\nb", false},
		{"CRLF becomes LF", "a\r\nb\rc", "a\nb\nc", false},
		{"2000 characters", strings.Repeat("😀", 2000), strings.Repeat("😀", 2000), false},
		{"Frame-like text is just text", "\n\nevent: x\ndata: y", "\n\nevent: x\ndata: y", false},
		{"ErrEmpty", "", "", true},
		{"ErrWhiteOnly", " \n\t ", "", true},
		{"ErrTooLong", strings.Repeat("a", 2001), "", true},
		{"ErrTab", "a\tb", "", true},
		{"ErrNUL", "a\x00b", "", true},
		{"ErrInvalidUTF8", "\xc3\x28", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chat.ValidText(tt.in)
			if g, w := err != nil, tt.wantErr; g != w {
				t.Fatalf("ValidText(%q) error = %v, want error: %v", tt.in, err, w)
			}
			if got != tt.want {
				t.Errorf("ValidText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestErrorMessageHidesInternalDetail(t *testing.T) {
	err := &chat.Error{Code: chat.EInternal, Message: "store: insert", Err: errorString("disk I/O error at /secret/path")}
	if got := chat.ErrorMessage(err); strings.Contains(got, "secret") || strings.Contains(got, "store") {
		t.Errorf("ErrorMessage = %q, want a fixed sentence without detail", got)
	}
	if got, want := chat.ErrorMessage(chat.Errorf(chat.EInvalid, "Bad nick.")), "Bad nick."; got != want {
		t.Errorf("ErrorMessage = %q, want %q", got, want)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{time.Second, "1 second"},
		{10 * time.Second, "10 seconds"},
		{time.Minute, "1 minute"},
		{90 * time.Second, "90 seconds"},
		{2 * time.Hour, "2 hours"},
		{24 * time.Hour, "24 hours"},
	}
	for _, tt := range tests {
		if got := chat.Duration(tt.in); got != tt.want {
			t.Errorf("Duration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

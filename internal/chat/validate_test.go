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
		{"Letters digits dash underscore", "dev-ops_2", "dev-ops_2", false},
		{"One case: #Dev is #dev", "Dev", "dev", false},
		{"One case: upper", "DEV-OPS_2", "dev-ops_2", false},
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
		wantErr        string // part of the error message; "" for none
	}{
		{"Plain", "ada", "ada", ""},
		{"Case kept", "Ada", "Ada", ""},
		{"Trimmed", "  ada\t", "ada", ""},
		{"Spaces collapsed", "ada\u3000\u00a0 lovelace ", "ada lovelace", ""},
		{"Full width made plain (NFKC)", "ａｄａ", "ada", ""},
		{"Composed (NFKC)", "ada\u0301", "adá", ""},
		{"Cyrillic letters are letters", "\u0430da", "\u0430da", ""},
		{"Emoji without a selector", "ada\u2764", "ada\u2764", ""},
		{"Unicode counts characters", strings.Repeat("é", 32), strings.Repeat("é", 32), ""},
		{"ErrEmpty", "", "", "choose a nickname"},
		{"ErrOnlySpace", "   ", "", "choose a nickname"},
		{"ErrOnlyMark", "\u0301", "", "choose a nickname"},
		{"ErrTooLong", strings.Repeat("é", 33), "", "too long"},
		{"ErrControl", "a\x07b", "", "control"},
		{"ErrNewline", "a\nb", "", "control"},
		{"ErrInvalidUTF8", "a\xffb", "", "UTF-8"},
		{"ErrVariationSelector16", "ada\ufe0f", "", "invisible characters such as U+FE0F"},
		{"ErrVariationSelector1 inside", "a\ufe00da", "", "U+FE00"},
		{"ErrKhmerInherentVowel", "ada\u17b5", "", "U+17B5"},
		{"ErrZeroWidthSpace", "A\u200bda", "", "U+200B"},
		{"ErrOnlySelector", "\ufe0f", "", "U+FE0F"},
		{"ErrOnlyKhmerVowels", "\u17b4\u17b5", "", "U+17B4"},
		{"ErrOnlyMongolianSelectors", "\u180b\u180c\u180d", "", "U+180B"},
		{"ErrOnlyHangulFiller", "\u3164", "", "U+3164"},
		{"ErrBrailleBlank after a nick", "ada\u2800", "", "invisible characters such as U+2800"},
		{"ErrOnlyBrailleBlank", "\u2800", "", "choose a nickname"},
		{"Braille with dots", "\u2801\u2819\u2801", "\u2801\u2819\u2801", ""},
		// U+FFFD is a character like others; a lone surrogate escape is
		// refused before it could become one (web.readPost).
		{"Replacement character", "\ufffd", "\ufffd", ""},
		{"ErrUnassigned", "ada\U0010fff0", "", "U+10FFF0"},
		{"ErrRightToLeftOverride", "ada\u202e", "", "U+202E"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chat.ValidNick(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ValidNick(%+q) error = %v, want none", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ValidNick(%+q) error = %v, want one saying %q", tt.in, err, tt.wantErr)
			case err != nil && chat.ErrorCode(err) != chat.EInvalid:
				t.Errorf("code = %q, want %q", chat.ErrorCode(err), chat.EInvalid)
			}
			if got != tt.want {
				t.Errorf("ValidNick(%+q) = %+q, want %+q", tt.in, got, tt.want)
			}
			// Enforcement is idempotent: what is accepted stays as it is.
			if err == nil {
				if again, err := chat.ValidNick(got); err != nil || again != got {
					t.Errorf("ValidNick(%+q) = %+q, %v; want it unchanged", got, again, err)
				}
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
		{"Mark on a letter", "e\u0301", "e\u0301", false},
		{"Mark on a space draws", " \u0301", " \u0301", false},
		{"Emoji with its selector", "\u2764\ufe0f", "\u2764\ufe0f", false},
		{"ErrZeroWidth", "\u200b\u200d \ufeff", "", true},
		{"ErrOnlySelector16", "\ufe0f", "", true},
		{"ErrOnlyKhmerVowels", "\u17b4\u17b5", "", true},
		{"ErrOnlyMongolianSelectors", "\u180b\u180c\u180d", "", true},
		{"ErrOnlyIdeographicSelector", "\U000e0100", "", true},
		{"ErrHangulFillers", "\u115f\u1160\u3164\uffa0", "", true},
		{"ErrBrailleBlanks", "\u2800 \u2800\n\u2800", "", true},
		{"Braille words with a blank cell between", "\u2801\u2800\u2803", "\u2801\u2800\u2803", false},
		{"Mark on a braille blank draws", "\u2800\u0301", "\u2800\u0301", false},
		{"ErrMarkWithoutBase", "\u0301\u20dd", "", true},
		{"ErrMarkAfterNewline", "\n\u0301", "", true},
		{"ErrMarkOnInvisible", "\u200b\u0301", "", true},
		{"ErrAnnotationControls", "\ufff9\ufffa\ufffb", "", true},
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

// TestIgnorable checks the derivation of Default_Ignorable_Code_Point
// against code points of each kind in Unicode's DerivedCoreProperties.txt.
func TestIgnorable(t *testing.T) {
	tests := []struct {
		r    rune
		want bool
	}{
		{0x00AD, true},  // soft hyphen (Cf)
		{0x034F, true},  // combining grapheme joiner (Other_DICP)
		{0x115F, true},  // Hangul choseong filler
		{0x17B4, true},  // Khmer vowel inherent AQ
		{0x17B5, true},  // Khmer vowel inherent AA
		{0x180B, true},  // Mongolian free variation selector one
		{0x180E, true},  // Mongolian vowel separator (Cf)
		{0x200B, true},  // zero width space
		{0x200D, true},  // zero width joiner
		{0x202E, true},  // right-to-left override
		{0x2064, true},  // invisible plus
		{0x3164, true},  // Hangul filler
		{0xFE00, true},  // variation selector 1
		{0xFE0F, true},  // variation selector 16
		{0xFEFF, true},  // zero width no-break space
		{0x1D173, true}, // musical symbol begin beam
		{0xE0001, true}, // language tag
		{0xE0100, true}, // variation selector 17
		{0xE0FFF, true}, // unassigned, reserved as ignorable
		{0x0020, false}, // space: white space
		{0x0600, false}, // Arabic number sign: prepended concatenation mark
		{0xFFF9, false}, // interlinear annotation anchor
		{0x13430, false},
		{0x2800, false}, // braille pattern blank is a symbol
		{'a', false},
		{0x0301, false}, // a mark, not ignorable
	}
	for _, tt := range tests {
		if got := chat.Ignorable(tt.r); got != tt.want {
			t.Errorf("Ignorable(%U) = %v, want %v", tt.r, got, tt.want)
		}
	}
}

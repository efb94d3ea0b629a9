package chat

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// Limits of the fields a client sends.
const (
	DefaultRoom = "lobby"
	MaxRoomLen  = 32   // bytes; rooms are ASCII
	MaxNickLen  = 32   // characters, as enforced (PRECIS Nickname)
	MaxTextLen  = 2000 // characters
)

// ValidRoom returns room in lower case, or DefaultRoom when room is empty,
// if it is 1–32 ASCII letters, digits, '-' or '_'. Rooms appear in URLs
// (#room), so they stay plain ASCII: no look-alikes, nothing to escape. Like
// IRC channels they ignore case: #Dev and #dev are one room.
func ValidRoom(room string) (string, error) {
	if room == "" {
		return DefaultRoom, nil
	}
	if len(room) > MaxRoomLen {
		return "", Errorf(EInvalid, "The room name is too long: at most %d characters.", MaxRoomLen)
	}
	for _, c := range []byte(room) {
		if !isRoomByte(c) {
			return "", Errorf(EInvalid, "The room name may only contain letters a–z, digits, '-' and '_'.")
		}
	}
	return strings.ToLower(room), nil
}

func isRoomByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// ValidNick returns nick as the IETF PRECIS Nickname profile (RFC 8266)
// enforces it — spaces mapped to U+0020, trimmed and collapsed, compatibility
// forms such as full-width letters and ligatures made plain by NFKC, case
// kept — if that is 1–32 characters that draw something. The profile
// refuses control characters, default-ignorable code points (zero-width
// characters, joiners, direction marks, variation selectors, fillers) and
// unassigned code points; the error names the first such character.
// Surrounding ASCII white space (a tab, a newline from a form) is trimmed
// first.
func ValidNick(nick string) (string, error) {
	if !utf8.ValidString(nick) {
		return "", Errorf(EInvalid, "The nickname is not valid UTF-8 text.")
	}
	nick = strings.TrimSpace(nick)
	if !Visible(nick) && precisAllows(nick) {
		return "", Errorf(EInvalid, "Please choose a nickname.")
	}
	enforced, err := precis.Nickname.String(nick)
	if err != nil {
		return "", nickError(nick)
	}
	if n := utf8.RuneCountInString(enforced); n > MaxNickLen {
		return "", Errorf(EInvalid, "The nickname is too long: at most %d characters.", MaxNickLen)
	}
	if strings.ContainsRune(enforced, brailleBlank) {
		// "ada" and "ada" with a blank after it would look alike.
		return "", Errorf(EInvalid, "The nickname may not contain invisible characters such as %U.", brailleBlank)
	}
	return enforced, nil
}

// precisAllows reports whether every character of s is allowed in a
// nickname on its own, spaces aside.
func precisAllows(s string) bool {
	for _, r := range s {
		if !unicode.Is(unicode.Zs, r) && !nickRune(r) {
			return false
		}
	}
	return true
}

// nickRune reports whether the Nickname profile accepts r on its own.
func nickRune(r rune) bool {
	_, err := precis.Nickname.String(string(r))
	return err == nil
}

// nickError explains why the Nickname profile refused nick: the first
// character it refuses on its own, or else the place a character stands
// in (a few, such as U+00B7, are allowed only between certain letters).
func nickError(nick string) error {
	for _, r := range nick {
		if unicode.Is(unicode.Zs, r) || nickRune(r) {
			continue
		}
		switch {
		case unicode.IsControl(r):
			return Errorf(EInvalid, "The nickname may not contain control characters.")
		case Ignorable(r):
			return Errorf(EInvalid, "The nickname may not contain invisible characters such as %U.", r)
		default:
			return Errorf(EInvalid, "The nickname may not contain the character %U.", r)
		}
	}
	return Errorf(EInvalid, "The nickname uses a character where the rules for nicknames do not allow it (RFC 8266).")
}

// ValidText returns text, with CRLF and CR line ends made LF, if it is
// 1–2000 characters of valid UTF-8 of which one draws something (see
// Visible), without control characters other than newlines.
func ValidText(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", Errorf(EInvalid, "The message is not valid UTF-8 text.")
	}
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	if !Visible(text) {
		return "", Errorf(EInvalid, "The message is empty.")
	}
	if n := utf8.RuneCountInString(text); n > MaxTextLen {
		return "", Errorf(EInvalid, "The message is too long: %d characters, at most %d.", n, MaxTextLen)
	}
	if strings.IndexFunc(text, func(r rune) bool { return r != '\n' && unicode.IsControl(r) }) >= 0 {
		return "", Errorf(EInvalid, "The message may not contain control characters other than newlines.")
	}
	return text, nil
}

// Visible reports whether s holds a character that draws, judged by the
// Unicode properties of its characters rather than a list (but for
// brailleBlank, which no property covers): white space,
// control characters and default-ignorable code points (Ignorable) draw
// nothing, and a nonspacing or enclosing mark draws only on a base — a
// character that draws, or a space, on which a mark shows by itself.
func Visible(s string) bool {
	base := false
	for _, r := range s {
		switch {
		case Ignorable(r):
			// Leaves the base as it was: a joiner or selector between a
			// letter and its mark does not detach the mark.
		case unicode.In(r, unicode.Mn, unicode.Me):
			if base {
				return true
			}
		case unicode.Is(unicode.Zs, r), r == brailleBlank:
			base = true
		case unicode.IsSpace(r), unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			// Line ends, tabs, and the format characters that are not
			// default-ignorable yet draw nothing alone (interlinear
			// annotation, Egyptian hieroglyph format controls).
			base = false
		default:
			return true
		}
	}
	return false
}

// brailleBlank, U+2800 BRAILLE PATTERN BLANK, is a braille cell without
// dots: its glyph is empty, yet by its properties it is a symbol (So), not
// white space or default-ignorable, so no property says that it draws
// nothing. It is what a name or message that shows nothing is usually
// made of, and counts as a space here.
const brailleBlank = '\u2800'

// Ignorable reports whether r has the Unicode property
// Default_Ignorable_Code_Point: characters a renderer shows as nothing
// unless it supports them (zero-width spaces and joiners, direction marks,
// variation selectors, Hangul fillers, the Khmer inherent vowels). The
// property is derived as Unicode's DerivedCoreProperties.txt defines it,
// from the properties Go's unicode package has.
func Ignorable(r rune) bool {
	switch {
	case unicode.Is(unicode.White_Space, r),
		unicode.Is(unicode.Prepended_Concatenation_Mark, r),
		0xFFF9 <= r && r <= 0xFFFB,   // interlinear annotation format characters
		0x13430 <= r && r <= 0x1343F: // Egyptian hieroglyph format characters
		return false
	}
	return unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Cf, unicode.Variation_Selector)
}

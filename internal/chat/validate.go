package chat

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the fields a client sends.
const (
	DefaultRoom = "lobby"
	MaxRoomLen  = 32   // bytes; rooms are ASCII
	MaxNickLen  = 32   // characters, after trimming
	MaxTextLen  = 2000 // characters
)

// ValidRoom returns room, or DefaultRoom when room is empty, if it is 1–32
// ASCII letters, digits, '-' or '_'. Rooms appear in URLs (#room), so they
// stay plain ASCII: no look-alikes, nothing to escape.
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
	return room, nil
}

func isRoomByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// ValidNick returns nick without surrounding white space if it is then 1–32
// characters of valid UTF-8 without control characters.
func ValidNick(nick string) (string, error) {
	if !utf8.ValidString(nick) {
		return "", Errorf(EInvalid, "The nickname is not valid UTF-8 text.")
	}
	nick = strings.TrimSpace(nick)
	switch n := utf8.RuneCountInString(nick); {
	case blank(nick):
		return "", Errorf(EInvalid, "Please choose a nickname.")
	case n > MaxNickLen:
		return "", Errorf(EInvalid, "The nickname is too long: at most %d characters.", MaxNickLen)
	}
	if strings.IndexFunc(nick, unicode.IsControl) >= 0 {
		return "", Errorf(EInvalid, "The nickname may not contain control characters.")
	}
	return nick, nil
}

// ValidText returns text, with CRLF and CR line ends made LF, if it is
// 1–2000 characters of valid UTF-8, not only white space, and without
// control characters other than newlines.
func ValidText(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", Errorf(EInvalid, "The message is not valid UTF-8 text.")
	}
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	if blank(text) {
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

// blank reports whether s shows nothing: only white space and invisible
// characters, such as a text of zero-width spaces.
func blank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) && !Invisible(r) }) < 0
}

// Invisible reports whether r shows nothing by itself: format characters
// (zero-width space, joiners, direction marks) and the blank letters that
// pass for text (Hangul fillers, braille blank, combining grapheme joiner).
func Invisible(r rune) bool {
	switch r {
	case 0x034F, 0x115F, 0x1160, 0x2800, 0x3164, 0xFFA0:
		return true
	}
	return unicode.Is(unicode.Cf, r)
}

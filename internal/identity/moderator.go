package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"cgichat/internal/chat"
)

// Moderator keys are random and long (192 bits), so that guessing one is
// hopeless even without the rate limit on tries; the store keeps only
// their SHA-256. A key starts with keyPrefix, which tells it apart from
// other secrets a person keeps.
const (
	keyPrefix = "cgmk_"
	keyBytes  = 24
)

// NewModeratorKey returns a new moderator key and the hash under which the
// store keeps it.
func NewModeratorKey() (key, hash string) {
	b := make([]byte, keyBytes)
	rand.Read(b)
	key = keyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, ModeratorKeyHash(key)
}

// ModeratorKeyHash returns the hash of a key as the store keeps it: the
// hex SHA-256 of the key without surrounding white space (a key pasted
// with a line end is the same key).
func ModeratorKeyHash(key string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	return hex.EncodeToString(sum[:])
}

// MaxLabelLen bounds a moderator key's label, in characters.
const MaxLabelLen = 32

// ValidLabel returns a moderator key's label without surrounding spaces if
// it is 1–32 letters, digits, spaces, '-', '_' or '.': a name for the
// moderation log and for the SQL line that revokes the key.
func ValidLabel(label string) (string, error) {
	label = strings.TrimSpace(label)
	bad := chat.Errorf(chat.EInvalid, "A moderator key's label is 1 to %d letters, digits, spaces, '-', '_' or '.', such as \"alice\".", MaxLabelLen)
	if label == "" || !utf8.ValidString(label) || utf8.RuneCountInString(label) > MaxLabelLen {
		return "", bad
	}
	for _, r := range label {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != ' ' && r != '-' && r != '_' && r != '.' {
			return "", bad
		}
	}
	return label, nil
}

// ModeratorCookieName is the cookie that keeps a moderator's session: not
// the key, but the key's label and an expiry signed together with the
// key's hash, so that revoking or replacing the key ends the session.
const ModeratorCookieName = "cgichat_mod"

// ModeratorSessionAge is how long a moderator stays logged in on one
// browser.
const ModeratorSessionAge = 30 * 24 * time.Hour

// sessionVersion starts the signed form of a moderator session.
const sessionVersion = "m1."

// ModeratorSession is a moderator's session as its cookie carries it,
// read but not yet checked against the key it was made with.
type ModeratorSession struct {
	Label   string
	Expires int64 // Unix seconds
	body    string
	sig     []byte
}

// ModeratorCookie returns the cookie of a session for the key with label
// and hash, from now for ModeratorSessionAge: HttpOnly, SameSite=Strict,
// and Secure when the page came over HTTPS.
func (k *Keeper) ModeratorCookie(label, hash string, now time.Time, secure bool) *http.Cookie {
	expires := now.Add(ModeratorSessionAge).Unix()
	body := sessionVersion + base64.RawURLEncoding.EncodeToString([]byte(label)) + "." + strconv.FormatInt(expires, 10)
	return &http.Cookie{
		Name:     ModeratorCookieName,
		Value:    body + "." + base64.RawURLEncoding.EncodeToString(k.sessionMAC(body, hash)),
		MaxAge:   int(ModeratorSessionAge / time.Second),
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteStrictMode,
	}
}

// EndModeratorCookie returns the cookie that ends a moderator's session.
func EndModeratorCookie(secure bool) *http.Cookie {
	return &http.Cookie{Name: ModeratorCookieName, Value: "", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// sessionMAC signs a session's body together with its key's hash, under a
// key of its own derived from the secret.
func (k *Keeper) sessionMAC(body, hash string) []byte {
	h := hmac.New(sha256.New, k.secret)
	h.Write([]byte("moderator session\x00" + body + "\x00" + hash))
	return h.Sum(nil)
}

// ReadModerator returns the session in r's moderator cookie if it is well
// formed and has not expired at now; SessionValid must still check it against
// its key.
func (k *Keeper) ReadModerator(r *http.Request, now time.Time) (ModeratorSession, bool) {
	c, err := r.Cookie(ModeratorCookieName)
	if err != nil {
		return ModeratorSession{}, false
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i < 0 {
		return ModeratorSession{}, false
	}
	body, sig := c.Value[:i], c.Value[i+1:]
	rest, ok := strings.CutPrefix(body, sessionVersion)
	lb, exp, ok2 := strings.Cut(rest, ".")
	label, err1 := base64.RawURLEncoding.DecodeString(lb)
	expires, err2 := strconv.ParseInt(exp, 10, 64)
	mac, err3 := base64.RawURLEncoding.DecodeString(sig)
	if !ok || !ok2 || err1 != nil || err2 != nil || err3 != nil || now.Unix() >= expires {
		return ModeratorSession{}, false
	}
	return ModeratorSession{Label: string(label), Expires: expires, body: body, sig: mac}, true
}

// SessionValid reports whether s was signed for the key whose hash the store
// holds under s.Label now.
func (k *Keeper) SessionValid(s ModeratorSession, hash string) bool {
	return s.body != "" && hmac.Equal(s.sig, k.sessionMAC(s.body, hash))
}

// AddrHash returns the keyed hash under which a message keeps its
// poster's client id (an IPv4 address or an IPv6 prefix, as the rate
// limits know it): HMAC-SHA256 under a key derived from the secret, 128
// bits in hex. An address ban by message matches later posts by it; the
// address itself is never stored. Whoever holds the whole database, secret
// included, can test a guessed address against it, and no one else.
func (k *Keeper) AddrHash(client string) string {
	h := hmac.New(sha256.New, k.secret)
	h.Write([]byte("address\x00" + client))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Transfer codes carry a nick's claim to another device: 10 characters of
// Crockford's base32 (50 bits), shown as XXXXX-XXXXX, short enough to type
// on a phone. They are single-use and live for minutes, and every try of
// one counts against the rate limit on guesses, so guessing one is
// hopeless; the store keeps only their SHA-256.
const (
	transferAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	transferLen      = 10
)

// NewTransferCode returns a new transfer code, as shown, and its hash.
func NewTransferCode() (code, hash string) {
	b := make([]byte, transferLen)
	rand.Read(b)
	var s strings.Builder
	for i, c := range b {
		if i == transferLen/2 {
			s.WriteByte('-')
		}
		s.WriteByte(transferAlphabet[c&31])
	}
	code = s.String()
	hash, _ = TransferCodeHash(code)
	return code, hash
}

// TransferCodeHash returns the hash of a transfer code as a person may
// type it — any case, with or without the hyphen or spaces, O for 0, I or
// L for 1 — or false when it cannot be one.
func TransferCodeHash(code string) (string, bool) {
	var norm []byte
	for _, r := range strings.ToUpper(code) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r == 'O':
			r = '0'
		case r == 'I' || r == 'L':
			r = '1'
		}
		if r > unicode.MaxASCII || !strings.ContainsRune(transferAlphabet, r) {
			return "", false
		}
		norm = append(norm, byte(r))
	}
	if len(norm) != transferLen {
		return "", false
	}
	sum := sha256.Sum256(norm)
	return hex.EncodeToString(sum[:]), true
}

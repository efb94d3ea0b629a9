// Package identity decides who a reader is without accounts: the key in
// which two nicks are the same nick, and the signed claims by which a
// browser holds a nick (the claims cookie). It is built once per database
// with the secret that signs claims.
package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"cgichat/internal/chat"

	"go.mau.fi/util/confusable"
	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

var fold = cases.Fold()

// KeyVersion names the way Key computes keys. The store re-keys the nick
// claims it holds when it meets claims keyed another way.
const KeyVersion = "precis-nickname+fold+uts39-skeleton"

// Key returns the form in which nicks are compared: the nick as the PRECIS
// Nickname profile (RFC 8266) enforces it, case-folded, then reduced to its
// Unicode confusable skeleton (UTS #39), so that "Ada", "ＡＤＡ" and "аda"
// with a Cyrillic а have one key. Two nicks with the same key are the same
// nick for ownership, rate limits and bans. A key is for comparing only,
// never for showing.
//
// A nick the profile refuses (a ban a moderator typed, a key from before
// the profile) is compared without its invisible and control characters.
func Key(nick string) string {
	s, err := precis.Nickname.String(strings.TrimSpace(nick))
	if err != nil {
		s = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
			if chat.Ignorable(r) || unicode.IsControl(r) {
				return -1
			}
			return r
		}, norm.NFKC.String(nick))), " ")
	}
	return confusable.Skeleton(norm.NFKC.String(fold.String(s)))
}

// Claim says that the holder of its signature owns a nick key; Issued
// (Unix nanoseconds, never 0) tells this claim from earlier ones for the
// same key.
type Claim struct {
	Key    string
	Issued int64
}

// Claims are the verified claims one client holds.
type Claims []Claim

// Held returns the Issued stamps of the claims on key.
func (cs Claims) Held(key string) []int64 {
	var out []int64
	for _, c := range cs {
		if c.Key == key {
			out = append(out, c.Issued)
		}
	}
	return out
}

// CookieName is the cookie that carries a browser's signed claims.
const CookieName = "cgichat_claims"

// maxClaims bounds how many nicks one browser keeps claims for.
const maxClaims = 5

// cookieAge is how long a browser keeps its claims cookie.
const cookieAge = 365 * 24 * 3600

// Keeper reads and writes the claims cookie, signed with HMAC-SHA256 under
// one secret (the database's).
type Keeper struct {
	secret []byte
}

// New returns a Keeper signing with secret.
func New(secret []byte) *Keeper { return &Keeper{secret: secret} }

// Read returns the claims in r's cookie whose signatures are valid; forged
// or damaged ones are left out.
func (k *Keeper) Read(r *http.Request) Claims {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil
	}
	return k.parse(c.Value)
}

// Cookie returns the cookie that holds c first and then the other claims
// held, minus any older one for the same key, at most five in all. It is
// HttpOnly and SameSite=Strict, and Secure when the page came over HTTPS.
func (k *Keeper) Cookie(held Claims, c Claim, secure bool) *http.Cookie {
	return &http.Cookie{
		Name:     CookieName,
		Value:    k.add(held, c),
		MaxAge:   cookieAge,
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteStrictMode,
	}
}

// claimVersion starts the signed form of a claim whose key Key made; a
// claim without it holds a key of the rules before (NFKC, case folding,
// invisible characters dropped), which parse re-keys.
const claimVersion = "k2."

// sign returns c in its signed text form.
func (k *Keeper) sign(c Claim) string {
	body := claimVersion + base64.RawURLEncoding.EncodeToString([]byte(c.Key)) + "." + strconv.FormatInt(c.Issued, 10)
	return body + "." + base64.RawURLEncoding.EncodeToString(k.mac(body))
}

func (k *Keeper) mac(body string) []byte {
	h := hmac.New(sha256.New, k.secret)
	h.Write([]byte(body))
	return h.Sum(nil)
}

// parse returns the claims in a cookie value whose signatures are valid.
func (k *Keeper) parse(value string) Claims {
	var out Claims
	for _, signed := range strings.Split(value, "~") {
		i := strings.LastIndexByte(signed, '.')
		if i < 0 {
			continue
		}
		body, sig := signed[:i], signed[i+1:]
		got, err := base64.RawURLEncoding.DecodeString(sig)
		if err != nil || !hmac.Equal(got, k.mac(body)) {
			continue
		}
		rest, current := strings.CutPrefix(body, claimVersion)
		kb, issued, ok := strings.Cut(rest, ".")
		key, err := base64.RawURLEncoding.DecodeString(kb)
		n, nerr := strconv.ParseInt(issued, 10, 64)
		if !ok || err != nil || nerr != nil {
			continue
		}
		c := Claim{Key: string(key), Issued: n}
		if !current {
			// The old key was a normalised nick: its key now is the nick's.
			c.Key = Key(c.Key)
		}
		out = append(out, c)
	}
	return out
}

// add returns the cookie value holding c first and then the other claims,
// minus any older one for the same key, at most maxClaims in all.
func (k *Keeper) add(claims Claims, c Claim) string {
	signed := []string{k.sign(c)}
	for _, o := range claims {
		if o.Key != c.Key && len(signed) < maxClaims {
			signed = append(signed, k.sign(o))
		}
	}
	return strings.Join(signed, "~")
}

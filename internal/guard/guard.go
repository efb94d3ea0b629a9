// Package guard holds the rules that keep a public chat usable: nick keys
// that see through look-alikes, signed nick claims, token buckets for rate
// limits, the same-origin check for posts and the client's address.
package guard

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"cgichat/internal/chat"
	"cgichat/internal/config"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

var fold = cases.Fold()

// NickKey returns the form in which nicks are compared: Unicode NFKC (so
// "ａｄａ" and "ada" meet), case-folded, without invisible characters, with
// white space runs as one space. Two nicks with the same key are the same
// nick for ownership and bans.
func NickKey(nick string) string {
	s := fold.String(norm.NFKC.String(nick))
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
		case chat.Invisible(r):
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

// Claim says that the holder of its signature owns a nick key; Issued
// tells this claim from earlier ones for the same key.
type Claim struct {
	Key    string
	Issued int64
}

// ClaimCookie is the cookie that carries a browser's signed claims.
const ClaimCookie = "cgichat_claims"

// maxClaims bounds how many nicks one browser keeps claims for.
const maxClaims = 5

// Sign returns the claim in its signed text form.
func (c Claim) Sign(secret []byte) string {
	body := base64.RawURLEncoding.EncodeToString([]byte(c.Key)) + "." + strconv.FormatInt(c.Issued, 10)
	return body + "." + base64.RawURLEncoding.EncodeToString(mac(secret, body))
}

func mac(secret []byte, body string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(body))
	return h.Sum(nil)
}

// ParseClaims returns the claims in a cookie value whose signatures are
// valid; forged or damaged ones are left out.
func ParseClaims(value string, secret []byte) []Claim {
	var out []Claim
	for _, signed := range strings.Split(value, "~") {
		i := strings.LastIndexByte(signed, '.')
		if i < 0 {
			continue
		}
		body, sig := signed[:i], signed[i+1:]
		got, err := base64.RawURLEncoding.DecodeString(sig)
		if err != nil || !hmac.Equal(got, mac(secret, body)) {
			continue
		}
		k, issued, ok := strings.Cut(body, ".")
		key, err := base64.RawURLEncoding.DecodeString(k)
		n, nerr := strconv.ParseInt(issued, 10, 64)
		if !ok || err != nil || nerr != nil {
			continue
		}
		out = append(out, Claim{Key: string(key), Issued: n})
	}
	return out
}

// AddClaim returns the cookie value holding c first and then the other
// claims, minus any older one for the same key, at most maxClaims in all.
func AddClaim(claims []Claim, c Claim, secret []byte) string {
	signed := []string{c.Sign(secret)}
	for _, o := range claims {
		if o.Key != c.Key && len(signed) < maxClaims {
			signed = append(signed, o.Sign(secret))
		}
	}
	return strings.Join(signed, "~")
}

// Bucket is a token bucket's state: tokens left at Updated (Unix seconds).
type Bucket struct {
	Tokens  float64
	Updated float64
}

// Take takes one token from b at now under rate r; a bucket not found
// starts full. It returns the new state, or, when the bucket is empty, how
// long until a token is back.
func Take(b Bucket, found bool, r config.Rate, now float64) (Bucket, bool, time.Duration) {
	capacity := float64(r.N)
	perSecond := capacity / r.Per.Seconds()
	tokens := capacity
	if found {
		tokens = math.Min(capacity, b.Tokens+math.Max(0, now-b.Updated)*perSecond)
	}
	if tokens < 1 {
		wait := time.Duration((1 - tokens) / perSecond * float64(time.Second))
		return b, false, wait
	}
	return Bucket{Tokens: tokens - 1, Updated: now}, true, 0
}

// SameOrigin reports whether a POST comes from a page of this site or of
// an allowed origin, judged by Origin or, without it, Referer. A request
// with neither comes from no browser page (curl, scripts): it passes, since
// cross-site forgery needs a browser.
func SameOrigin(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		ref := r.Header.Get("Referer")
		if ref == "" {
			return true
		}
		origin = ref
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes Origin: null, from sandboxed frames and files
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	o := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, a := range allowed {
		if o == a {
			return true
		}
	}
	return false
}

// ClientAddr returns the address of the client: the connection's peer, or,
// when that is a trusted proxy, the nearest untrusted address in
// X-Forwarded-For. Without trusted proxies the header is never believed.
func ClientAddr(r *http.Request, trusted []netip.Prefix) string {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !isTrusted(a, trusted) {
			return a.String()
		}
		peer = a
	}
	return peer.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

package web

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"cgichat/internal/chat"
	"cgichat/internal/config"
)

// frontEnd is what the web server in front of the program says about how a
// request reached it, beyond the request's headers.
type frontEnd struct {
	// https: the client came over HTTPS, as the request (HTTPS=on,
	// REQUEST_SCHEME=https) or a trusted proxy (X-Forwarded-Proto,
	// Forwarded: proto=) says.
	https bool
	// port is SERVER_PORT, the port the front end took the request on:
	// nginx's stock fastcgi_params pass the Host without it.
	port string
}

// readFrontEnd reads r's front end from the request's variables (see
// hosting.Vars) and the headers of trusted proxies.
func readFrontEnd(r *http.Request, vars func(string) string, trusted []netip.Prefix) frontEnd {
	https := r.TLS != nil ||
		strings.EqualFold(vars("HTTPS"), "on") || vars("HTTPS") == "1" ||
		strings.EqualFold(vars("REQUEST_SCHEME"), "https") ||
		forwardedProto(r, trusted) == "https"
	return frontEnd{https: https, port: vars("SERVER_PORT")}
}

// checkSite refuses a POST that names a host this chat is not served under
// (DNS rebinding: a page of a foreign site whose name was made to point
// here, so Host and Origin agree), or that a browser sent from another
// site's page.
func checkSite(r *http.Request, cfg config.Config, fe frontEnd) error {
	if err := checkHost(r, cfg); err != nil {
		return err
	}
	if !fromOwnPage(r, fe, cfg.AllowedOriginList()) {
		return chat.Errorf(chat.EForbidden, "Messages are accepted only from this chat's own page.")
	}
	return nil
}

// checkHost refuses a request, a post or a stream, that names a host this
// chat is not served under: a page of a foreign site whose name was made
// to point here (DNS rebinding) would post as its own origin, and read
// the stream as its own, so the history of a chat on a private network or
// on the reader's own machine would be another site's to read.
func checkHost(r *http.Request, cfg config.Config) error {
	if hostAllowed(r, cfg.AllowedHostList(), cfg.TrustedPrefixes()) {
		return nil
	}
	name, _ := splitHost(r.Host)
	return chat.Errorf(chat.EForbidden, "This chat is not served under the name %q; its owner can list the names it is served under in CHAT_ALLOWED_HOSTS.", name)
}

// hostAllowed reports whether r names a host this chat is served under:
// one listed in allowed when the list is set. Otherwise the web server's
// own routing decided, except for a client on this machine (a loopback
// peer that is not a trusted proxy), which must name the host by an IP
// address or as localhost: a chat on one's own machine is what a
// DNS-rebinding page reaches, and a browser there reaches it by those.
func hostAllowed(r *http.Request, allowed []string, trusted []netip.Prefix) bool {
	name, _ := splitHost(r.Host)
	if len(allowed) > 0 {
		for _, a := range allowed {
			if name == a || strings.HasPrefix(a, "*.") && strings.HasSuffix(name, a[1:]) {
				return true
			}
		}
		return false
	}
	peer := peerAddr(r)
	if !peer.IsLoopback() || isTrusted(peer, trusted) {
		return true
	}
	_, err := netip.ParseAddr(name)
	return err == nil || name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// fromOwnPage reports whether a POST comes from a page of this chat or of
// an allowed origin. Fetch Metadata decides when the browser sends it:
// same-origin (and none, a request the user made) pass; same-site and
// cross-site pass only from an allowed origin, since a sibling subdomain
// may be another account's on a shared host. Older browsers are judged by
// Origin or, without it, Referer. A request with none of these comes from
// no browser page (curl, scripts): it passes, since forgery needs a
// browser.
func fromOwnPage(r *http.Request, fe frontEnd, allowed []string) bool {
	origin := r.Header.Get("Origin")
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "same-site", "cross-site":
		u, err := url.Parse(origin)
		return err == nil && listed(u, allowed)
	}
	if origin == "" {
		origin = r.Header.Get("Referer")
		if origin == "" {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes Origin: null, from sandboxed frames and files
	}
	return listed(u, allowed) || sameAsRequest(u, r.Host, fe)
}

// sameAsRequest reports whether the origin u is the origin of a request
// for host (the Host header as the front end passed it) that came in
// through fe. The names must match. A port in host must match u's; a host
// without one lost it on the way or was the default, so u's port may be
// its scheme's default or the front end's port. A page over plain HTTP
// does not post into a chat reached over HTTPS; the reverse is a
// TLS-terminating proxy in front.
func sameAsRequest(u *url.URL, host string, fe frontEnd) bool {
	name, port := splitHost(host)
	if canonicalName(u.Hostname()) != name {
		return false
	}
	if fe.https && u.Scheme == "http" {
		return false
	}
	oport := originPort(u)
	if port != "" {
		return oport == port
	}
	return oport == defaultPort(u.Scheme) || oport == fe.port
}

// listed reports whether the origin u is one of allowed (scheme://host,
// with a port unless it is the scheme's default).
func listed(u *url.URL, allowed []string) bool {
	if u.Host == "" {
		return false
	}
	o := u.Scheme + "://" + canonicalName(u.Hostname()) + ":" + originPort(u)
	for _, a := range allowed {
		if au, err := url.Parse(a); err == nil && o == au.Scheme+"://"+canonicalName(au.Hostname())+":"+originPort(au) {
			return true
		}
	}
	return false
}

// splitHost returns the lower-case name and the port of a Host header
// value.
func splitHost(host string) (name, port string) {
	name = host
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p
	}
	return canonicalName(strings.Trim(name, "[]")), port
}

// canonicalName returns a host name as it is compared: lower case, without
// the trailing dot of a fully qualified name.
func canonicalName(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// originPort returns u's port, or its scheme's default.
func originPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return defaultPort(u.Scheme)
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// peerAddr returns the address of the connection's peer: the client, or a
// proxy in front. It is invalid when the request has no IP peer.
func peerAddr(r *http.Request) netip.Addr {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// clientID returns what a client is known by for rate limits, the cap on
// streams and address bans: its IPv4 address, or the IPv6 prefix of
// CHAT_IPV6_PREFIX bits its address is in (2001:db8:5::/64), since one
// IPv6 host or network gets a whole /64 (RFC 6177) and picks any address in
// it.
func clientID(r *http.Request, cfg config.Config) string {
	addr := clientAddr(r, cfg.TrustedPrefixes())
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is6() || cfg.IPv6Prefix >= 128 {
		return addr
	}
	return netip.PrefixFrom(a, cfg.IPv6Prefix).Masked().String()
}

// clientAddr returns the address of the client: the connection's peer, or,
// when that is a trusted proxy, the nearest untrusted address in
// X-Forwarded-For. Without trusted proxies the header is never believed.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	peer := peerAddr(r)
	if !peer.IsValid() {
		host := r.RemoteAddr
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		return host
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := headerList(r, "X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
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

// forwardedProto returns the scheme the client used as the trusted
// proxies in front report it, in lower case: from Forwarded (RFC 7239)
// when sent, else from X-Forwarded-Proto. Walking back from the nearest
// proxy's entry past those a trusted proxy was reached from, it takes the
// entry of the proxy the client reached. Without a trusted peer it is "":
// anyone can send the headers.
func forwardedProto(r *http.Request, trusted []netip.Prefix) string {
	if !isTrusted(peerAddr(r), trusted) {
		return ""
	}
	if elems := forwardedElements(r); len(elems) > 0 {
		i := len(elems) - 1
		for i > 0 && isTrusted(forwardedNode(elems[i]["for"]), trusted) {
			i--
		}
		return strings.ToLower(elems[i]["proto"])
	}
	protos := headerList(r, "X-Forwarded-Proto")
	if len(protos) == 0 {
		return ""
	}
	i := len(protos) - 1
	// Entries line up with X-Forwarded-For's hops when every proxy added one.
	if hops := headerList(r, "X-Forwarded-For"); len(hops) == len(protos) {
		for i > 0 {
			a, err := netip.ParseAddr(hops[i])
			if err != nil || !isTrusted(a.Unmap(), trusted) {
				break
			}
			i--
		}
	}
	return strings.ToLower(protos[i])
}

// forwardedElements parses r's Forwarded headers into their elements, one
// map of parameter to value per proxy, oldest first.
func forwardedElements(r *http.Request) []map[string]string {
	var out []map[string]string
	for _, elem := range headerList(r, "Forwarded") {
		params := make(map[string]string)
		for _, pair := range strings.Split(elem, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok {
				params[strings.ToLower(k)] = strings.Trim(v, `"`)
			}
		}
		out = append(out, params)
	}
	return out
}

// forwardedNode returns the address of a Forwarded for= value such as
// 192.0.2.60, "[2001:db8::1]:4711" or unknown (invalid then).
func forwardedNode(v string) netip.Addr {
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(strings.Trim(v, "[]"))
	return a.Unmap()
}

// headerList returns the comma-separated entries of every value of the
// header name, trimmed. Quoted commas do not occur in the headers read
// with it.
func headerList(r *http.Request, name string) []string {
	var out []string
	for _, v := range r.Header.Values(name) {
		for _, e := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(e))
		}
	}
	return out
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

package proxy

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are meaningful only for one connection and are never forwarded
// (RFC 9110 §7.6.1), plus the proxy's own Proxy-* headers. Canonical form.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by curl and old browsers
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer", // announces trailers of this hop; the transport announces its own
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes hop-by-hop headers from h, including those the
// Connection header names (RFC 9110 §7.6.1). A websocket upgrade keeps
// Connection and Upgrade, and "TE: trailers" is kept because it tells the
// upstream we can take trailers (gRPC relies on it).
func removeHopHeaders(h http.Header) {
	upgrade := isWebsocketUpgrade(h)
	teTrailers := hasToken(h["Te"], "trailers")
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				if upgrade && strings.EqualFold(name, "Upgrade") {
					continue
				}
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		if upgrade && (name == "Connection" || name == "Upgrade") {
			continue
		}
		delete(h, name) // already canonical: no need for Del's canonicalisation, twice per request
	}
	if teTrailers {
		h["Te"] = []string{"trailers"}
	}
}

// dropUnderscoreNames deletes the header fields whose names hold an
// underscore and returns how many it deleted. A hop behind the proxy that
// maps "_" to "-" (CGI, some frameworks and gateways) would read
// Content_Length or Proxy_Authorization as Content-Length or
// Proxy-Authorization; nginx drops such names by default
// (underscores_in_headers off), and so does the proxy (issue 22).
func dropUnderscoreNames(h http.Header) int {
	n := 0
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
			n++
		}
	}
	return n
}

// noUserAgent is the User-Agent value that makes net/http send none. It is
// shared: header values are replaced, never modified in place.
var noUserAgent = []string{""}

// cloneHeader is http.Header.Clone with room for extra more fields, so
// that adding one (User-Agent) does not grow the map.
func cloneHeader(h http.Header, extra int) http.Header {
	n := 0
	for _, vv := range h {
		n += len(vv)
	}
	values := make([]string, n) // one backing array for all values, as Clone does
	h2 := make(http.Header, len(h)+extra)
	for k, vv := range h {
		if vv == nil {
			h2[k] = nil
			continue
		}
		n := copy(values, vv)
		h2[k] = values[:n:n]
		values = values[n:]
	}
	return h2
}

func isWebsocketUpgrade(h http.Header) bool {
	return hasToken(h["Connection"], "upgrade") && hasToken(h["Upgrade"], "websocket")
}

// hasToken reports whether a comma-separated header contains token,
// case-insensitively.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

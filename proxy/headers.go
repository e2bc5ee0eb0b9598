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
		h.Del(name)
	}
	if teTrailers {
		h["Te"] = []string{"trailers"}
	}
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

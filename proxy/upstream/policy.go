package upstream

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
)

// The retry policy (DESIGN.md § Retries), in one place and pure: every
// function here decides from its arguments alone, so the table tests need
// no sockets (Caddy's tryAgain is the model).
//
// A request is sent again only when that cannot double a payment: it
// carries one of retry.idempotency_headers (Payrails deduplicates by the
// key; its error catalogue says to retry request.timeout and
// service.unavailable with the same key), or it is idempotent without a
// body (RFC 9110 §9.2.2), or the upstream refused it for its certificate
// (then it never reached the API: failover replays it once, whatever its
// method), or it was never sent at all (no connection, no TLS handshake).
// Only failures before any answer began count, and, for keyed requests,
// Payrails' retryable answers and an edge's 5xx page. Nothing under the
// proxy sends a request again on its own (generation.go, nonReplayable).

// HeaderAttempts tells the client how many times the proxy sent its
// request, when it was more than once.
const HeaderAttempts = "X-Payrails-Proxy-Attempts"

// HeaderAddedKey is the key the proxy gives a request without one
// (retry.add_idempotency_key), returned to the client on the answer.
const HeaderAddedKey = "X-Idempotency-Key"

// Retry reasons, the reason label of payrails_proxy_upstream_retries_total.
const (
	retryConnect        = "connect"             // no TCP connection
	retryTLS            = "tls"                 // the TLS handshake failed
	retryConnectionLost = "connection_lost"     // reset or closed before any answer
	retryRefused        = "certificate_refused" // failover replay
	retryPayrails       = "payrails_retryable"  // 503/504 service.unavailable or request.timeout
	retryEdge           = "edge_error"          // an edge's 502/503/504 page
)

// retryReasons are every reason, for the metrics' first series.
var retryReasons = []string{retryConnect, retryTLS, retryConnectionLost, retryRefused, retryPayrails, retryEdge}

// withRetryDefaults is the zero-means-default rule for the retry block: a
// zero Attempts means config.DefaultRetry.
func withRetryDefaults(r config.Retry) config.Retry {
	if r.Attempts == 0 {
		return config.DefaultRetry()
	}
	return r
}

// keyed reports whether h carries one of the idempotency headers, with a
// value: an empty header is no key (net/http counts its mere presence).
func keyed(h http.Header, names []string) bool {
	for _, n := range names {
		if v := h[n]; len(v) > 0 && v[0] != "" {
			return true
		}
	}
	return false
}

// isIdempotent: RFC 9110 §9.2.2.
func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// request is what the policy knows of a request across its attempts.
type request struct {
	method  string
	keyed   bool // carries an idempotency key: the upstream deduplicates it
	hasBody bool // had a body when it arrived
	kept    bool // that body is kept for another send (retry.max_body); false when it streams
}

// answered is the retry reason for an answer a keyed request may be sent
// again for ("" when it passes to the client as it is): Payrails' own
// retryable answers, or an edge's 5xx page.
func answered(r request, resp *http.Response) string {
	switch {
	case !r.keyed || !answer.Retryable(resp):
		return ""
	case answer.IsHTML(resp.Header.Get("Content-Type")):
		return retryEdge
	}
	return retryPayrails
}

// notRetried explains, for the JSON detail, why a failed request is not
// sent again after sends sends; "" when it may be. neverSent means no byte
// of the request left the proxy: trying again sends it once, not twice,
// so every request may, its body intact.
func notRetried(rt config.Retry, r request, neverSent bool, sends int) string {
	switch {
	case neverSent:
	case r.keyed && r.hasBody && !r.kept:
		return fmt.Sprintf("not retried: the body is larger than retry.max_body (%d bytes) or was streamed", rt.MaxBody)
	case !r.keyed && (!isIdempotent(r.method) || r.hasBody):
		what := r.method
		if isIdempotent(r.method) {
			what += " with a body"
		}
		return "not retried: " + what + " without an idempotency key (" + HeaderAddedKey + "), which a second send could double"
	}
	if sends >= rt.Attempts {
		if rt.Attempts == 1 {
			return "not retried: retries are off (retry.attempts: 1)"
		}
		return fmt.Sprintf("not retried: %d attempts made (retry.attempts)", sends)
	}
	return ""
}

// mayReplay reports whether a request refused for its certificate may be
// replayed on the certificate failover chose: it never reached the API,
// so whatever its method, once, if its body can be sent again.
func mayReplay(r request, replayed bool) bool {
	return !replayed && (!r.hasBody || r.kept)
}

// mayResendWithNewToken reports whether a request the API answered 401 to
// its injected token may be sent again with a new token: only when a
// second send cannot double it (an idempotent method or a key) and its
// body, if any, was kept.
func mayResendWithNewToken(r request) bool {
	return (isIdempotent(r.method) || r.keyed) && (!r.hasBody || r.kept)
}

// pause is how long to wait before send sends+1, given the upstream's
// answer (nil after a failure): the back-off, or the answer's Retry-After
// when longer; ok is false, with why, when Retry-After asks for more than
// retry.max_backoff.
func pause(rt config.Retry, resp *http.Response, sends int) (wait time.Duration, why string) {
	wait = backoff(rt, sends)
	if resp == nil {
		return wait, ""
	}
	if ra := retryAfter(resp.Header); ra > rt.MaxBackoff {
		return 0, fmt.Sprintf("not retried: the upstream asked to wait %s (Retry-After), longer than retry.max_backoff", ra)
	} else if ra > wait {
		wait = ra
	}
	return wait, ""
}

// backoff is the pause before attempt n+1 (n >= 1): retry.backoff doubled
// per attempt, capped by retry.max_backoff, with full jitter in its upper
// half so that clients retrying together spread out.
func backoff(r config.Retry, n int) time.Duration {
	d := r.Backoff << (n - 1)
	if d <= 0 || d > r.MaxBackoff {
		d = r.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter reads a Retry-After header (seconds or an HTTP date); 0 when
// absent or unreadable.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

package proxy

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// Retries (DESIGN.md § Retries). A request is sent again only when that
// cannot double a payment: it carries one of retry.idempotency_headers
// (Payrails deduplicates by the key; its error catalogue says to retry
// request.timeout and service.unavailable with the same key), or it is
// idempotent without a body (RFC 9110 §9.2.2), or the upstream refused it
// for its certificate (then it never reached the API: failover replays it
// once, whatever its method). Only failures before any answer began count,
// and, for keyed requests, Payrails' retryable answers and an edge's 5xx
// page. A POST without a key is sent at most once: it is tried again only
// when it was not sent at all (no connection, or no TLS handshake).

// HeaderAttempts tells the client how many times the proxy sent its
// request, when it was more than once.
const HeaderAttempts = "X-Payrails-Proxy-Attempts"

// headerAddedKey is the key the proxy gives a request without one
// (retry.add_idempotency_key), returned to the client on the answer.
const headerAddedKey = "X-Idempotency-Key"

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

// withRetryDefaults is the proxy's zero-means-default rule for the retry
// block: a zero Attempts means config.DefaultRetry.
func withRetryDefaults(r config.Retry) config.Retry {
	if r.Attempts == 0 {
		return config.DefaultRetry()
	}
	return r
}

// keyed reports whether h carries one of the idempotency headers.
func keyed(h http.Header, names []string) bool {
	for _, n := range names {
		if v := h[n]; len(v) > 0 && v[0] != "" {
			return true
		}
	}
	return false
}

// newIdempotencyKey is a fresh random key (128 bits, hex).
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
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

// retryBudget bounds retries to a fifth of the requests of the last ten
// seconds (and at least budgetFloor in that time, so that a quiet upstream
// can still retry), so that an upstream that is down does not get its load
// multiplied by the retries. Counting a request is lock-free (every
// request does it); a second's bucket is reset by the first to see it
// stale, so a count or two may be lost at the turn of a second, which a
// budget can afford. Safe for concurrent use.
type retryBudget struct {
	mu      sync.Mutex // serialises allow
	buckets [budgetWindow]budgetBucket
}

type budgetBucket struct {
	sec, requests, retries atomic.Int64
}

const (
	budgetWindow = 10 // seconds
	budgetRatio  = 0.2
	budgetFloor  = 10
)

// bucket returns the bucket of second sec, reset if it held an older one.
func (b *retryBudget) bucket(sec int64) *budgetBucket {
	bk := &b.buckets[sec%budgetWindow]
	if old := bk.sec.Load(); old != sec && bk.sec.CompareAndSwap(old, sec) {
		bk.requests.Store(0)
		bk.retries.Store(0)
	}
	return bk
}

// request counts one request.
func (b *retryBudget) request() { b.bucket(time.Now().Unix()).requests.Add(1) }

// allow takes one retry from the budget, and reports whether there was one.
func (b *retryBudget) allow() bool {
	now := time.Now().Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.bucket(now)
	var requests, retries int64
	for i := range b.buckets {
		bk := &b.buckets[i]
		if now-bk.sec.Load() < budgetWindow {
			requests += bk.requests.Load()
			retries += bk.retries.Load()
		}
	}
	if float64(retries) >= max(budgetFloor, budgetRatio*float64(requests)) {
		return false
	}
	cur.retries.Add(1)
	return true
}

// keptBody is a request body the proxy read whole (up to retry.max_body)
// so that it can be sent again. Each attempt reads it through a reader of
// its own; the buffer goes back to the pool when the exchange has ended
// and every reader is closed (a transport may read after RoundTrip
// returned).
type keptBody struct {
	buf  *bytes.Buffer
	refs atomic.Int32
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// keepBody reads out's body (at most max bytes) into a kept body, and
// points out at it. It returns nil, leaving out streaming what was read and
// the rest, when the body is larger, of a kind that must stream (Expect:
// 100-continue: the client waits before sending it), or absent. A failure
// to read the client's body is returned as it is (a *clientBodyError).
func keepBody(out *http.Request, max int64) (*keptBody, error) {
	if out.Body == nil || out.Body == http.NoBody || max <= 0 || out.ContentLength > max || out.Header["Expect"] != nil {
		return nil, nil
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(out.Body, max+1))
	if err != nil {
		bodyPool.Put(buf)
		return nil, err
	}
	if n > max {
		rest := out.Body
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(bytes.Clone(buf.Bytes())), rest), rest}
		bodyPool.Put(buf)
		return nil, nil
	}
	k := &keptBody{buf: buf}
	k.refs.Store(1) // the exchange's
	out.Body = k.reader()
	// No GetBody, ever: net/http's Transport would resend the request on
	// its own (see nonReplayable). The attempts loop gives each send its
	// own reader of the kept body.
	return k, nil
}

// reader returns a reader of the whole body for one attempt.
func (k *keptBody) reader() io.ReadCloser {
	k.refs.Add(1)
	return &keptReader{Reader: bytes.NewReader(k.buf.Bytes()), k: k}
}

// release drops one reference; the last returns the buffer to the pool.
func (k *keptBody) release() {
	if k.refs.Add(-1) == 0 {
		if k.buf.Cap() <= 4<<20 { // a rare big body is not worth keeping around
			bodyPool.Put(k.buf)
		}
	}
}

type keptReader struct {
	*bytes.Reader
	k    *keptBody
	once sync.Once
}

func (r *keptReader) Close() error {
	r.once.Do(r.k.release)
	return nil
}

// notRetried explains, for the JSON detail, why a failed request was not
// sent again; "" when it may be.
// neverSent means no byte of the request left the proxy (the connection
// or its TLS handshake failed): trying again sends it once, not twice, so
// every request may, its body intact.
func notRetried(r config.Retry, method string, hasBody, kept, isKeyed, neverSent bool, attempts int) string {
	switch {
	case neverSent:
	case isKeyed && hasBody && !kept:
		return fmt.Sprintf("not retried: the body is larger than retry.max_body (%d bytes) or was streamed", r.MaxBody)
	case !isKeyed && (!isIdempotent(method) || hasBody):
		what := method
		if isIdempotent(method) {
			what += " with a body"
		}
		return "not retried: " + what + " without an idempotency key (" + headerAddedKey + "), which a second send could double"
	}
	if attempts >= r.Attempts {
		if r.Attempts == 1 {
			return "not retried: retries are off (retry.attempts: 1)"
		}
		return fmt.Sprintf("not retried: %d attempts made (retry.attempts)", attempts)
	}
	return ""
}

// errBudget explains a retry the budget refused.
var errBudget = errors.New("not retried: the retry budget (a fifth of the requests of the last 10 s) is spent: the upstream is failing")

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/h1"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
)

// sendState is one proxied request on its way to the upstream, across its
// attempts.
type sendState struct {
	out     *http.Request
	keyed   bool      // carries an idempotency key: the upstream deduplicates it
	hasBody bool      // had a body when it arrived
	kept    *keptBody // that body, kept for another send; nil when it streams
}

// send is the way of every proxied request to the upstream: an added
// idempotency key (retry.add_idempotency_key), the body kept for a second
// send (retry.max_body), the access token (tokens.go), then the attempts.
// The generation of the last attempt comes back even on failure, for the
// error's classification and the log line.
func (u *Upstream) send(ex *exchange, out *http.Request) (*http.Response, *generation, error) {
	u.budget.request()
	isKeyed := keyed(out.Header, u.retry.IdempotencyHeaders)
	// A key the client sent under a name retry.idempotency_headers leaves
	// out is still the client's: never replaced.
	if u.retry.AddIdempotencyKey && !isKeyed && (out.Method == http.MethodPost || out.Method == http.MethodPatch) &&
		out.Header.Get(headerAddedKey) == "" {
		ex.addedKey = newIdempotencyKey()
		out.Header.Set(headerAddedKey, ex.addedKey)
		isKeyed = keyed(out.Header, u.retry.IdempotencyHeaders)
	}
	r := &sendState{out: out, keyed: isKeyed, hasBody: out.Body != nil && out.Body != http.NoBody}
	kept, err := keepBody(out, u.retry.MaxBody)
	if err != nil {
		return nil, nil, err
	}
	r.kept, ex.kept = kept, kept
	if u.tokens != nil && u.tokens.wants(out) {
		return u.sendWithToken(ex, r)
	}
	return u.attempts(ex, r)
}

// outcome is what one attempt's result means for the request.
type outcome int

const (
	answered  outcome = iota // an answer to pass on (or a failure not to repeat)
	retryable                // no answer began, or a keyed request got a retryable answer
	refused                  // the upstream refused the certificate: the request never reached the API
)

// attempts sends r until it is answered, a failure may not be repeated,
// retry.attempts sends are made, or the retry budget is spent. A refusal
// of the certificate is replayed once on the certificate failover chose,
// and that replay is not a retry.
func (u *Upstream) attempts(ex *exchange, r *sendState) (*http.Response, *generation, error) {
	ctx := r.out.Context()
	replayed := false
	for n := 1; ; n++ {
		ex.attempts++
		g, err := u.current()
		if err != nil {
			return nil, nil, err
		}
		req := r.out
		if n > 1 && r.kept != nil {
			// A copy: the previous attempt's transport may still read the
			// request it was given, body included.
			req = r.out.WithContext(ctx)
			req.Body = r.kept.reader()
		}
		resp, err := g.RoundTrip(req)
		what, reason := u.judge(ctx, resp, err, g, r.keyed)
		switch what {
		case answered:
			return resp, g, err
		case refused:
			if resp != nil {
				err = &refusalPageError{status: resp.Status, title: reason}
				discard(resp)
			}
			if replayed || (r.hasBody && r.kept == nil) {
				return nil, g, err
			}
			if u.failover(ctx, g, reason) == nil {
				return nil, g, err
			}
			replayed = true
			u.m.retry(u.name, retryRefused)
			continue
		}
		sends := n
		if replayed {
			sends--
		}
		wait, ok := u.mayRetry(ex, r, resp, reason, sends)
		if !ok {
			return resp, g, err
		}
		if !sleep(ctx, wait) {
			return nil, g, ctx.Err()
		}
	}
}

// mayRetry decides whether a retryable result is sent again after sends
// sends, and after how long; when not, ex says why. A response it lets go
// is discarded.
func (u *Upstream) mayRetry(ex *exchange, r *sendState, resp *http.Response, reason string, sends int) (time.Duration, bool) {
	neverSent := reason == retryConnect || reason == retryTLS
	if why := notRetried(u.retry, r.out.Method, r.hasBody, r.kept != nil, r.keyed, neverSent, sends); why != "" {
		ex.notRetried = why
		return 0, false
	}
	wait := backoff(u.retry, sends)
	if resp != nil {
		if ra := retryAfter(resp.Header); ra > u.retry.MaxBackoff {
			ex.notRetried = fmt.Sprintf("not retried: the upstream asked to wait %s (Retry-After), longer than retry.max_backoff", ra)
			return 0, false
		} else if ra > wait {
			wait = ra
		}
	}
	if !u.budget.allow() {
		u.m.budgetExhausted(u.name)
		ex.notRetried = errBudget.Error()
		return 0, false
	}
	if resp != nil {
		discard(resp)
	}
	u.m.retry(u.name, reason)
	return wait, true
}

// judge says what one attempt's result means. For a refusal the reason is
// its words (the alert, or the edge page's title); for a retryable result,
// the retry reason.
func (u *Upstream) judge(ctx context.Context, resp *http.Response, err error, g *generation, isKeyed bool) (outcome, string) {
	if err != nil {
		return u.judgeFailure(ctx, err, g)
	}
	if title, ok := answer.EdgeRefusal(resp); ok {
		return refused, title
	}
	if isKeyed && answer.Retryable(resp) {
		if answer.IsHTML(resp.Header.Get("Content-Type")) {
			return retryable, retryEdge
		}
		return retryable, retryPayrails
	}
	return answered, ""
}

// judgeFailure classifies a failed round trip for the retry decision.
func (u *Upstream) judgeFailure(ctx context.Context, err error, g *generation) (outcome, string) {
	var (
		de  *dialError
		hs  *handshakeError
		nr  *h1.NoResponseError
		be  *clientBodyError
		bre *h1.BodyReadError
	)
	if code, text, ok := answer.ServerAlert(err); ok {
		if _, isCert := answer.LookupCertificateAlert(code); isCert {
			return refused, text
		}
	}
	switch {
	case ctx.Err() != nil, errors.As(err, &be), errors.As(err, &bre):
		return answered, ""
	case egress.Final(err):
		return answered, "" // the egress proxy refused by policy: a second CONNECT gets the same (proxy/upstream/egress)
	case errors.As(err, &de):
		return retryable, retryConnect
	case errors.As(err, &hs) && !isVerifyError(hs):
		return retryable, retryTLS
	case errors.As(err, &hs):
		return answered, "" // the server's certificate is not trusted: a second try changes nothing
	case errors.As(err, &nr) && nr.Fresh:
		// A connection dialled for this request died unanswered: a
		// refusal whose alert was lost looks the same.
		if r := u.refusal(ctx, g); r != nil {
			return refused, r.reason
		}
		return retryable, retryConnectionLost
	case errors.As(err, &nr):
		// Not one byte of an answer came (both HTTP/1.1 clients say so with
		// this type). An answer that began and broke off is never sent
		// again, keyed or not: it may have been processed.
		return retryable, retryConnectionLost
	}
	// Anything else (a timeout, an answer that broke off) may have been
	// processed, even if the upstream refuses the certificate by now: a
	// connection it accepted before a revocation still carries requests.
	// Only a refusal met by the request itself is replayed (above).
	return answered, ""
}

// refusalPageError is an edge's refusal of the client certificate.
type refusalPageError struct{ status, title string }

func (e *refusalPageError) Error() string {
	return fmt.Sprintf("the edge answered %s %q", e.status, e.title)
}

func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// sleep waits d, or until ctx is done (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// notRetriedDetail adds why a request was not sent again to an error's
// detail (the JSON the client gets).
func notRetriedDetail(detail, why string) string {
	if why == "" || strings.Contains(detail, why) {
		return detail
	}
	return detail + "; " + why
}

package upstream

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"go.opentelemetry.io/otel/trace"
)

// Result is what Send did with a request, for the caller's log line and
// the headers of the answer. Plain data.
type Result struct {
	Attempts   int    // sends made; more than 1 when the request was sent again
	NotRetried string // why a failure was not sent again; "" when it was not asked
	AddedKey   string // the X-Idempotency-Key Send gave the request (retry.add_idempotency_key); "" when none
	Serial     string // of the certificate the last send presented; "" when none was sent
	Token      string // "injected" or "replayed" when Send added the access token; "" otherwise
}

// Send sends a proxied request to the upstream: it may add an
// idempotency key (retry.add_idempotency_key) and the managed access
// token, keeps a small body for another send (retry.max_body), and sends
// it again only as the retry policy allows (policy.go), replaying it once
// on another certificate when the upstream refused the certificate
// (failover). out belongs to Send: its headers and body are changed. The
// caller has removed hop-by-hop headers (Upgrade stays only for a
// websocket), and observes the connections through out's
// httptrace.ClientTrace. A failure is always one of the failure table's
// (proxy/failure), and the response, when there is one, is the upstream's
// to pass on. Failover and certificate checks need Run running.
func (c *Client) Send(out *http.Request) (*http.Response, Result, *failure.Error) {
	c.budget.request()
	var res Result
	isKeyed := keyed(out.Header, c.retry.IdempotencyHeaders)
	// A key the client sent under a name retry.idempotency_headers leaves
	// out is still the client's: never replaced.
	if c.retry.AddIdempotencyKey && !isKeyed && (out.Method == http.MethodPost || out.Method == http.MethodPatch) &&
		out.Header.Get(HeaderAddedKey) == "" {
		res.AddedKey = newIdempotencyKey()
		out.Header.Set(HeaderAddedKey, res.AddedKey)
		isKeyed = keyed(out.Header, c.retry.IdempotencyHeaders)
	}
	r := request{method: out.Method, keyed: isKeyed, hasBody: out.Body != nil && out.Body != http.NoBody}
	kept, err := keepBody(out, c.retry.MaxBody)
	if err != nil {
		return nil, res, c.about.explain(judge(&clientBodyError{err}, out.Context().Err() != nil), err, "")
	}
	if kept != nil {
		r.kept = true
		defer kept.release() // every send's reader holds the buffer of its own
	}
	s := &sending{c: c, out: out, r: r, kept: kept, res: res, tr: tracing.Tracer(out.Context())}
	var resp *http.Response
	var ferr *failure.Error
	if c.tokens != nil && c.tokens.wants(out) {
		resp, ferr = s.withToken()
	} else {
		resp, ferr = s.attempts()
	}
	return resp, s.res, ferr
}

// clientBodyError is the client's body failing while it was kept.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// sending is one request on its way, across its attempts.
type sending struct {
	c    *Client
	out  *http.Request
	r    request
	kept *keptBody
	res  Result       // what Send returns of this request
	tr   trace.Tracer // makes the request's child spans; nil when its span is not recording (trace.go)
}

// attempts sends the request until it is answered, a failure may not be
// repeated, retry.attempts sends are made, or the retry budget is spent.
// A refusal of the certificate is replayed once on the certificate
// failover chose, and that replay is not a retry.
func (s *sending) attempts() (*http.Response, *failure.Error) {
	c, ctx := s.c, s.out.Context()
	replayed := false
	for n := 1; ; n++ {
		s.res.Attempts++
		g, err := c.current(ctx)
		if err != nil {
			return nil, c.about.noCertificate()
		}
		s.res.Serial = g.serial
		resp, err := s.once(g, n)
		var wait time.Duration
		if err == nil {
			reason := answered(s.r, resp)
			if reason == "" {
				return resp, nil
			}
			var ok bool
			if wait, ok = s.again(resp, reason, n, replayed); !ok {
				return resp, nil
			}
		} else {
			var replay bool
			var ferr *failure.Error
			if wait, replay, ferr = s.afterFailure(g, err, n, replayed); ferr != nil {
				return nil, ferr
			}
			if replay {
				replayed = true
				continue
			}
		}
		if !sleep(ctx, wait) {
			return nil, c.about.explain(judge(ctx.Err(), true), ctx.Err(), g.serial)
		}
	}
}

// once is send n through g: the request (a copy with its own reader of
// the kept body after the first), and an edge's refusal page turned into
// the refusal it is.
func (s *sending) once(g *generation, n int) (*http.Response, error) {
	req := s.out
	if n > 1 && s.kept != nil {
		// A copy: the previous attempt's transport may still read the
		// request it was given, body included.
		req = s.out.WithContext(s.out.Context())
		req.Body = s.kept.reader()
	}
	req, span, at := s.traceAttempt(req, g)
	resp, err := g.RoundTrip(req)
	if err == nil {
		if title, refused := answer.EdgeRefusal(resp); refused {
			discard(resp)
			resp, err = nil, &refusalPageError{status: resp.Status, title: title}
		}
	}
	s.endAttempt(span, at, req, n, resp, err)
	return resp, err
}

// afterFailure decides what follows a failed send n through g: a replay
// on the certificate failover chose (replay), another send after wait,
// or the error the client gets.
func (s *sending) afterFailure(g *generation, err error, n int, replayed bool) (wait time.Duration, replay bool, ferr *failure.Error) {
	c, ctx := s.c, s.out.Context()
	v, err := c.verdictOf(ctx, g, err)
	switch {
	case v.refused:
		if !mayReplay(s.r, replayed) || c.sel.failover(ctx, g, v.alert, c.selectionWait()) == nil {
			return 0, false, s.failed(v, err, g)
		}
		c.m.retry(c.name, retryRefused)
		return 0, true, nil
	case v.retry == "":
		return 0, false, s.failed(v, err, g)
	}
	wait, ok := s.againAfterFailure(v, n, replayed)
	if !ok {
		return 0, false, s.failed(v, err, g)
	}
	return wait, false, nil
}

// failed is the error the client gets, with why it was not sent again.
func (s *sending) failed(v verdict, err error, g *generation) *failure.Error {
	fe := s.c.about.explain(v, err, g.serial)
	fe.Detail = notRetriedDetail(fe.Detail, s.res.NotRetried)
	return fe
}

// again decides whether a retryable answer is sent again after send n,
// and after how long; a response it lets go is discarded.
func (s *sending) again(resp *http.Response, reason string, n int, replayed bool) (time.Duration, bool) {
	sends := sendsOf(n, replayed)
	if why := notRetried(s.c.retry, s.r, false, sends); why != "" {
		s.res.NotRetried = why
		return 0, false
	}
	wait, why := pause(s.c.retry, resp, sends)
	if why != "" {
		s.res.NotRetried = why
		return 0, false
	}
	if !s.budget() {
		return 0, false
	}
	discard(resp)
	s.c.m.retry(s.c.name, reason)
	return wait, true
}

// againAfterFailure is again for a failure the verdict says may be sent
// again.
func (s *sending) againAfterFailure(v verdict, n int, replayed bool) (time.Duration, bool) {
	sends := sendsOf(n, replayed)
	if why := notRetried(s.c.retry, s.r, v.neverSent, sends); why != "" {
		s.res.NotRetried = why
		return 0, false
	}
	wait, _ := pause(s.c.retry, nil, sends)
	if !s.budget() {
		return 0, false
	}
	s.c.m.retry(s.c.name, v.retry)
	return wait, true
}

// budget takes a retry from the budget, or says it is spent.
func (s *sending) budget() bool {
	if s.c.budget.allow() {
		return true
	}
	s.c.m.budgetExhausted(s.c.name)
	s.res.NotRetried = errBudget.Error()
	return false
}

// sendsOf is how many sends count against retry.attempts after attempt n:
// a failover's replay is not a retry.
func sendsOf(n int, replayed bool) int {
	if replayed {
		return n - 1
	}
	return n
}

// withToken is attempts with the access token injected; on a 401 to it
// the token is dropped and the request sent again with a new one when that
// is safe (mayResendWithNewToken).
func (s *sending) withToken() (*http.Response, *failure.Error) {
	c, ctx := s.c, s.out.Context()
	mgr := c.tokens.manager
	began := time.Now()
	tok, waited, err := mgr.Wait(ctx)
	s.traceToken(began, waited, err)
	if err != nil {
		return nil, c.tokens.failure(err)
	}
	s.out.Header.Set("Authorization", "Bearer "+tok)
	s.res.Token = "injected"
	resp, ferr := s.attempts()
	if ferr != nil || resp.StatusCode != http.StatusUnauthorized {
		c.m.tokenUsed(c.name, false)
		return resp, ferr
	}
	mgr.Invalidate(tok)
	began = time.Now()
	tok2, waited, terr := mgr.Wait(ctx)
	s.traceToken(began, waited, terr)
	if !mayResendWithNewToken(s.r) || terr != nil || tok2 == tok {
		c.m.tokenUsed(c.name, false)
		return resp, nil // the 401 goes to the client: sending again is not safe, or no new token
	}
	discard(resp)
	again := *s
	again.out = s.out.Clone(ctx)
	again.out.Header.Set("Authorization", "Bearer "+tok2)
	if s.kept != nil {
		again.out.Body = s.kept.reader()
	}
	s.res.Token = "replayed"
	c.m.tokenUsed(c.name, true)
	return again.attempts()
}

// checkedRefusal is a failure the certificate check explained as a
// refusal of the certificate.
type checkedRefusal struct{ err, refusal error }

func (e *checkedRefusal) Error() string {
	return e.err.Error() + " (the server refused the certificate: " + e.refusal.Error() + ")"
}
func (e *checkedRefusal) Unwrap() []error { return []error{e.err, e.refusal} }

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

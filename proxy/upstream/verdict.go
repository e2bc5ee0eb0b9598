package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/h1"
)

// The one verdict on a failed exchange with the upstream (issue 23: it
// replaces four parallel switches): what the client is told (kind), whether
// and why the request may be sent again (the retry policy, policy.go,
// decides whether it will be), whether the server refused the client
// certificate (failover), and what to do. judge reads the error alone and
// never touches the network; an ambiguous failure (a fresh connection that
// died unanswered, which a refusal whose TLS alert was lost also looks
// like) is settled by the certificate check (check.go).

// Stages at which an exchange can fail.
const (
	stageConnect  = "connect"  // no TCP connection, or no tunnel through the egress proxy
	stageTLS      = "tls"      // the TLS handshake
	stageExchange = "exchange" // after the handshake: writing the request or reading the answer
)

// verdict is what a failure means.
type verdict struct {
	kind  failure.Kind
	stage string
	// retry is the retry reason when the failure may be sent again
	// (retryConnect, retryTLS, retryConnectionLost); "" when a second send
	// could reach the API twice or change nothing.
	retry string
	// neverSent: no byte of the request left the proxy (the connection or
	// its handshake failed), so a second send is the first to arrive.
	neverSent  bool
	refused    bool   // the server refused the client certificate: the request never reached the API
	alert      string // the refusal's words: the TLS alert, or the edge page's title
	advice     string // what to do, for the operator
	untrusted  bool   // the server's certificate did not verify
	timeout    bool   // a deadline of the proxy's expired
	ambiguous  bool   // a fresh connection died unanswered: the certificate check tells a lost refusal
	clientGone bool   // the client went away
}

// judge is the verdict on err, the failure of one exchange; clientGone
// tells that the request's context ended (the client went away).
func judge(err error, clientGone bool) verdict {
	var (
		rp  *refusalPageError
		de  *dialError
		ke  *keyError
		hs  *handshakeError
		nr  *h1.NoResponseError
		bre *h1.BodyReadError
		ne  net.Error
	)
	if a, ok := answer.CertificateAlertOf(err); ok {
		return verdict{kind: failure.KindCertificateRefused, stage: stageExchange, refused: true, alert: a.Name, advice: a.Advice}
	}
	switch {
	case errors.As(err, &rp):
		return verdict{kind: failure.KindCertificateRefused, stage: stageExchange, refused: true, alert: rp.title, advice: answer.AdviceUnknown}
	case clientGone && errors.Is(err, context.Canceled):
		return verdict{kind: failure.KindClientClosed, stage: stageExchange, clientGone: true}
	case errors.Is(err, errNoCertificate):
		return verdict{kind: failure.KindNoCertificate}
	case errors.As(err, &bre):
		return verdict{kind: failure.KindBadRequest, stage: stageExchange} // the inbound side says whose fault
	case egress.Final(err):
		// The egress proxy refused by policy: a second CONNECT gets the same.
		return verdict{kind: failure.KindUpstreamUnreachable, stage: stageConnect}
	case errors.As(err, &de):
		return verdict{kind: failure.KindUpstreamUnreachable, stage: stageConnect, retry: retryConnect, neverSent: true,
			timeout: errors.As(de, &ne) && ne.Timeout()}
	case errors.As(err, &ke):
		// The key failed, not the upstream: no byte was sent, and a second
		// send needs the same key (its token re-opens with back-off).
		return verdict{kind: failure.KindClientKeyUnavailable, stage: stageTLS, neverSent: true}
	case errors.As(err, &hs) && isVerifyError(hs):
		// The server's certificate is not trusted: a second try changes nothing.
		return verdict{kind: failure.KindUpstreamTLS, stage: stageTLS, untrusted: true}
	case errors.As(err, &hs) && errors.As(hs, &ne) && ne.Timeout():
		return verdict{kind: failure.KindUpstreamTimeout, stage: stageTLS, retry: retryTLS, neverSent: true, timeout: true}
	case errors.As(err, &hs):
		return verdict{kind: failure.KindUpstreamTLS, stage: stageTLS, retry: retryTLS, neverSent: true}
	case clientGone:
		return verdict{kind: failure.KindClientClosed, stage: stageExchange, clientGone: true}
	case errors.As(err, &nr):
		// Not one byte of an answer came (both clients say so with this
		// type). An answer that began and broke off is never sent again,
		// keyed or not: it may have been processed.
		return verdict{kind: failure.KindUpstreamError, stage: stageExchange, retry: retryConnectionLost, ambiguous: nr.Fresh}
	case errors.As(err, &ne) && ne.Timeout():
		return verdict{kind: failure.KindUpstreamTimeout, stage: stageExchange, timeout: true}
	}
	// Anything else (an answer that broke off) may have been processed,
	// even if the upstream refuses the certificate by now: a connection it
	// accepted before a revocation still carries requests.
	return verdict{kind: failure.KindUpstreamError, stage: stageExchange}
}

// refusedBy is v after the certificate check found that the server
// refuses the certificate (an ambiguous failure's lost alert).
func (v verdict) refusedBy(c *refusalVerdict) verdict {
	v.kind, v.refused, v.alert, v.advice, v.retry, v.ambiguous = failure.KindCertificateRefused, true, c.reason, c.advice, "", false
	return v
}

// about is what the failures' messages say of an upstream.
type about struct {
	name, host, certSource string
	timeouts               Timeouts
}

// explain turns a failure and its verdict into the error the client
// receives: what happened, and what to do. serial names the certificate
// the request was sent with ("" when none).
func (a about) explain(v verdict, err error, serial string) *failure.Error {
	if serial == "" {
		serial = "(none)"
	}
	var (
		rp *refusalPageError
		de *dialError
		hs *handshakeError
		ee *egress.Error
		ds *net.DNSError
	)
	switch {
	case v.refused && errors.As(err, &rp):
		return failure.New(v.kind, err, "the edge in front of %s refused the client certificate (serial %s): "+
			"it answered %s with the page %q, so the request never reached the API. %s The certificate comes from %s.",
			a.host, serial, rp.status, rp.title, v.advice, a.certSource)
	case v.refused:
		return failure.New(v.kind, err, "the server %s refused the client certificate (serial %s) with "+
			"TLS alert %q. %s The certificate comes from %s.", a.host, serial, v.alert, v.advice, a.certSource)
	case v.kind == failure.KindClientClosed:
		return failure.New(v.kind, err, "the client closed the connection before the response from %s arrived", a.host)
	case v.kind == failure.KindNoCertificate:
		return a.noCertificate()
	case v.kind == failure.KindClientKeyUnavailable:
		return failure.New(v.kind, err, "the private key of the client certificate (serial %s, from %s) could not sign "+
			"the TLS handshake with %s, so the request was not sent: a key in a PKCS#11 token is re-opened by itself "+
			"with back-off, and the upstream reports not ready until a signature succeeds; if this lasts, check the "+
			"HSM and run `payrails-mtls-proxy check --key-uri ...`", serial, a.certSource, a.host)
	case v.kind == failure.KindBadRequest:
		return failure.New(v.kind, err, "the request body could not be read (%v); the upstream request was abandoned", err)
	case v.untrusted && errors.As(err, &hs):
		return failure.New(v.kind, err, "the server certificate of %s is not trusted (%v): the proxy never "+
			"skips verification; if the upstream uses a private CA, give its certificate in ca_file (--ca-file)", a.host, hs.err)
	case v.stage == stageTLS && v.timeout && errors.As(err, &hs):
		return failure.New(v.kind, err, "the TLS handshake with %s (%s) did not finish within %s (timeouts.tls_handshake)",
			a.host, hs.addr, a.timeouts.TLSHandshake)
	case v.stage == stageTLS && errors.As(err, &hs):
		return failure.New(v.kind, err, "the TLS handshake with %s (%s) failed: %v", a.host, hs.addr, hs.err)
	case v.stage == stageConnect && errors.As(err, &ee):
		return failure.New(failure.KindUpstreamUnreachable, err, "cannot reach %s (%s): %v; %s", a.host, dialAddr(err), ee, ee.Advice())
	case v.stage == stageConnect && errors.As(err, &ds):
		return failure.New(v.kind, err, "cannot resolve %s: %v; check DNS from this host, or set address (--address) "+
			"to dial a fixed HOST:PORT", a.host, ds)
	case v.stage == stageConnect && v.timeout:
		return failure.New(v.kind, err, "no answer from %s (%s) within %s (timeouts.dial): check firewalls and egress "+
			"rules", a.host, dialAddr(err), a.timeouts.Dial)
	case v.stage == stageConnect && errors.As(err, &de):
		return failure.New(v.kind, err, "cannot connect to %s (%s): %v", a.host, de.addr, de.err)
	case v.kind == failure.KindUpstreamTimeout:
		return failure.New(v.kind, err, "%s sent no response headers within %s (timeouts.response_header); the "+
			"request may still have been processed: retry only if it is idempotent", a.host, a.timeouts.ResponseHeader)
	}
	return failure.New(failure.KindUpstreamError, err, "the exchange with %s failed: %v; the request may have reached "+
		"the API: send it again only with the same idempotency key (X-Idempotency-Key)", a.host, err)
}

// noCertificate is the failure of an upstream without a valid certificate.
func (a about) noCertificate() *failure.Error {
	return failure.New(failure.KindNoCertificate, errNoCertificate, "no valid client certificate is loaded for upstream %q "+
		"(from %s); the proxy log and `payrails-mtls-proxy check` say why; drop a valid domain.pem and domain.key "+
		"there and it is picked up without a restart", a.name, a.certSource)
}

func dialAddr(err error) string {
	var de *dialError
	if errors.As(err, &de) {
		return de.addr
	}
	return "?"
}

// errNoCertificate: the upstream's certificate source has no valid pair.
var errNoCertificate = errors.New("no valid client certificate loaded")

// refusalPageError is an edge's refusal of the client certificate: an
// HTML page (answer.EdgeRefusal) instead of the API's answer.
type refusalPageError struct{ status, title string }

func (e *refusalPageError) Error() string {
	return fmt.Sprintf("the edge answered %s %q", e.status, e.title)
}

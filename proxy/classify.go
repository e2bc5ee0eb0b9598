package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/h1"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// Classification turns a round trip's failure into the error the client
// receives. It is pure: it reads the error and what the generation already
// knows of its certificate (certCheck), and never dials.

// errNoCertificate: the upstream's certificate source has no valid pair.
var errNoCertificate = errors.New("no valid client certificate loaded")

// classify turns a round-trip failure into the error the client receives.
// The request context tells a client that went away from an upstream that
// failed. g, the generation the request was sent with, may be nil.
func (u *Upstream) classify(ctx context.Context, err error, g *generation) *failure.Error {
	serial := "(none)"
	if g != nil {
		serial = g.serial
	}
	var be *clientBodyError
	var te *tokenError
	var hs *handshakeError
	var de *dialError
	var ne net.Error
	switch {
	case errors.As(err, &be):
		return be.proxyError()
	case errors.As(err, &te):
		return u.classifyToken(te)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return failure.New(failure.KindClientClosed, err, "the client closed the connection before the response from %s arrived", u.host)
	case errors.Is(err, errNoCertificate):
		return u.noCertificate()
	}
	if code, text, ok := answer.ServerAlert(err); ok {
		if a, isCert := answer.LookupCertificateAlert(code); isCert {
			return u.rejected(err, serial, text, a.Advice)
		}
	}
	var rp *refusalPageError
	if errors.As(err, &rp) {
		return failure.New(failure.KindCertificateRefused, err, "the edge in front of %s refused the client certificate (serial %s): "+
			"it answered %s with the page %q, so the request never reached the API. %s The certificate comes from %s.",
			u.host, serial, rp.status, rp.title, answer.AdviceUnknown, u.certSource)
	}
	switch {
	case errors.As(err, &hs):
		return u.classifyHandshake(hs)
	case errors.As(err, &de):
		return u.classifyDial(de)
	case errors.As(err, &ne) && ne.Timeout():
		return failure.New(failure.KindUpstreamTimeout, err, "%s sent no response headers within %s (timeouts.response_header); "+
			"the request may still have been processed: retry only if it is idempotent", u.host, u.timeouts.ResponseHeader)
	}
	var nr *h1.NoResponseError
	if g != nil && errors.As(err, &nr) && nr.Fresh {
		// As judgeFailure: a fresh connection that died unanswered may be a
		// refusal whose alert was lost (the verdict is the one it waited for).
		if r := u.refusal(ctx, g); r != nil {
			return u.rejected(fmt.Errorf("%w (the server refused the certificate: %w)", err, r.err), serial, r.reason, r.advice)
		}
	}
	return failure.New(failure.KindUpstreamError, err, "the exchange with %s failed: %v; the request may have reached the API: "+
		"send it again only with the same idempotency key (X-Idempotency-Key)", u.host, err)
}

func (u *Upstream) rejected(err error, serial, alert, advice string) *failure.Error {
	return failure.New(failure.KindCertificateRefused, err, "the server %s refused the client certificate (serial %s) with "+
		"TLS alert %q. %s The certificate comes from %s.", u.host, serial, alert, advice, u.certSource)
}

func (u *Upstream) classifyHandshake(hs *handshakeError) *failure.Error {
	var ne net.Error
	switch {
	case isVerifyError(hs):
		return failure.New(failure.KindUpstreamTLS, hs, "the server certificate of %s is not trusted (%v): the proxy never "+
			"skips verification; if the upstream uses a private CA, give its certificate in ca_file (--ca-file)",
			u.host, hs.err)
	case errors.As(hs, &ne) && ne.Timeout():
		return failure.New(failure.KindUpstreamTimeout, hs, "the TLS handshake with %s (%s) did not finish within %s "+
			"(timeouts.tls_handshake)", u.host, hs.addr, u.timeouts.TLSHandshake)
	default:
		return failure.New(failure.KindUpstreamTLS, hs, "the TLS handshake with %s (%s) failed: %v", u.host, hs.addr, hs.err)
	}
}

func (u *Upstream) classifyDial(de *dialError) *failure.Error {
	var (
		dns *net.DNSError
		ne  net.Error
		ee  *egress.Error
	)
	switch {
	case errors.As(de, &ee):
		return failure.New(failure.KindUpstreamUnreachable, de, "cannot reach %s (%s): %v; %s", u.host, de.addr, ee, ee.Advice())
	case errors.As(de, &dns):
		return failure.New(failure.KindUpstreamUnreachable, de, "cannot resolve %s: %v; check DNS from this host, or set "+
			"address (--address) to dial a fixed HOST:PORT", u.host, dns)
	case errors.As(de, &ne) && ne.Timeout():
		return failure.New(failure.KindUpstreamUnreachable, de, "no answer from %s (%s) within %s (timeouts.dial): check "+
			"firewalls and egress rules", u.host, de.addr, u.timeouts.Dial)
	default:
		return failure.New(failure.KindUpstreamUnreachable, de, "cannot connect to %s (%s): %v", u.host, de.addr, de.err)
	}
}

func (u *Upstream) noCertificate() *failure.Error {
	return failure.New(failure.KindNoCertificate, errNoCertificate, "no valid client certificate is loaded for upstream %q "+
		"(from %s); the proxy log and `payrails-mtls-proxy check` say why; drop a valid domain.pem and domain.key "+
		"there and it is picked up without a restart", u.name, u.certSource)
}

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
)

// dialError is a failure to open the TCP connection to an upstream.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return "connecting to " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// handshakeError is a failure of the TLS handshake with an upstream.
type handshakeError struct {
	addr string
	err  error
}

func (e *handshakeError) Error() string { return "TLS handshake with " + e.addr + ": " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// errNoCertificate: the upstream's certificate source has no valid pair.
var errNoCertificate = errors.New("no valid client certificate loaded")

// TLS alerts a server sends about the client's certificate (RFC 8446 §6.2,
// RFC 5246 §7.2.2). handshake_failure (40) is left out: it also means no
// common cipher or version.
var certificateAlerts = map[uint8]bool{
	42: true, 43: true, 44: true, 45: true, 46: true, // bad, unsupported, revoked, expired, unknown
	48: true, 49: true, 116: true, // unknown_ca, access_denied, certificate_required
}

// serverAlert reports a TLS alert received from the server. crypto/tls
// returns it as a *net.OpError with Op "remote error" whose Err is the
// unexported alert type, a uint8; reflection reads the code without
// depending on the message text.
func serverAlert(err error) (code uint8, text string, ok bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, "", false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 {
		return 0, "", false
	}
	return uint8(v.Uint()), op.Err.Error(), true
}

// classify turns a round-trip failure into the error the client receives.
// The request context tells a client that went away from an upstream that
// failed.
func (u *Upstream) classify(ctx context.Context, err error, g *generation) *Error {
	host, serial := u.host, "(none)"
	if g != nil {
		serial = g.serial
	}
	var be *clientBodyError
	if errors.As(err, &be) {
		return be.proxyError()
	}
	var te *tokenError
	if errors.As(err, &te) {
		return u.classifyToken(te)
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return newError(KindClientClosed, err, "the client closed the connection before the response from %s arrived", host)
	}
	if errors.Is(err, errNoCertificate) {
		return u.noCertificate()
	}
	if code, text, ok := serverAlert(err); ok && certificateAlerts[code] {
		return u.rejected(err, serial, text)
	}
	var hs *handshakeError
	if errors.As(err, &hs) {
		return u.classifyHandshake(hs)
	}
	var de *dialError
	if errors.As(err, &de) {
		return u.classifyDial(de)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return newError(KindUpstreamTimeout, err, "%s sent no response headers within %s (timeouts.response_header); "+
			"the request may still have been processed: retry only if it is idempotent", host, u.timeouts.ResponseHeader)
	}
	if g != nil {
		if refusal := u.refusal(ctx, g); refusal != nil {
			_, text, _ := serverAlert(refusal)
			return u.rejected(fmt.Errorf("%w (probe: %w)", err, refusal), serial, text)
		}
	}
	return newError(KindUpstreamError, err, "the exchange with %s failed: %v", host, err)
}

func (u *Upstream) rejected(err error, serial, alert string) *Error {
	return newError(KindCertificateRejected, err, "the server %s refused the client certificate (serial %s) with "+
		"TLS alert %q: check that the certificate is the domain.pem downloaded from the Payrails dashboard for "+
		"this environment (live and staging differ), that it is still active there, and that %s holds its key",
		u.host, serial, alert, u.certSource)
}

func (u *Upstream) classifyHandshake(hs *handshakeError) *Error {
	var ne net.Error
	switch {
	case isVerifyError(hs):
		return newError(KindUpstreamTLS, hs, "the server certificate of %s is not trusted (%v): the proxy never "+
			"skips verification; if the upstream uses a private CA, give its certificate in ca_file (--ca-file)",
			u.host, hs.err)
	case errors.As(hs, &ne) && ne.Timeout():
		return newError(KindUpstreamTimeout, hs, "the TLS handshake with %s (%s) did not finish within %s "+
			"(timeouts.tls_handshake)", u.host, hs.addr, u.timeouts.TLSHandshake)
	default:
		return newError(KindUpstreamTLS, hs, "the TLS handshake with %s (%s) failed: %v", u.host, hs.addr, hs.err)
	}
}

func (u *Upstream) classifyDial(de *dialError) *Error {
	var (
		dns *net.DNSError
		ne  net.Error
	)
	switch {
	case errors.As(de, &dns):
		return newError(KindUpstreamUnreachable, de, "cannot resolve %s: %v; check DNS from this host, or set "+
			"address (--address) to dial a fixed HOST:PORT", u.host, dns)
	case errors.As(de, &ne) && ne.Timeout():
		return newError(KindUpstreamUnreachable, de, "no answer from %s (%s) within %s (timeouts.dial): check "+
			"firewalls and egress rules", u.host, de.addr, u.timeouts.Dial)
	default:
		return newError(KindUpstreamUnreachable, de, "cannot connect to %s (%s): %v", u.host, de.addr, de.err)
	}
}

func (u *Upstream) noCertificate() *Error {
	return newError(KindNoCertificate, errNoCertificate, "no valid client certificate is loaded for upstream %q "+
		"(from %s); the proxy log and `payrails-mtls-proxy check` say why; drop a valid domain.pem and domain.key "+
		"there and it is picked up without a restart", u.name, u.certSource)
}

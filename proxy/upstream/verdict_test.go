package upstream

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/h1"
)

// alertError is a TLS alert as crypto/tls returns it: a *net.OpError
// "remote error" whose Err is the alert, a uint8 (tls.alert is unexported,
// so a type of the same kind stands in).
type alertError uint8

func (a alertError) Error() string { return "tls: alert" }

func alert(code uint8) error { return &net.OpError{Op: "remote error", Err: alertError(code)} }

// TestJudge is the one verdict's table: for each failure, what the client
// is told, whether it may be sent again and why, and whether the server
// refused the certificate.
func TestJudge(t *testing.T) {
	timeout := &timeoutError{"deadline"}
	tests := []struct {
		name       string
		err        error
		clientGone bool
		kind       failure.Kind
		retry      string
		neverSent  bool
		refused    bool
		ambiguous  bool
	}{
		{"bad certificate alert", alert(42), false, failure.KindCertificateRefused, "", false, true, false},
		{"certificate required alert", &handshakeError{err: alert(116)}, false, failure.KindCertificateRefused, "", false, true, false},
		{"alert joined to an HTTP/2 failure", &alertedError{alert: alert(48), err: errors.New("http2: client conn could not be established")}, false, failure.KindCertificateRefused, "", false, true, false},
		{"handshake_failure is not about the certificate", &handshakeError{err: alert(40)}, false, failure.KindUpstreamTLS, retryTLS, true, false, false},
		{"edge refusal page", &refusalPageError{status: "400 Bad Request", title: "400 The SSL certificate error"}, false, failure.KindCertificateRefused, "", false, true, false},
		{"connection refused", &dialError{err: syscall.ECONNREFUSED}, false, failure.KindUpstreamUnreachable, retryConnect, true, false, false},
		{"connect timeout", &dialError{err: timeout}, false, failure.KindUpstreamUnreachable, retryConnect, true, false, false},
		{"egress proxy gave no answer (its 4xx, final, are egress.Final's table)", &dialError{err: &egress.Error{}}, false, failure.KindUpstreamUnreachable, retryConnect, true, false, false},
		{"server not trusted", &handshakeError{err: x509.UnknownAuthorityError{}}, false, failure.KindUpstreamTLS, "", false, false, false},
		{"handshake timeout", &handshakeError{err: timeout}, false, failure.KindUpstreamTimeout, retryTLS, true, false, false},
		{"handshake reset", &handshakeError{err: syscall.ECONNRESET}, false, failure.KindUpstreamTLS, retryTLS, true, false, false},
		{"fresh connection died unanswered", &h1.NoResponseError{Err: io.EOF, Fresh: true}, false, failure.KindUpstreamError, retryConnectionLost, false, false, true},
		{"pooled connection died unanswered", &h1.NoResponseError{Err: io.EOF}, false, failure.KindUpstreamError, retryConnectionLost, false, false, false},
		{"response headers timed out", timeout, false, failure.KindUpstreamTimeout, "", false, false, false},
		{"answer broke off", io.ErrUnexpectedEOF, false, failure.KindUpstreamError, "", false, false, false},
		{"client went away", context.Canceled, true, failure.KindClientClosed, "", false, false, false},
		{"client went away during a dial", &dialError{err: syscall.ECONNREFUSED}, true, failure.KindUpstreamUnreachable, retryConnect, true, false, false},
		{"client body failed", &h1.BodyReadError{}, false, failure.KindBadRequest, "", false, false, false},
		{"no certificate", errNoCertificate, false, failure.KindNoCertificate, "", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := judge(tt.err, tt.clientGone)
			if v.kind != tt.kind || v.retry != tt.retry || v.neverSent != tt.neverSent || v.refused != tt.refused || v.ambiguous != tt.ambiguous {
				t.Errorf("judge = {kind %s retry %q neverSent %v refused %v ambiguous %v}, want {%s %q %v %v %v}",
					v.kind, v.retry, v.neverSent, v.refused, v.ambiguous, tt.kind, tt.retry, tt.neverSent, tt.refused, tt.ambiguous)
			}
			if v.refused && v.advice == "" {
				t.Error("a refusal without advice")
			}
			a := about{name: "live", host: "api.acme.test", certSource: "/certs/live", timeouts: Timeouts{}.WithDefaults()}
			if fe := a.explain(v, tt.err, "0A"); fe.Kind != tt.kind && !(tt.kind == failure.KindUpstreamUnreachable && fe.Kind == failure.KindUpstreamUnreachable) {
				t.Errorf("explain's kind %s, want the verdict's %s", fe.Kind, tt.kind)
			}
		})
	}
}

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// Outcome is what a probe of an upstream found.
type Outcome string

// Probe outcomes, from the network up.
const (
	OutcomeTCPFailed          Outcome = "tcp_failed"                // no TCP connection (DNS, refused, timeout)
	OutcomeServerUntrusted    Outcome = "server_untrusted"          // the server's certificate did not verify
	OutcomeTLSFailed          Outcome = "tls_failed"                // another handshake or TLS failure
	OutcomeCertificateRefused Outcome = "certificate_refused"       // the server sent an alert about our certificate
	OutcomeCertNotRequested   Outcome = "certificate_not_requested" // an HTTP answer, but the server never asked for a certificate
	OutcomeAccepted           Outcome = "accepted"                  // the server asked for the certificate and answered over HTTP
	OutcomeRequestFailed      Outcome = "request_failed"            // the connection broke after the handshake, without an alert
)

// ProbeConfig says what to probe and with which certificate.
type ProbeConfig struct {
	URL         *url.URL         // https://HOST[:PORT]; required
	Address     string           // dial this HOST:PORT instead of resolving HOST; "" to resolve
	RootCAs     *x509.CertPool   // nil means the system roots
	Certificate *tls.Certificate // the client certificate; nil presents none
	Timeouts    Timeouts         // zero fields take config.DefaultTimeouts' values
	Path        string           // the request path; "" means "/"
	Via         *egress.Proxy    // an egress proxy to go through; nil dials directly
}

// ProbeResult is a probe's finding, with enough detail to explain it.
type ProbeResult struct {
	Outcome             Outcome
	Addr                string // the address dialled
	ClientCertRequested bool
	TLSVersion          string
	ServerCertificate   *x509.Certificate // nil when the handshake failed
	Alert               string            // the TLS alert from the server, if any
	AlertCode           uint8             // its code; see LookupCertificateAlert
	Status              int               // the HTTP status, when there was an answer
	ContentType         string
	EdgePage            bool  // the answer is an HTML page (an edge or load balancer), not the API's JSON
	Err                 error // the underlying error, if any
}

// Probe opens one connection to an upstream with the proxy's TLS settings,
// sends one HTTP/1.1 GET and reports what happened, telling apart a TCP
// failure, an untrusted server, a refused client certificate, a server
// that never asked for one, and an HTTP answer. `check --remote` uses it;
// the proxy checks its own certificates the same way (certCheck).
func Probe(ctx context.Context, c ProbeConfig) ProbeResult {
	up, err := newUpstream(UpstreamConfig{Name: "probe", URL: c.URL, Address: c.Address, RootCAs: c.RootCAs,
		Via:          c.Via,
		Certificates: FixedCertificate{c.Certificate}}, withDefaults(c.Timeouts), config.Retry{Attempts: 1}, nil, nil)
	if err != nil {
		return ProbeResult{Outcome: OutcomeTCPFailed, Err: err}
	}
	defer up.Close()
	t := up.timeouts
	ctx, cancel := context.WithTimeout(ctx, t.Dial+t.TLSHandshake+t.ResponseHeader)
	defer cancel()
	return up.probe(ctx, c.Certificate, http.MethodGet, c.Path)
}

// probe opens one connection presenting cert (no session cache: a resumed
// session would not present the certificate; HTTP/1.1 only), sends one
// request with Connection: close within ctx, and reads the answer's head
// and the start of its body.
func (u *Upstream) probe(ctx context.Context, cert *tls.Certificate, method, path string) ProbeResult {
	if path == "" {
		path = "/"
	}
	res := ProbeResult{Addr: u.dialAddr}
	var requested atomic.Bool
	cfg := clientTLS(u.host, u.roots, cert, nil, func() { requested.Store(true) }, "http/1.1")
	conn, err := u.dialTLS(ctx, cfg)
	res.ClientCertRequested = requested.Load()
	if err != nil {
		return probeFailure(res, err)
	}
	defer conn.Close()
	st := conn.ConnectionState()
	res.TLSVersion = tls.VersionName(st.Version)
	if len(st.PeerCertificates) > 0 {
		res.ServerCertificate = st.PeerCertificates[0]
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	_, err = fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"+
		"User-Agent: payrails-mtls-proxy (certificate probe)\r\nConnection: close\r\n\r\n", method, path, u.authority)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	}
	if err != nil {
		return probeFailure(res, err)
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	res.ContentType = resp.Header.Get("Content-Type")
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	res.EdgePage = looksLikeHTML(res.ContentType, head)
	res.Outcome = OutcomeAccepted
	if !res.ClientCertRequested {
		res.Outcome = OutcomeCertNotRequested
	}
	return res
}

func probeFailure(res ProbeResult, err error) ProbeResult {
	res.Err = err
	if code, text, ok := answer.ServerAlert(err); ok {
		res.Alert, res.AlertCode = text, code
		if _, isCert := answer.LookupCertificateAlert(code); isCert {
			res.Outcome = OutcomeCertificateRefused
			return res
		}
	}
	var de *dialError
	var hs *handshakeError
	switch {
	case errors.As(err, &de):
		res.Outcome = OutcomeTCPFailed
	case errors.As(err, &hs) && isVerifyError(hs):
		res.Outcome = OutcomeServerUntrusted
	case errors.As(err, &hs):
		res.Outcome = OutcomeTLSFailed
	default:
		res.Outcome = OutcomeRequestFailed
	}
	return res
}

func isVerifyError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		he   x509.HostnameError
	)
	return errors.As(err, &verr) || errors.As(err, &uae) || errors.As(err, &he)
}

func looksLikeHTML(contentType string, head []byte) bool {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == "text/html" {
		return true
	}
	h := strings.ToLower(strings.TrimSpace(string(head)))
	return strings.HasPrefix(h, "<!doctype html") || strings.HasPrefix(h, "<html")
}

// Why the proxy checks its certificates: in TLS 1.3 the client completes
// its handshake before the server has judged the client certificate, so a
// refusal arrives as an alert on the connection's first read. Over
// HTTP/1.1 that alert becomes the request's error and is classified
// directly. Over HTTP/2 the connection's reader receives it and the
// request only learns that the connection "could not be established", or
// a write fails with a broken pipe; the cause is lost. For such unexplained
// failures classification asks the generation's certCheck, which learns
// the answer from a connection of its own, off the request path.

// checkTTL bounds how long a check's verdict is reused.
const checkTTL = 10 * time.Second

// certCheck is what a generation knows of whether the upstream refuses its
// certificate. At most one check runs at a time. The zero value is ready.
type certCheck struct {
	mu      sync.Mutex
	running chan struct{} // closed when the check in progress ends; nil when none
	last    *refusalVerdict
}

// refusalVerdict is one check's finding.
type refusalVerdict struct {
	at     time.Time
	err    error  // the server's refusal, or nil when it did not refuse
	reason string // the alert's name
	advice string
}

// refusal returns the upstream's refusal of g's certificate, or nil when
// it accepts it or cannot be reached. A recent verdict is returned as it
// is; otherwise a check is started in the background (bounded by
// timeouts.tls_handshake, owned by the upstream) and waited for, at most as
// long as it may take and the request's context allows. The request's
// goroutine never dials.
func (u *Upstream) refusal(ctx context.Context, g *generation) *refusalVerdict {
	c := &g.check
	c.mu.Lock()
	if v := c.last; v != nil && time.Since(v.at) < checkTTL {
		c.mu.Unlock()
		return refusedVerdict(v)
	}
	done := c.running
	if done == nil {
		done = make(chan struct{})
		c.running = done
		u.bg.Go(func() { u.runCheck(g, done) })
	}
	c.mu.Unlock()
	wait := time.NewTimer(u.timeouts.TLSHandshake)
	defer wait.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return nil
	case <-wait.C:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return refusedVerdict(c.last)
}

func refusedVerdict(v *refusalVerdict) *refusalVerdict {
	if v == nil || v.err == nil {
		return nil
	}
	return v
}

// runCheck asks the upstream, with one connection presenting g's
// certificate and one HEAD request, whether it refuses the certificate.
func (u *Upstream) runCheck(g *generation, done chan struct{}) {
	ctx, cancel := context.WithTimeout(u.ctx, u.timeouts.TLSHandshake)
	res := u.probe(ctx, g.cert, http.MethodHead, "/")
	cancel()
	v := &refusalVerdict{at: time.Now()}
	if res.Outcome == OutcomeCertificateRefused {
		a, _ := answer.LookupCertificateAlert(res.AlertCode)
		v.err, v.reason, v.advice = res.Err, a.Name, a.Advice
	}
	c := &g.check
	c.mu.Lock()
	c.last, c.running = v, nil
	c.mu.Unlock()
	close(done)
}

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
	"sync/atomic"
	"time"
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
	Timeouts    Timeouts         // zero fields take DefaultTimeouts' values
	Path        string           // the request path; "" means "/"
}

// ProbeResult is a probe's finding, with enough detail to explain it.
type ProbeResult struct {
	Outcome             Outcome
	Addr                string // the address dialled
	ClientCertRequested bool
	TLSVersion          string
	ServerCertificate   *x509.Certificate // nil when the handshake failed
	Alert               string            // the TLS alert from the server, if any
	Status              int               // the HTTP status, when there was an answer
	ContentType         string
	EdgePage            bool  // the answer is an HTML page (an edge or load balancer), not the API's JSON
	Err                 error // the underlying error, if any
}

// Probe opens one connection to an upstream with the proxy's TLS settings,
// sends one HTTP/1.1 request and reports what happened, telling apart a TCP
// failure, an untrusted server, a refused client certificate, a server
// that never asked for one, and an HTTP answer. `check --remote` uses it,
// and the proxy uses it to explain failures that carry no cause (see
// Upstream.refusal).
func Probe(ctx context.Context, c ProbeConfig) ProbeResult {
	up, err := newUpstream(UpstreamConfig{Name: "probe", URL: c.URL, Address: c.Address, RootCAs: c.RootCAs,
		Certificates: fixedSource{c.Certificate}}, withDefaults(c.Timeouts), nil)
	if err != nil {
		return ProbeResult{Outcome: OutcomeTCPFailed, Err: err}
	}
	return up.probe(ctx, c.Certificate, c.Path)
}

type fixedSource struct{ c *tls.Certificate }

func (f fixedSource) Certificate() *tls.Certificate { return f.c }

func (u *Upstream) probe(ctx context.Context, cert *tls.Certificate, path string) ProbeResult {
	if path == "" {
		path = "/"
	}
	res := ProbeResult{Addr: u.dialAddr}
	var requested atomic.Bool
	// HTTP/1.1 only, and no session cache: a resumed session would not
	// present the certificate.
	cfg := clientTLS(u.host, u.roots, cert, nil, func() { requested.Store(true) }, "http/1.1")
	ctx, cancel := context.WithTimeout(ctx, u.timeouts.Dial+u.timeouts.TLSHandshake+u.timeouts.ResponseHeader)
	defer cancel()
	conn, err := u.dialTLS(ctx, cfg)
	res.ClientCertRequested = requested.Load()
	if err != nil {
		return u.probeFailure(res, err)
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
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"+
		"User-Agent: payrails-mtls-proxy (certificate probe)\r\nConnection: close\r\n\r\n", path, u.authority)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
	}
	if err != nil {
		return u.probeFailure(res, err)
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

func (u *Upstream) probeFailure(res ProbeResult, err error) ProbeResult {
	res.Err = err
	if code, text, ok := serverAlert(err); ok {
		res.Alert = text
		if certificateAlerts[code] {
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

// Why the proxy probes: in TLS 1.3 the client completes its handshake
// before the server has judged the client certificate, so a refusal
// arrives as an alert on the connection's first read. Over HTTP/1.1 that
// alert becomes the request's error and is classified directly. Over HTTP/2
// the connection's reader receives it and the request only learns that the
// connection "could not be established", or a write fails with a broken
// pipe; the cause is lost. For such unexplained failures the proxy asks the
// server directly, once per generation and at most every probeTTL.

// probeTTL bounds how long a probe's verdict is reused.
const probeTTL = 10 * time.Second

type verdict struct {
	refusal error // the server's certificate alert, or nil
	at      time.Time
}

// refusal returns the server's certificate alert when the server refuses
// this generation's certificate, or nil when it accepts it or the probe
// itself fails for another reason.
func (u *Upstream) refusal(ctx context.Context, g *generation) error {
	if v := g.verdict.Load(); v != nil && time.Since(v.at) < probeTTL {
		return v.refusal
	}
	g.probeMu.Lock()
	defer g.probeMu.Unlock()
	if v := g.verdict.Load(); v != nil && time.Since(v.at) < probeTTL {
		return v.refusal
	}
	res := u.probe(context.WithoutCancel(ctx), g.cert, "/")
	v := &verdict{at: time.Now()}
	if res.Outcome == OutcomeCertificateRefused {
		v.refusal = res.Err
	}
	g.verdict.Store(v)
	return v.refusal
}

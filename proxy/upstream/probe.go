package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
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
// the upstream client checks its own certificates the same way (check.go).
func Probe(ctx context.Context, c ProbeConfig) ProbeResult {
	if c.URL == nil || c.URL.Scheme != "https" || c.URL.Hostname() == "" {
		return ProbeResult{Outcome: OutcomeTCPFailed, Err: fmt.Errorf("probe: URL must be https://HOST, got %v", c.URL)}
	}
	if err := c.Via.Check(); err != nil {
		return ProbeResult{Outcome: OutcomeTCPFailed, Err: err}
	}
	t := c.Timeouts.WithDefaults()
	d := newDialer("probe", c.URL, c.Address, c.RootCAs, c.Via, t, nil)
	ctx, cancel := context.WithTimeout(ctx, t.Dial+t.TLSHandshake+t.ResponseHeader)
	defer cancel()
	return probe(ctx, d, c.URL.Host, c.Certificate, http.MethodGet, c.Path)
}

// probe opens one connection through d presenting cert (no session
// cache: a resumed session would not present the certificate; HTTP/1.1
// only), sends one request to authority with Connection: close within
// ctx, and reads the answer's head and the start of its body.
func probe(ctx context.Context, d *dialer, authority string, cert *tls.Certificate, method, path string) ProbeResult {
	if path == "" {
		path = "/"
	}
	res := ProbeResult{Addr: d.addr}
	var requested atomic.Bool
	cfg := clientTLS(d.host, d.roots, cert, nil, func() { requested.Store(true) }, "http/1.1")
	conn, err := d.dialTLS(ctx, cfg)
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
		"User-Agent: payrails-mtls-proxy (certificate probe)\r\nConnection: close\r\n\r\n", method, path, authority)
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
	}
	v := judge(err, false)
	switch {
	case v.refused:
		res.Outcome = OutcomeCertificateRefused
	case v.stage == stageConnect:
		res.Outcome = OutcomeTCPFailed
	case v.untrusted:
		res.Outcome = OutcomeServerUntrusted
	case v.stage == stageTLS:
		res.Outcome = OutcomeTLSFailed
	default:
		res.Outcome = OutcomeRequestFailed
	}
	return res
}

func looksLikeHTML(contentType string, head []byte) bool {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == "text/html" {
		return true
	}
	h := strings.ToLower(strings.TrimSpace(string(head)))
	return strings.HasPrefix(h, "<!doctype html") || strings.HasPrefix(h, "<html")
}

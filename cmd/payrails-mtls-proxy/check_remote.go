package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
)

// remote probes the target with the chosen certificate and prints what
// happened. It returns whether the server accepted the certificate, and a
// short verdict.
func (p *checkPrinter) remote(ctx context.Context, t *remoteTarget, chosen *certs.Pair) (bool, string) {
	dial := t.config.URL.Host
	if t.config.Address != "" {
		dial = t.config.Address
	}
	if v := t.config.Via; v != nil {
		dial += " through the egress proxy " + v.URL.String()
	}
	p.f("\nServer %s (dialling %s):\n", t.config.URL, dial)
	if chosen == nil {
		p.f("  NOT TESTED: there is no valid certificate to present; fix the folder first.\n")
		return false, "the server was not tested"
	}
	cfg := t.config
	cfg.Certificate = chosen.Certificate
	res := upstream.Probe(ctx, cfg)
	ok, headline, advice := explainProbe(res, t, chosen.Serial)
	p.f("%s\n", wrap("  "+headline, 100, 4))
	if advice != "" {
		p.f("%s\n", wrap("  "+advice, 100, 4))
	}
	return ok, strings.SplitN(headline, ":", 2)[0]
}

// explainProbe turns a probe's outcome into words: whether the certificate
// was accepted, a headline, and what to do.
func explainProbe(res upstream.ProbeResult, t *remoteTarget, serial string) (ok bool, headline, advice string) {
	var egress *egress.Error
	switch res.Outcome {
	case upstream.OutcomeTCPFailed:
		if errors.As(res.Err, &egress) {
			return false, fmt.Sprintf("UNREACHABLE: %v.", egress), egress.Advice() + "."
		}
		return false, fmt.Sprintf("UNREACHABLE: no TCP connection to %s: %v.", res.Addr, res.Err),
			"Check DNS and the egress firewall from this host; --address HOST:PORT dials a fixed address."
	case upstream.OutcomeServerUntrusted:
		return false, fmt.Sprintf("SERVER NOT TRUSTED: the server's certificate does not verify: %v.", res.Err),
			serverTrustAdvice(t.caFile)
	case upstream.OutcomeTLSFailed:
		return false, fmt.Sprintf("TLS FAILED: the handshake with %s failed: %v.", res.Addr, res.Err),
			"The server named no problem with the client certificate; check that the URL and port speak TLS."
	case upstream.OutcomeCertificateRefused:
		a, _ := answer.LookupCertificateAlert(res.AlertCode)
		return false, fmt.Sprintf("REFUSED: the server rejected the client certificate (serial %s) with TLS alert %q.",
			serial, res.Alert), a.Advice
	case upstream.OutcomeCertNotRequested:
		return false, fmt.Sprintf("NOT TESTED: the server answered (HTTP %d) without asking for a client certificate, "+
				"so this says nothing about the certificate.", res.Status),
			"Payrails' API always asks for one: check that --remote (and --address) point at the Payrails API, " +
				"not at a load balancer, proxy or other host that does not check client certificates."
	case upstream.OutcomeAccepted:
		return explainAnswer(res)
	default:
		return false, fmt.Sprintf("NO ANSWER: the handshake finished but the connection broke before an HTTP "+
				"answer, without a TLS alert: %v.", res.Err), "A server that refuses a certificate sometimes just " +
				"closes the connection; try again, and check the certificate is active in the Payrails dashboard."
	}
}

func serverTrustAdvice(caFile string) string {
	if caFile != "" {
		return fmt.Sprintf("%s does not hold the CA that signed this server's certificate: check --ca-file, --remote "+
			"and --address. The client certificate was not tested.", caFile)
	}
	return "Payrails' servers verify with the system roots; for a server with a private CA (a test server or " +
		"stand-in), give that CA's certificate with --ca-file. The client certificate was not tested."
}

// explainAnswer judges an HTTP answer after a handshake in which the server
// asked for the certificate. An HTML error page comes from an edge that
// refused the request before the API (Payrails' edge does that to a
// request without a valid client certificate); JSON comes from the API.
func explainAnswer(res upstream.ProbeResult) (bool, string, string) {
	what := fmt.Sprintf("HTTP %d", res.Status)
	if res.ContentType != "" {
		what += " (" + res.ContentType + ")"
	}
	if res.EdgePage && res.Status >= 400 {
		return false, fmt.Sprintf("REFUSED AT THE EDGE: the handshake passed, but the answer is an HTML error page, %s, "+
				"from an edge or load balancer, not the API's JSON.", what),
			"The certificate was most likely not accepted for this host: check it was issued for this environment " +
				"(live and staging differ), is active in the Payrails dashboard, and that --remote is the API host."
	}
	headline := fmt.Sprintf("ACCEPTED: the server asked for the client certificate and accepted it (%s); it answered %s.",
		res.TLSVersion, what)
	switch {
	case res.EdgePage:
		return true, headline, "The answer is an HTML page rather than the API's JSON: check that --remote is the API host."
	case res.Status == 401 || res.Status == 403:
		return true, headline, "A 401 or 403 is expected here: check sends no access token."
	}
	return true, headline, ""
}

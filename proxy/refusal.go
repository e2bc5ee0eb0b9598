package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
)

// verifyWith asks the upstream whether it accepts g's certificate: one
// HEAD verify_path request through g, whose connection stays in g's pool,
// within timeouts.tls_handshake. An unexplained failure is explained by
// the generation's certificate check; a 4xx HTML answer to HEAD (which has
// no body to read the page's title from) is asked again with GET.
func (u *Upstream) verifyWith(ctx context.Context, g *generation) (VerifyResult, string) {
	ctx, cancel := context.WithTimeout(ctx, u.timeouts.TLSHandshake)
	defer cancel()
	res, reason, html := u.verifyRequest(ctx, g, http.MethodHead)
	if html {
		res, reason, _ = u.verifyRequest(ctx, g, http.MethodGet)
	}
	return res, reason
}

// verifyRequest sends one verification request; html reports a 4xx HTML
// answer without a body to judge.
func (u *Upstream) verifyRequest(ctx context.Context, g *generation, method string) (res VerifyResult, reason string, html bool) {
	req, err := http.NewRequestWithContext(ctx, method, u.baseURL().String()+u.verifyPath, nil)
	if err != nil {
		return VerifyUnknown, err.Error(), false
	}
	req.Header.Set("User-Agent", "payrails-mtls-proxy (certificate verification)")
	req.Header.Set("Accept", "application/json")
	resp, err := g.RoundTrip(req)
	if err != nil {
		res, reason := u.verifyFailure(ctx, g, err)
		return res, reason, false
	}
	defer resp.Body.Close()
	title, refused := answer.EdgeRefusal(resp)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case refused:
		return VerifyRefused, "the edge answered " + resp.Status + ` "` + title + `"`, false
	case method == http.MethodHead && resp.StatusCode >= 400 && resp.StatusCode < 500 && answer.IsHTML(resp.Header.Get("Content-Type")):
		return VerifyAccepted, "", true
	}
	return VerifyAccepted, "", false
}

// verifyFailure judges a verification request that got no answer.
func (u *Upstream) verifyFailure(ctx context.Context, g *generation, err error) (VerifyResult, string) {
	if code, text, ok := answer.ServerAlert(err); ok {
		if _, isCert := answer.LookupCertificateAlert(code); isCert {
			return VerifyRefused, "TLS alert " + text
		}
	}
	var de *dialError
	var hs *handshakeError
	if errors.As(err, &de) || errors.As(err, &hs) || isTimeout(err) || ctx.Err() != nil {
		return VerifyUnknown, err.Error()
	}
	if r := u.refusal(ctx, g); r != nil {
		return VerifyRefused, "TLS alert " + r.reason
	}
	return VerifyUnknown, err.Error()
}

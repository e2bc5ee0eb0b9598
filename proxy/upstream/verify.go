package upstream

import (
	"context"
	"io"
	"net/http"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
)

// verification asks the upstream whether it accepts a generation's
// certificate: one HEAD verify_path request through the generation, whose
// connection stays in its pool (it becomes the first request's, or a warm
// connection), within timeouts.tls_handshake. It runs in the client's loop,
// never on a request's path.
type verification struct {
	base string // https://HOST[:PORT]
	path string // verify_path
	t    Timeouts
}

// verify implements verifier. An unexplained failure is explained by a
// certificate check; a 4xx HTML answer to HEAD (which has no body to read
// the page's title from) is asked again with GET.
func (v verification) verify(ctx context.Context, g *generation) (VerifyResult, string) {
	ctx, cancel := context.WithTimeout(ctx, v.t.TLSHandshake)
	defer cancel()
	res, reason, html := v.request(ctx, g, http.MethodHead)
	if html {
		res, reason, _ = v.request(ctx, g, http.MethodGet)
	}
	return res, reason
}

// request sends one verification request; html reports a 4xx HTML answer
// without a body to judge.
func (v verification) request(ctx context.Context, g *generation, method string) (res VerifyResult, reason string, html bool) {
	req, err := http.NewRequestWithContext(ctx, method, v.base+v.path, nil)
	if err != nil {
		return VerifyUnknown, err.Error(), false
	}
	req.Header.Set("User-Agent", "payrails-mtls-proxy (certificate verification)")
	req.Header.Set("Accept", "application/json")
	resp, err := g.RoundTrip(req)
	if err != nil {
		res, reason := v.failed(ctx, g, err)
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

// failed judges a verification request that got no answer: a refusal, or
// unknown (the upstream could not be asked). A failure after the
// handshake without an alert, which a lost alert also looks like, is
// settled by a check of its own, here in the loop.
func (v verification) failed(ctx context.Context, g *generation, err error) (VerifyResult, string) {
	vd := judge(err, ctx.Err() != nil)
	switch {
	case vd.refused:
		return VerifyRefused, "TLS alert " + vd.alert
	case vd.stage == stageExchange && !vd.timeout && !vd.clientGone && ctx.Err() == nil:
		if res := probe(ctx, g.d, hostOf(v.base), g.cert, http.MethodHead, "/"); res.Outcome == OutcomeCertificateRefused {
			a, _ := answer.LookupCertificateAlert(res.AlertCode)
			return VerifyRefused, "TLS alert " + a.Name
		}
	}
	return VerifyUnknown, err.Error()
}

// hostOf is the HOST[:PORT] of an https:// base URL.
func hostOf(base string) string { return base[len("https://"):] }

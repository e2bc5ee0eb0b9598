package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/elazarl/goproxy"
	"go.uber.org/zap"
)

// newGoproxy sets goproxy up so that every request goes through our hooks
// and nothing else: its default transport (which skips TLS verification and
// honours HTTP_PROXY) is replaced by one that refuses to dial, header
// handling is ours, and its log goes to zap.
func (p *Proxy) newGoproxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{Proxy: nil, DialContext: refuseDial, DialTLSContext: refuseDial}
	gp.ConnectDial = nil
	gp.KeepHeader = true         // removeHopHeaders does it, including Connection-named headers
	gp.KeepAcceptEncoding = true // compressed bytes pass through untouched
	gp.Logger = goproxyLogger{p.log.Named("goproxy")}
	// Verbose stays off even at debug level: goproxy's verbose lines print
	// whole URLs, query strings included, and queries may carry secrets.
	gp.Verbose = false
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failure.New(failure.KindBadRequest, nil, "internal error: request reached goproxy in origin-form").Write(w, "")
	})
	gp.OnRequest().DoFunc(p.prepare)
	gp.OnResponse().DoFunc(p.finish)
	return gp
}

// prepare points goproxy at the request's upstream; handle has already
// built the outbound request (outboundFor) and put the exchange in its
// context. The round trip never fails towards goproxy: a failure becomes
// the proxy's JSON error response here.
func (p *Proxy) prepare(in *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	ex := exchangeFrom(in.Context())
	if ex == nil { // handle puts it in every request it gives goproxy
		perr := failure.New(failure.KindBadRequest, nil, "internal error: a request reached goproxy without its exchange")
		return in, perr.Response(in, "")
	}
	ctx.RoundTripper = goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
		resp, sent, ferr := ex.up.Send(req)
		ex.sent = sent
		if ferr != nil {
			if be := ex.bodyErr.Load(); be != nil { // the client's fault, whatever the transport made of it
				ferr = be.proxyError()
				ferr.Detail = notRetriedDetail(ferr.Detail, sent.NotRetried)
			}
			ex.fail(ferr)
			resp = ferr.Response(req, ex.id)
		} else {
			// The proxy's own headers are the proxy's to set: an upstream's
			// (another proxy in front of the API) would mislead the
			// scripts that match on them.
			failure.StripOwnHeaders(resp.Header)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				body := resp.Body
				if resp.StatusCode >= 400 && answer.IsJSON(resp.Header.Get("Content-Type")) {
					ex.apiError = &sniffer{}
					body = teeCloser{Reader: io.TeeReader(body, ex.apiError), Closer: body}
				}
				resp.Body = &abortingBody{ReadCloser: body, ex: ex, size: resp.ContentLength}
			}
		}
		markAnswer(resp.Header, ex)
		return resp, nil
	})
	return in, nil
}

// markAnswer tells the client, on the answer, what the proxy did to its
// request: how many times it was sent, and the idempotency key it was given.
func markAnswer(h http.Header, ex *exchange) {
	if ex.sent.Attempts > 1 {
		h.Set(upstream.HeaderAttempts, strconv.Itoa(ex.sent.Attempts))
	}
	if ex.sent.AddedKey != "" {
		h.Set(upstream.HeaderAddedKey, ex.sent.AddedKey)
	}
}

// notRetriedDetail adds why a request was not sent again to an error's
// detail (the JSON the client gets).
func notRetriedDetail(detail, why string) string {
	if why == "" || strings.Contains(detail, why) {
		return detail
	}
	return detail + "; " + why
}

type teeCloser struct {
	io.Reader
	io.Closer
}

// outbound returns the request to send upstream: a copy of in (which is
// never modified) with an https URL on the upstream, Host rewritten, and a
// header of its own without the hop-by-hop fields. The body is shared and
// streamed. So is the trailer map, on purpose: the server fills in.Trailer
// when the client's body reaches its end, which is when the transport
// reads out.Trailer to send them on (a clone taken before the body is
// read would hold no values).
func outbound(in *http.Request, up *upstream.Client, ctx context.Context) *http.Request {
	out := in.WithContext(ctx) // a shallow copy: every field changed below is replaced, never modified
	out.Header = cloneHeader(in.Header, 1)
	out.URL = &url.URL{
		Scheme:   "https",
		Host:     up.Authority(),
		Path:     in.URL.Path,
		RawPath:  in.URL.RawPath,
		RawQuery: in.URL.RawQuery,
	}
	out.Host = up.Authority()
	out.RequestURI = ""
	// The client's Connection: close applies to its own connection; the
	// upstream connection stays pooled. Except after Expect: 100-continue
	// (the only expectation Go's server lets through): when the upstream
	// answers early, without 100, the Transport would send the body anyway
	// to keep the connection reusable, and so make the proxy ask the client
	// for a body the upstream has refused. With Close it sends no body and
	// drops the connection.
	out.Close = in.Header["Expect"] != nil
	removeHopHeaders(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		// Stop the transport from adding Go's default User-Agent.
		out.Header["User-Agent"] = noUserAgent
	}
	if in.ContentLength == 0 {
		out.Body = nil // no body: the fast path takes it, and nothing sends it again but the proxy (nonReplayable)
	}
	return out
}

// finish removes hop-by-hop headers from upstream responses. prepare has
// already turned failures into responses; a nil response here would be a
// goproxy path we do not expect, and still gets a JSON error.
func (p *Proxy) finish(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	if resp == nil {
		err := ctx.Error
		if err == nil {
			err = errors.New("no response")
		}
		return failure.New(failure.KindUpstreamError, err, "internal error: no response (%v)", err).Response(ctx.Req, "")
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		removeHopHeaders(resp.Header)
	}
	return resp
}

// abortingBody ends the client's response abnormally when the upstream's
// body breaks off. Without it, a chunked response cut short by the upstream
// would be terminated cleanly towards the client, which would then take a
// truncated body for a complete one. http.ErrAbortHandler makes net/http
// close the client connection without the final chunk (the same mechanism
// net/http/httputil.ReverseProxy uses).
type abortingBody struct {
	io.ReadCloser
	ex   *exchange
	size int64 // the declared Content-Length; -1 when unknown
}

func (b *abortingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.ex.upstreamErr = err
		panic(http.ErrAbortHandler)
	}
	return n, err
}

// WriteTo copies the body to the client in large writes (see bodyCopier).
func (b *abortingBody) WriteTo(w io.Writer) (int64, error) {
	return bodyCopier{Reader: b, coalesce: b.size >= coalesceMinSize}.WriteTo(w)
}

// goproxyLogger sends goproxy's log lines to zap as a fixed message and
// the line's kind (goproxyKinds), never the line or its arguments: those
// are request data, such as URLs with query strings and raw header lines.
// Warnings at warn level; anything else (Verbose is off) at debug.
type goproxyLogger struct{ log *zap.Logger }

func (l goproxyLogger) Printf(format string, _ ...any) {
	msg, warn := strings.CutPrefix(strings.TrimPrefix(format, "[%03d] "), "WARN: ")
	msg = strings.TrimSuffix(strings.TrimPrefix(msg, "INFO: "), "\n")
	if warn {
		l.log.Warn("goproxy warning", zap.String(fieldGoproxyKind, goproxyKind(msg)))
		return
	}
	l.log.Debug("goproxy message", zap.String(fieldGoproxyKind, goproxyKind(msg)))
}

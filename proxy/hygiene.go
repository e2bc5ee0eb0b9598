package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// Request framing (RFC 9112 §6). Go's server already refuses most
// smuggling shapes (conflicting Content-Length values, unknown or repeated
// transfer codings, invalid header names) and normalises the rest: with
// both Content-Length and Transfer-Encoding it drops Content-Length and
// reads chunks (§6.3), obs-fold is joined into one line (§5.2), chunk
// extensions are dropped. The outbound request is written by the transport
// from ContentLength alone, so the upstream always receives one framing.
// What is left to refuse here is below.

// checkFraming refuses what Go's server accepts but would forward as a
// different request. Go ignores (and deletes) Transfer-Encoding on HTTP/1.0
// requests (golang/go#12785), so an HTTP/1.0 POST with a chunked body would
// go out with an empty body and its chunks would be read as the next
// request. RFC 9112 §6.1 calls such framing faulty, and HTTP/1.0 requires
// Content-Length on a request with a body (RFC 1945 §7.2.2): refuse any
// HTTP/1.0 request of a body-carrying method without one.
func checkFraming(r *http.Request) *failure.Error {
	if r.ProtoAtLeast(1, 1) {
		return nil
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		if len(r.Header["Content-Length"]) == 0 {
			return failure.New(failure.KindBadRequest, nil, "an HTTP/1.0 %s needs a Content-Length (Transfer-Encoding is not "+
				"HTTP/1.0, RFC 9112 §6.1); send HTTP/1.1, or a Content-Length", r.Method)
		}
	}
	return nil
}

// checkMethod refuses TRACE, in any case: the server echoes the request it
// received, and the proxy may have added the managed access token to it;
// RFC 9110 §9.3.8 forbids sending credentials in TRACE. The Payrails API
// has no use for it; nginx answers it 405 as well.
func checkMethod(r *http.Request) *failure.Error {
	if strings.EqualFold(r.Method, http.MethodTrace) {
		return failure.New(failure.KindMethodNotAllowed, nil, "%s is not forwarded: the server would echo the request, the "+
			"access token the proxy adds included (RFC 9110 §9.3.8)", r.Method)
	}
	return nil
}

// framingEndsConnection reports a request after whose answer the client's
// connection must end, because the bytes that follow it cannot be trusted
// to be the next request:
//   - HTTP/1.0: Go drops an HTTP/1.0 Transfer-Encoding (golang/go#12785),
//     so its chunks would be read as the next request (RFC 9112 §6.1).
//   - Transfer-Encoding: a request with both Content-Length and
//     Transfer-Encoding obliges the server to close the connection after
//     its answer (RFC 9112 §6.1): a hop in front that framed it by
//     Content-Length sent what follows the chunks as its body, a request
//     smuggled past it (issue 22). Go's server reads the chunks and deletes
//     Content-Length before the handler sees the request, so the proxy
//     cannot tell the two apart and closes after every chunked request.
//     That costs a chunked upload's client one new connection, on loopback
//     a few tens of microseconds; nginx answers such a request 400.
func framingEndsConnection(r *http.Request) bool {
	return !r.ProtoAtLeast(1, 1) || len(r.TransferEncoding) > 0
}

// clientBodyError is a failure to read the client's request body: its
// framing broke, or it went quiet for longer than the idle timeout. It is
// the client's fault, not the upstream's.
type clientBodyError struct {
	err     error
	timeout time.Duration
}

func (e *clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

func (e *clientBodyError) proxyError() *failure.Error {
	var ne net.Error
	if errors.As(e.err, &ne) && ne.Timeout() {
		return failure.New(failure.KindClientTimeout, e, "the request body stalled: no bytes for %s; the upstream request "+
			"was abandoned, send the body without pauses", e.timeout)
	}
	return failure.New(failure.KindBadRequest, e, "the request body could not be read (%v); the upstream request was "+
		"abandoned before it was complete", e.err)
}

// clientBody reads the client's request body with an idle timeout: each
// Read must make progress within idle, so a slow or stalled client gives up
// its request without holding an upstream connection for long.
//
// The timeout is a timer rather than a standing read deadline: when it
// fires it records the reason first and only then unblocks the read with a
// deadline in the past. net/http cancels the request's context as soon as
// that read fails, and the exchange must already know it was a timeout, not
// a client that went away. No deadline is left behind either, which matters
// because net/http keeps reading the connection after the body ends.
type clientBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	ex   *exchange // receives the first read failure
}

func (b *clientBody) Read(p []byte) (int, error) {
	t := time.AfterFunc(b.idle, func() {
		b.ex.bodyErr.CompareAndSwap(nil, &clientBodyError{err: errBodyIdle, timeout: b.idle})
		_ = b.rc.SetReadDeadline(time.Now())
	})
	n, err := b.ReadCloser.Read(p)
	t.Stop()
	if err != nil && err != io.EOF {
		b.ex.bodyErr.CompareAndSwap(nil, &clientBodyError{err: err, timeout: b.idle})
		return n, b.ex.bodyErr.Load()
	}
	return n, err
}

// Close does not close the client's body: net/http does, when the handler
// returns. A transport closes the request body when it gives up (a dial
// failure, an early answer to Expect: 100-continue), and the server's body
// Close reads what is left of it, so a client waiting for 100 Continue
// would wait for ever and the answer never be written (Go issue 16036;
// httputil.ReverseProxy shields the body the same way).
func (b *clientBody) Close() error { return nil }

// errBodyIdle is the idle timeout of a request body.
var errBodyIdle = &bodyIdleError{}

// bodyIdleError marks the body idle timeout as a net.Error timeout.
type bodyIdleError struct{}

func (*bodyIdleError) Error() string   { return "no bytes of the request body within the idle timeout" }
func (*bodyIdleError) Timeout() bool   { return true }
func (*bodyIdleError) Temporary() bool { return true }

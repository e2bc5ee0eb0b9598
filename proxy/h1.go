package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// The HTTP/1.1 fast path.
//
// net/http's Transport drives every HTTP/1.1 connection with two goroutines
// of its own, a writer and a reader, and hands each request and response
// between them and the caller over channels. For a sidecar forwarding small
// API calls those hand-offs (each one a goroutine wake-up, often on another
// core) cost more than the proxy's own work: profiles of bench/compare's c1
// and c64 scenarios put most of the proxy's CPU in the scheduler and
// futex calls around them. A request without a body, or with a small one of
// known length (a payment's JSON), needs no concurrent writer: the fast
// path writes it and then reads the answer in the caller's goroutine, on a
// connection of the generation's h1Pool.
//
// Everything else goes through the Transport: bodies of unknown or large
// size (the Transport writes them while it watches for an early answer),
// Expect: 100-continue, request trailers, upgrades (WebSocket), and every
// request to an upstream that speaks HTTP/2, which multiplexes requests on
// one connection anyway.

// maxFastBody is the largest request body the fast path sends: small enough
// to sit in the socket's send buffer, so that writing it never waits on a
// server that answers before reading it.
const maxFastBody = 64 << 10

// errUseTransport: the fast path dialled and the server chose HTTP/2; the
// connection waits in the generation's spare slot for the Transport.
var errUseTransport = errors.New("the upstream speaks HTTP/2")

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads
// and writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// fastPath reports whether out can take the HTTP/1.1 fast path.
func (g *generation) fastPath(out *http.Request) bool {
	if g.h2.Load() || out.Header["Upgrade"] != nil || out.Header["Expect"] != nil || out.Trailer != nil {
		return false
	}
	return out.Body == nil || out.Body == http.NoBody || (out.ContentLength > 0 && out.ContentLength <= maxFastBody)
}

// roundTripH1 sends a request that fastPath accepted over a pooled HTTP/1.1
// connection. The returned response's body gives the connection back to
// the pool (or closes it) and releases the generation when it has been read
// to the end or closed; on error the caller releases the generation.
func (u *Upstream) roundTripH1(g *generation, out *http.Request) (*http.Response, error) {
	ctx := out.Context()
	c := g.h1.get()
	if c == nil {
		tc, err := u.dialTLS(ctx, g.tls)
		if err != nil {
			return nil, err
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			g.offerSpare(tc)
			return nil, errUseTransport
		}
		c = newH1Conn(tc)
	}
	resp, err := u.exchangeH1(ctx, c, out, g)
	if err != nil {
		c.close()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	return resp, nil
}

// exchangeH1 writes out on c and reads the response headers within the
// response-header timeout, counted from the request fully sent, as the
// Transport counts it. While the exchange lasts (the response body
// included), the request context ending (the client went away) breaks the
// connection's reads and writes off.
func (u *Upstream) exchangeH1(ctx context.Context, c *h1Conn, out *http.Request, g *generation) (*http.Response, error) {
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })
	}
	err := writeRequest(c.bw, out) // reads the client's body, if any, with its idle timeout (clientBody)
	if err == nil {
		err = c.bw.Flush()
	}
	var bre *bodyReadError
	if errors.As(err, &bre) {
		// The client's body failed (it stalled or broke off): the upstream
		// holds half a request, so the connection is closed, and the
		// client's failure is the answer, not whatever the upstream makes
		// of the half request.
		stop()
		return nil, bre.err
	}
	c.conn.SetReadDeadline(time.Now().Add(u.timeouts.ResponseHeader))
	if err == nil && ctx.Err() != nil {
		// Cancelled after the write: the AfterFunc's deadline in the past
		// may have been overwritten just now, and nobody waits for the answer.
		err = ctx.Err()
	}
	keep := true
	if err != nil && out.Body != nil {
		// The server may have answered and closed before reading the whole
		// body (a 413, say): that answer, not the broken write, is what the
		// client should get. The connection is not reused either way.
		if _, perr := c.br.Peek(1); perr == nil {
			err, keep = nil, false
		}
	}
	var resp *http.Response
	for err == nil {
		c.headerBudget = maxResponseHeaderBytes
		resp, err = http.ReadResponse(c.br, out)
		c.headerBudget = -1
		if err != nil || resp.StatusCode >= 200 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			err = errors.New("the server switched protocols on a request that did not ask to")
			break
		}
		// 1xx informational answers (100 Continue, 103 Early Hints) have no
		// body and precede the real one (RFC 9110 §15.2).
	}
	if err == nil {
		c.conn.SetReadDeadline(time.Time{})
		if ctx.Err() != nil { // cancelled as the deadline was cleared: the AfterFunc's may have been undone
			err = ctx.Err()
		}
	}
	if err != nil {
		stop()
		return nil, err
	}
	b := &h1Body{body: resp.Body, c: c, g: g, stop: stop,
		keep: keep && !resp.Close && resp.ProtoAtLeast(1, 1)}
	if resp.Body == http.NoBody {
		b.done(true)
	} else {
		resp.Body = b
	}
	return resp, nil
}

// h1Body is a fast-path response body. Read to its end, it gives the
// connection back to the pool; closed early or broken, it closes the
// connection. Either way it releases the generation, once.
type h1Body struct {
	body  io.ReadCloser // http.ReadResponse's body, reading c
	c     *h1Conn
	g     *generation
	stop  func() bool // stops the context's AfterFunc; false if it already ran
	keep  bool        // the response lets the connection carry another request
	ended atomic.Bool
	eof   atomic.Bool // read to its end: later reads return io.EOF
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.ended.Load() {
		// The connection may already carry another request: never read it.
		if b.eof.Load() {
			return 0, io.EOF
		}
		return 0, errBodyClosed
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.done(err == io.EOF)
	}
	return n, err
}

// Close closes the connection unless the body was read to its end: the
// rest of a response nobody wants is not worth reading.
func (b *h1Body) Close() error {
	b.done(false)
	return nil
}

var errBodyClosed = errors.New("read on a closed response body")

// writeRequest writes out, telling a failure to read its body apart from a
// failure to write the connection: Request.Write wraps body read errors in
// a type of its own without Unwrap, so the body's own error would be lost.
func writeRequest(w io.Writer, out *http.Request) error {
	if out.Body == nil || out.Body == http.NoBody {
		return out.Write(w)
	}
	rec := &recordingBody{ReadCloser: out.Body}
	cp := *out
	cp.Body = rec
	err := cp.Write(w)
	if rec.err != nil && err != nil {
		return &bodyReadError{err: rec.err}
	}
	return err
}

// recordingBody keeps the first read error of a request body.
type recordingBody struct {
	io.ReadCloser
	err error
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// bodyReadError: the request body, not the connection, failed.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

func (b *h1Body) done(complete bool) {
	if complete {
		b.eof.Store(true)
	}
	if !b.ended.CompareAndSwap(false, true) {
		return
	}
	if b.stop() && complete && b.keep && b.c.br.Buffered() == 0 {
		b.g.h1.put(b.c)
	} else {
		b.c.close()
	}
	b.g.release()
}

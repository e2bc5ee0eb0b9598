package proxy

import (
	"context"
	"crypto/tls"
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
// futex calls around them. A request without a body needs no concurrent
// writer, so the fast path writes it and reads the answer in the caller's
// goroutine, on a connection of the generation's h1Pool.
//
// Everything else goes through the Transport: requests with a body (the
// Transport writes the body while it watches for an early answer and
// handles Expect: 100-continue), upgrades (WebSocket), and every request to
// an upstream that speaks HTTP/2, which multiplexes requests on one
// connection anyway.

// errUseTransport: the fast path dialled and the server chose HTTP/2; the
// connection waits in the generation's spare slot for the Transport.
var errUseTransport = errors.New("the upstream speaks HTTP/2")

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads
// and writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// fastPath reports whether out can take the HTTP/1.1 fast path.
func (g *generation) fastPath(out *http.Request) bool {
	return !g.h2.Load() && (out.Body == nil || out.Body == http.NoBody) && out.Header["Upgrade"] == nil
}

// roundTripH1 sends a request without a body over a pooled HTTP/1.1
// connection. The returned response's body gives the connection back to
// the pool (or closes it) and releases the generation when it has been read
// to the end or closed; on error the caller releases the generation.
func (u *Upstream) roundTripH1(g *generation, out *http.Request) (*http.Response, error) {
	ctx := out.Context()
	c := g.h1.get()
	if c == nil {
		conn, err := u.dialTLS(ctx, g.tls)
		if err != nil {
			return nil, err
		}
		tc := conn.(*tls.Conn)
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			g.offerSpare(tc)
			return nil, errUseTransport
		}
		c = newH1Conn(tc)
	}
	resp, err := u.exchangeH1(ctx, c, out, g)
	if err != nil {
		c.close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	return resp, nil
}

// exchangeH1 writes out on c and reads the response headers, within the
// response-header timeout. While the exchange lasts (the response body
// included), the request context ending (the client went away) breaks the
// connection's reads and writes off.
func (u *Upstream) exchangeH1(ctx context.Context, c *h1Conn, out *http.Request, g *generation) (*http.Response, error) {
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })
	}
	c.conn.SetDeadline(time.Now().Add(u.timeouts.ResponseHeader))
	err := out.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
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
		c.conn.SetDeadline(time.Time{})
		if ctx.Err() != nil { // cancelled as the deadline was cleared: the AfterFunc's may have been undone
			err = ctx.Err()
		}
	}
	if err != nil {
		stop()
		return nil, err
	}
	b := &h1Body{body: resp.Body, c: c, g: g, stop: stop,
		keep: !resp.Close && resp.ProtoAtLeast(1, 1)}
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
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.ended.Load() {
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

func (b *h1Body) done(complete bool) {
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

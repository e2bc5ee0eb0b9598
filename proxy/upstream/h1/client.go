package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
)

// MaxBody is the largest request body the fast path sends: small enough
// to sit in the socket's send buffer, so that writing it never waits on a
// server that answers before reading it.
const MaxBody = 64 << 10

// MaxResponseHeaderBytes bounds an upstream's response headers, on the fast
// path and in the Transport alike: a misbehaving server must not make the
// sidecar buffer without end.
const MaxResponseHeaderBytes = 1 << 20

var errResponseHeaderTooLarge = errors.New("the response headers exceed 1 MiB")

// ErrUnaskedUpgrade: the upstream answered 101 Switching Protocols to a
// request that did not ask to switch. The Payrails API has no upgrades;
// only a websocket upgrade a client asked for is passed on.
var ErrUnaskedUpgrade = errors.New("the upstream switched protocols (101) on a request that did not ask to")

// ErrNegotiatedH2: the fast path dialled and the server chose HTTP/2; the
// generation has handed the connection over to its Transport.
var ErrNegotiatedH2 = errors.New("the upstream speaks HTTP/2")

// Client is one generation's HTTP/1.1 fast path: a pool of connections,
// each carrying one request at a time, written and read in the caller's
// goroutine. The zero value is not usable; generation builds it.
type Client struct {
	// Dial opens a connection; it returns ErrNegotiatedH2 when the server
	// chose HTTP/2 (the connection then belongs to someone else).
	Dial func(ctx context.Context) (*Conn, error)
	Pool *Pool
	// HeaderTimeout bounds the wait for response headers, counted from the
	// request fully written, as the Transport's ResponseHeaderTimeout.
	HeaderTimeout time.Duration
	// Done is called once per response, when its body is done (read to its
	// end, closed or broken); never when RoundTrip returns an error.
	Done func()
	// Open counts the client's open connections, idle or busy; NewConn
	// takes it.
	Open atomic.Int32
}

// NoResponseError: the exchange failed before any byte of an answer came:
// the server closed or reset the connection, or never took the request.
// Only such failures may be retried (retry.go). fresh marks a connection
// dialled for this request: one that dies unanswered may be a refusal of
// the certificate whose alert was lost (judgeFailure asks).
type NoResponseError struct {
	Err   error
	Fresh bool
}

func (e *NoResponseError) Error() string { return e.Err.Error() }
func (e *NoResponseError) Unwrap() error { return e.Err }

// Takes reports whether the fast path takes req: no body, or a small one
// of declared length, and nothing that needs a concurrent writer or the
// connection itself (Expect: 100-continue, request trailers, an upgrade).
func Takes(req *http.Request) bool {
	bodiless := req.Body == nil || req.Body == http.NoBody
	switch {
	case req.Header["Upgrade"] != nil:
		return false
	case bodiless:
		// Expect: 100-continue without a body has nothing to wait for, and
		// the Transport must not get a bodiless request it may replay
		// (nonReplayable).
		return true
	case req.Header["Expect"] != nil || req.Trailer != nil:
		return false
	}
	return req.ContentLength > 0 && req.ContentLength <= MaxBody
}

// RoundTrip sends req on a pooled connection, or a new one. The response
// body gives the connection back to the pool (or closes it) when it has
// been read to its end or closed. Like net/http's Transport, it reports
// the connection it took (GotConn) and the first byte of the answer
// (GotFirstResponseByte) to the request's httptrace.ClientTrace, the seam
// through which callers observe it.
func (h *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	trace := httptrace.ContextClientTrace(ctx)
	c := h.Pool.Get()
	fresh := c == nil
	if fresh {
		var err error
		if c, err = h.Dial(ctx); err != nil {
			return nil, err
		}
	}
	if trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{Conn: c.conn, Reused: !fresh, WasIdle: !fresh})
	}
	resp, err := h.exchange(ctx, c, req, fresh)
	if err != nil {
		c.Close()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	return resp, nil
}

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads
// and writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// exchange writes req on c and reads the response headers. While the
// exchange lasts (the response body included), the request context ending
// (the client went away) breaks the connection's reads and writes off.
func (h *Client) exchange(ctx context.Context, c *Conn, req *http.Request, fresh bool) (*http.Response, error) {
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })
	}
	keep, err := h.write(ctx, c, req, fresh)
	var resp *http.Response
	if err == nil {
		resp, err = h.readResponse(ctx, c, req, fresh)
	}
	if err != nil {
		stop()
		return nil, err
	}
	b := &body{body: resp.Body, c: c, h: h, stop: stop, keep: keep && !resp.Close && resp.ProtoAtLeast(1, 1)}
	if resp.Body == http.NoBody {
		b.done(true)
	} else {
		resp.Body = b
	}
	return resp, nil
}

// write sends req and arms the response-header timeout. keep is false when
// the connection cannot carry another request whatever the answer: the
// server answered (and closed) before the body was written whole, and that
// answer, not the broken write, is what the client should get (a 413, say).
func (h *Client) write(ctx context.Context, c *Conn, req *http.Request, fresh bool) (keep bool, err error) {
	c.used = true
	err = writeRequest(c.bw, req) // reads the client's body, if any, with its idle timeout (clientBody)
	if err == nil {
		err = c.bw.Flush()
	}
	var bre *BodyReadError
	if errors.As(err, &bre) {
		// The client's body failed (it stalled or broke off): the upstream
		// holds half a request, so the connection is closed, and the
		// client's failure is the answer, not whatever the upstream makes
		// of the half request.
		return false, bre.err
	}
	c.conn.SetReadDeadline(time.Now().Add(h.HeaderTimeout))
	if err == nil && ctx.Err() != nil {
		// Cancelled after the write: the AfterFunc's deadline in the past
		// may have been overwritten just now, and nobody waits for the answer.
		return false, ctx.Err()
	}
	if err == nil || ctx.Err() != nil {
		return err == nil, err
	}
	// The write broke: the server may have answered first, or refused the
	// certificate with an alert that is waiting to be read (TLS 1.3 sends
	// it after the handshake; the write then meets a closed connection).
	_, perr := c.br.Peek(1)
	if perr == nil {
		return false, nil
	}
	if _, _, alert := answer.ServerAlert(perr); alert {
		return false, perr
	}
	return false, &NoResponseError{Err: err, Fresh: fresh}
}

// readResponse reads the final response's headers within the header budget,
// skipping 1xx informational answers (100 Continue, 103 Early Hints: no
// body, they precede the real one, RFC 9110 §15.2).
func (h *Client) readResponse(ctx context.Context, c *Conn, req *http.Request, fresh bool) (*http.Response, error) {
	trace := httptrace.ContextClientTrace(ctx)
	waitFirst := trace != nil && trace.GotFirstResponseByte != nil
	for {
		c.headerBudget = MaxResponseHeaderBytes
		if waitFirst {
			waitFirst = false
			if _, err := c.br.Peek(1); err == nil { // a failure is ReadResponse's to report
				trace.GotFirstResponseByte()
			}
		}
		resp, err := http.ReadResponse(c.br, req)
		untouched := c.headerBudget == MaxResponseHeaderBytes && c.br.Buffered() == 0
		c.headerBudget = -1
		switch {
		case err != nil && untouched && ctx.Err() == nil && !isTimeout(err):
			return nil, &NoResponseError{Err: err, Fresh: fresh} // not one byte of an answer
		case err != nil:
			return nil, err
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, ErrUnaskedUpgrade // the fast path never takes an upgrade
		case resp.StatusCode < 200:
			continue
		}
		c.conn.SetReadDeadline(time.Time{})
		if ctx.Err() != nil { // cancelled as the deadline was cleared: the AfterFunc's may have been undone
			return nil, ctx.Err()
		}
		return resp, nil
	}
}

// writeRequest writes req, telling a failure to read its body apart from a
// failure to write the connection: Request.Write wraps body read errors in
// a type of its own without Unwrap, so the body's own error would be lost.
func writeRequest(w io.Writer, req *http.Request) error {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Write(w)
	}
	rec := &recordingBody{ReadCloser: req.Body}
	cp := *req
	cp.Body = rec
	err := cp.Write(w)
	if rec.err != nil && err != nil {
		return &BodyReadError{err: rec.err}
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

// BodyReadError: the request body, not the connection, failed.
type BodyReadError struct{ err error }

func (e *BodyReadError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *BodyReadError) Unwrap() error { return e.err }

// body is a fast-path response body. Read to its end, it gives the
// connection back to the pool; closed early or broken, it closes the
// connection. Either way it calls the client's done, once.
type body struct {
	body  io.ReadCloser // http.ReadResponse's body, reading c
	c     *Conn
	h     *Client
	stop  func() bool // stops the context's AfterFunc; false if it already ran
	keep  bool        // the response lets the connection carry another request
	ended atomic.Bool
	eof   atomic.Bool // read to its end: later reads return io.EOF
}

var errBodyClosed = errors.New("read on a closed response body")

func (b *body) Read(p []byte) (int, error) {
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
func (b *body) Close() error {
	b.done(false)
	return nil
}

func (b *body) done(complete bool) {
	if complete {
		b.eof.Store(true)
	}
	if !b.ended.CompareAndSwap(false, true) {
		return
	}
	if b.stop() && complete && b.keep && b.c.br.Buffered() == 0 {
		b.h.Pool.Put(b.c)
	} else {
		b.c.Close()
	}
	b.h.Done()
}

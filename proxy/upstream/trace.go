package upstream

import (
	"context"
	"crypto/tls"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Spans (issue 27). The inbound side starts the request's server span;
// Send makes its children only when that span is recording (tracing.Tracer
// is nil otherwise, and nothing below is built): the wait for an access
// token that was not ready, one client span per send, and below a send
// that opened a connection, the connect (through via or not), the TLS
// handshake and the wait for the answer's first byte. A send on a pooled
// connection has no children: its own span is the wait. Connections are
// timed here, in the dialer, not through httptrace: net/http's Transport
// reports TLSHandshakeStart/Done itself for a connection DialTLSContext
// returns, after the dial already did the handshake (a second, empty one).

// attemptTrace is what the spans under one send need, carried in the
// send's context: the tracer, the certificate presented, and when a
// connection the send opened was ready. A dial of net/http's Transport
// runs on a goroutine of its own (and may end up serving another
// request), hence the atomic.
type attemptTrace struct {
	tr     trace.Tracer
	serial string
	ready  atomic.Int64 // UnixNano at which a connection dialled for the send finished its handshake; 0: none
}

type attemptTraceKey struct{}

func attemptTraceFrom(ctx context.Context) *attemptTrace {
	at, _ := ctx.Value(attemptTraceKey{}).(*attemptTrace)
	return at
}

// traceAttempt starts the span of send n of req through g; req is
// returned in the span's context. A nil span (and req unchanged) when the
// request is not traced.
func (s *sending) traceAttempt(req *http.Request, g *generation) (*http.Request, trace.Span, *attemptTrace) {
	if s.tr == nil {
		return req, nil, nil
	}
	ctx, span := tracing.StartAttempt(s.tr, req.Context(), req.Method)
	at := &attemptTrace{tr: s.tr, serial: g.serial}
	return req.WithContext(context.WithValue(ctx, attemptTraceKey{}, at)), span, at
}

// endAttempt ends a send's span: its answer, or its failure's verdict;
// after a connection the send opened, the first-byte span.
func (s *sending) endAttempt(span trace.Span, at *attemptTrace, req *http.Request, n int, resp *http.Response, err error) {
	if span == nil {
		return
	}
	now := time.Now()
	if ready := at.ready.Load(); ready != 0 && resp != nil {
		tracing.Record(at.tr, trace.ContextWithSpan(req.Context(), span), tracing.SpanFirstByte, time.Unix(0, ready), now, "")
	}
	port, _ := strconv.Atoi(req.URL.Port())
	if port == 0 {
		port = 443
	}
	a := tracing.Attempt{N: n, Method: req.Method, Host: s.c.host, Port: port, Path: req.URL.Path, Serial: at.serial}
	if resp != nil {
		a.Status, a.ProtoMajor, a.ProtoMinor = resp.StatusCode, resp.ProtoMajor, resp.ProtoMinor
	} else if err != nil {
		v := judge(err, req.Context().Err() != nil)
		a.ErrorKind, a.Alert = string(v.kind), v.alert
	}
	tracing.EndAttempt(span, &a)
}

// traceToken records the wait for an access token, when there was one
// (the token was not ready) or the wait failed.
func (s *sending) traceToken(start time.Time, waited bool, err error) {
	if s.tr == nil || (!waited && err == nil) {
		return
	}
	failed := ""
	if err != nil {
		failed = "token"
	}
	tracing.Record(s.tr, s.out.Context(), tracing.SpanToken, start, time.Now(), failed)
}

// traceDial records the connect and handshake spans of a connection
// dialled for a traced send, and when it was ready. began, dialled and
// done are when the dial began, when the byte stream was open, and when
// the handshake ended (zero when it did not get that far).
func (d *dialer) traceDial(ctx context.Context, began, dialled, done time.Time, conn *tls.Conn, err error) {
	at := attemptTraceFrom(ctx)
	if at == nil {
		return
	}
	end := dialled
	if end.IsZero() {
		end = time.Now()
	}
	connectFailed := ""
	if dialled.IsZero() && err != nil {
		connectFailed = failureDescription(err)
	}
	attrs := []attribute.KeyValue{semconv.ServerAddress(d.host)}
	if d.via != "" {
		attrs = append(attrs, tracing.AttrVia.String(d.via))
	}
	tracing.Record(at.tr, ctx, tracing.SpanConnect, began, end, connectFailed, attrs...)
	if dialled.IsZero() {
		return
	}
	if conn == nil { // the handshake failed
		tracing.Record(at.tr, ctx, tracing.SpanHandshake, dialled, time.Now(), failureDescription(err), tracing.AttrSerial.String(at.serial))
		return
	}
	cs := conn.ConnectionState()
	tracing.Record(at.tr, ctx, tracing.SpanHandshake, dialled, done, "", tracing.Handshake(cs.DidResume, cs.Version, at.serial)...)
	at.ready.Store(done.UnixNano())
}

// failureDescription is a failure's kind and its alert, for a span's
// status: never the error's text.
func failureDescription(err error) string {
	v := judge(err, false)
	if v.alert != "" {
		return string(v.kind) + ": " + v.alert
	}
	return string(v.kind)
}

package tracing

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Server starts the server span of each request the proxy serves. A nil
// *Server traces nothing. Safe for concurrent use; immutable.
type Server struct {
	tracer trace.Tracer
}

// NewServer returns the Server whose spans tp makes; nil when tp is nil
// (tracing is off).
func NewServer(tp trace.TracerProvider) *Server {
	if tp == nil {
		return nil
	}
	return &Server{tracer: tp.Tracer(Scope)}
}

// Start begins r's server span: a child of the client's span when r
// carries a valid W3C traceparent (with its tracestate), else a new
// trace's root; the sampler decides whether it records (parent-based by
// default). It returns the context the request is served and sent in,
// and the span, which End ends. On a nil Server it returns r's context
// and a nil span. r is not modified; nothing is ever injected into the
// request sent upstream.
func (s *Server) Start(r *http.Request) (context.Context, trace.Span) {
	ctx := r.Context()
	if s == nil {
		return ctx, nil
	}
	if r.Header["Traceparent"] != nil {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	name, _ := Method(r.Method)
	return s.tracer.Start(ctx, name, serverKind...)
}

// The options of the spans started on every request, made once: built at
// each call they cost two allocations a span (the option, boxed, and the
// variadic slice), the tracer being an interface (issue 27).
var (
	serverKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// attrs is the scratch array a span's attributes are gathered in before
// SetAttributes, which copies them: pooled, because handed to an
// interface method it would otherwise be allocated for every span.
type attrs [16]attribute.KeyValue

var attrsPool = sync.Pool{New: func() any { return new(attrs) }}

// setAttributes sets a on span and gives the array back to the pool.
func setAttributes(span trace.Span, buf *attrs, a []attribute.KeyValue) {
	span.SetAttributes(a...)
	clear(a)
	attrsPool.Put(buf)
}

// Outcome is what became of a request, its server span's attributes.
// Built only for a recording span (Recording).
type Outcome struct {
	Method     string
	Host       string // the upstream's host, or the host the client named when none was chosen
	Path       string // without the query
	Status     int    // the status the client got; 0 when the response broke off
	ProtoMajor int
	ProtoMinor int
	Client     string // the client's address, HOST:PORT
	Mode       string
	Upstream   string // the upstream's name; "" when none was chosen
	Attempts   int
	Serial     string // of the client certificate the last send presented
	ErrorKind  string // the proxy's failure kind, or "upstream_body"; "" when none
	ErrorID    string // the id of an error answer in Payrails' shape (the API's or the proxy's)
	ErrorCode  string // its code
}

// Recording reports whether span is a span whose attributes are kept: the
// only case worth building an Outcome for.
func Recording(span trace.Span) bool { return span != nil && span.IsRecording() }

// End ends a server span; o, when not nil, is what the request came to
// (pass nil for a span that is not recording). The status is an error
// when the proxy failed the request, the response broke off, or the
// answer is a 5xx, as the HTTP semantic conventions ask of a server span.
func End(span trace.Span, o *Outcome) {
	if span == nil {
		return
	}
	if o == nil {
		span.End()
		return
	}
	buf := attrsPool.Get().(*attrs)
	a := append(buf[:0], methodAttr(o.Method), semconv.URLPath(o.Path), semconv.ServerAddress(o.Host),
		AttrMode.String(o.Mode))
	if o.Status > 0 {
		a = append(a, semconv.HTTPResponseStatusCode(o.Status))
	}
	if v := protocolVersion(o.ProtoMajor, o.ProtoMinor); v != "" {
		a = append(a, semconv.NetworkProtocolVersion(v))
	}
	if host, _, err := net.SplitHostPort(o.Client); err == nil {
		a = append(a, semconv.ClientAddress(host))
	}
	if o.Upstream != "" {
		a = append(a, AttrUpstream.String(o.Upstream))
	}
	if o.Attempts > 0 {
		a = append(a, AttrAttempts.Int(o.Attempts))
	}
	if o.Serial != "" {
		a = append(a, AttrSerial.String(o.Serial))
	}
	if o.ErrorID != "" {
		a = append(a, AttrErrorID.String(o.ErrorID), AttrErrorCode.String(o.ErrorCode))
	}
	switch {
	case o.ErrorKind != "":
		a = append(a, AttrErrorKind.String(o.ErrorKind), semconv.ErrorTypeKey.String(o.ErrorKind))
		span.SetStatus(codes.Error, o.ErrorKind)
	case o.Status == 0:
		a = append(a, semconv.ErrorTypeKey.String("response_broken"))
		span.SetStatus(codes.Error, "response_broken")
	case o.Status >= 500:
		a = append(a, semconv.ErrorTypeKey.String(strconv.Itoa(o.Status)))
		span.SetStatus(codes.Error, "")
	}
	setAttributes(span, buf, a)
	span.End()
}

func methodAttr(m string) attribute.KeyValue {
	_, a := Method(m)
	return a
}

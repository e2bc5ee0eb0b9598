package tracing

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracer returns the tracer that makes the children of ctx's span, or nil
// when ctx carries no recording span: then nothing below it is traced,
// and the caller builds nothing. Call it once per request.
func Tracer(ctx context.Context) trace.Tracer {
	sp := trace.SpanFromContext(ctx)
	if !sp.IsRecording() {
		return nil
	}
	tp := sp.TracerProvider()
	// A provider (the SDK's, and internal/tracing/otlp's) finds a tracer
	// under a lock in a map keyed by the whole instrumentation scope: a few
	// hundred nanoseconds on every traced request. A process has one
	// provider (two in tests), so the last answer is kept.
	if last := lastTracer.Load(); last != nil && last.provider == tp {
		return last.tracer
	}
	tr := tp.Tracer(Scope)
	lastTracer.Store(&providerTracer{provider: tp, tracer: tr})
	return tr
}

// providerTracer is a provider and the tracer it gave for Scope.
type providerTracer struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
}

var lastTracer atomic.Pointer[providerTracer]

// Record records a finished child of ctx's span, from start to end, timed
// by the caller: no span is open while the work happens. A non-empty
// failure makes its status an error with that description (a kind or an
// alert name, never an error's text).
func Record(tr trace.Tracer, ctx context.Context, name string, start, end time.Time, failure string, attrs ...attribute.KeyValue) {
	_, sp := tr.Start(ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	if failure != "" {
		sp.SetStatus(codes.Error, failure)
	}
	sp.End(trace.WithTimestamp(end))
}

// StartAttempt begins the span of one send of a request: a client span
// named for the method, as the HTTP semantic conventions have it, whose
// children are the connect, handshake and first-byte spans when the send
// opened a connection.
func StartAttempt(tr trace.Tracer, ctx context.Context, method string) (context.Context, trace.Span) {
	name, _ := Method(method)
	return tr.Start(ctx, name, clientKind...)
}

// Attempt is what one send came to, its span's attributes.
type Attempt struct {
	N          int // 1 for the first send
	Method     string
	Host       string
	Port       int
	Path       string // without the query
	Serial     string // of the client certificate presented
	Status     int    // the answer's; 0 when there was none
	ProtoMajor int
	ProtoMinor int
	ErrorKind  string // the failure's kind when the send failed; "" otherwise
	Alert      string // the TLS alert or refusal page that explains it, if any
}

// EndAttempt ends an attempt's span with what it came to.
func EndAttempt(span trace.Span, a *Attempt) {
	buf := attrsPool.Get().(*attrs)
	attrs := append(buf[:0], methodAttr(a.Method), semconv.ServerAddress(a.Host), semconv.ServerPort(a.Port),
		semconv.URLPath(a.Path))
	if a.N > 1 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(a.N-1))
	}
	if a.Serial != "" {
		attrs = append(attrs, AttrSerial.String(a.Serial))
	}
	if a.Status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(a.Status))
		if v := protocolVersion(a.ProtoMajor, a.ProtoMinor); v != "" {
			attrs = append(attrs, semconv.NetworkProtocolVersion(v))
		}
	}
	if a.ErrorKind != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(a.ErrorKind))
		desc := a.ErrorKind
		if a.Alert != "" {
			desc += ": " + a.Alert
		}
		span.SetStatus(codes.Error, desc)
	}
	setAttributes(span, buf, attrs)
	span.End()
}

// Handshake is the attributes of a TLS handshake's span: whether the
// session was resumed, the version, and which client certificate was
// presented.
func Handshake(resumed bool, version uint16, serial string) []attribute.KeyValue {
	a := []attribute.KeyValue{semconv.TLSResumed(resumed)}
	if v := tlsVersion(version); v != "" {
		a = append(a, semconv.TLSProtocolNameKey.String("tls"), semconv.TLSProtocolVersion(v))
	}
	if serial != "" {
		a = append(a, AttrSerial.String(serial))
	}
	return a
}

func tlsVersion(v uint16) string {
	switch v {
	case 0x0304:
		return "1.3"
	case 0x0303:
		return "1.2"
	}
	return ""
}

package otlp

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// provider is the tracer provider the proxy makes its spans with when
// tracing is on: the SDK's samplers and resource, the queue of this
// package, and spans of its own (span.go) instead of the SDK's, which
// cost a traced request twice the CPU, 3.5 KB and 11 allocations on the
// bench machine (BenchmarkRequestSpans; issue 27). It makes spans as
// the SDK's provider does (tests compare the two: TestProviderAsSDK) but
// keeps no events or links. Safe for concurrent use.
type provider struct {
	embedded.TracerProvider
	sampler sdktrace.Sampler
	res     *resource.Resource
	q       *queue
	shut    atomic.Bool

	mu      sync.Mutex
	tracers map[instrumentation.Scope]*tracer
}

func newProvider(s sdktrace.Sampler, res *resource.Resource, q *queue) *provider {
	return &provider{sampler: s, res: res, q: q, tracers: make(map[instrumentation.Scope]*tracer)}
}

// Tracer returns the tracer of the scope named: the same one for the
// same scope.
func (p *provider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	c := trace.NewTracerConfig(opts...)
	scope := instrumentation.Scope{Name: name, Version: c.InstrumentationVersion(), SchemaURL: c.SchemaURL(),
		Attributes: c.InstrumentationAttributes()}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tracers[scope]
	if !ok {
		t = &tracer{p: p, scope: scope}
		p.tracers[scope] = t
	}
	return t
}

// shutdown stops recording: spans started later are not recorded.
func (p *provider) shutdown(ctx context.Context) error {
	if p.shut.Swap(true) {
		return nil
	}
	return p.q.Shutdown(ctx)
}

// tracer makes the spans of one instrumentation scope.
type tracer struct {
	embedded.Tracer
	p     *provider
	scope instrumentation.Scope
}

// Start begins a span as the SDK's tracer does: a child of ctx's span
// context (none with trace.WithNewRoot), in its trace or a new one, with
// a new span ID, sampled as the provider's sampler decides.
func (t *tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := trace.NewSpanStartConfig(opts...)
	parentSpan := trace.SpanFromContext(ctx)
	if ps, ok := parentSpan.(*span); ok {
		ps.children.Add(1) // as the SDK counts: whatever becomes of the child
	}
	var psc trace.SpanContext
	if cfg.NewRoot() {
		ctx = trace.ContextWithSpanContext(ctx, psc)
	} else {
		psc = parentSpan.SpanContext()
	}
	tid := psc.TraceID()
	if !tid.IsValid() {
		tid = newTraceID()
	}
	sid := newSpanID()
	var res sdktrace.SamplingResult
	if t.p.shut.Load() {
		res.Decision = sdktrace.Drop
	} else {
		res = t.p.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: name,
			Kind: cfg.SpanKind(), Attributes: cfg.Attributes(), Links: cfg.Links()})
	}
	scc := trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceState: res.Tracestate, TraceFlags: psc.TraceFlags() &^ trace.FlagsSampled}
	if res.Decision == sdktrace.RecordAndSample {
		scc.TraceFlags |= trace.FlagsSampled
	}
	sc := trace.NewSpanContext(scc)
	if res.Decision == sdktrace.Drop {
		u := &unsampled{sc: sc, p: t.p}
		return trace.ContextWithSpan(ctx, u), u
	}
	s := &span{t: t, sc: sc, parent: psc, kind: trace.ValidateSpanKind(cfg.SpanKind()), name: name, start: cfg.Timestamp()}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	s.attrs = s.inline[:0]
	s.add(res.Attributes)
	s.add(cfg.Attributes())
	s.links = len(cfg.Links())
	return trace.ContextWithSpan(ctx, s), s
}

// newTraceID and newSpanID are random, never all zeros (the runtime's
// per-thread generator, as the SDK's default uses).
func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.NativeEndian.PutUint64(id[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.NativeEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

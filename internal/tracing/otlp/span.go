package otlp

import (
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// span is a recording span of the provider (provider.go): what the SDK's
// span records for the proxy's spans, for about half its CPU, two thirds
// of its bytes and 4 allocations where it makes 11 for a traced request
// (BenchmarkRequestSpans; issue 27, docs/performance.md). Its attributes are kept as set
// and de-duplicated once, when it ends, without a map (a span has a
// handful); there is no snapshot: the ended span is itself the record the
// queue holds and the exporter reads, never written again. Events and
// links are not kept, only counted as dropped (the proxy records none).
//
// Its methods are safe for concurrent use, as the API asks. After End it
// is immutable and its setters do nothing.
type span struct {
	embedded.Span
	// The SDK's read-only span, embedded only so that *span is one
	// (ReadOnlySpan has an unexported method, so that only the SDK can
	// implement it): every exported method is span's own, and
	// TestSpanImplementsReadOnlySpan calls each of them, so that a method a
	// later SDK adds fails a test rather than calling through this nil.
	sdktrace.ReadOnlySpan

	t      *tracer
	sc     trace.SpanContext
	parent trace.SpanContext
	kind   trace.SpanKind
	start  time.Time

	mu       sync.Mutex
	ended    bool
	name     string
	end      time.Time
	attrs    []attribute.KeyValue // in set order until End, then without duplicate keys (the last value wins)
	inline   [12]attribute.KeyValue
	dropped  int // attributes over the limit or invalid
	events   int // events and links asked for, none kept
	links    int
	status   sdktrace.Status
	children atomic.Int32
}

// maxAttributes is the SDK's default attribute count limit.
const maxAttributes = 128

// End ends the span at the time given or now, and hands it to the queue
// when it is sampled and the provider has not been shut down. Later calls
// do nothing.
func (s *span) End(opts ...trace.SpanEndOption) {
	var end time.Time
	if len(opts) > 0 {
		cfg := trace.NewSpanEndConfig(opts...)
		end = cfg.Timestamp()
	}
	if end.IsZero() {
		// The monotonic clock, as the SDK does: a wall clock step does
		// not make a span end before it began.
		end = s.start.Add(time.Since(s.start))
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended, s.end = true, end
	s.attrs = dedupe(s.attrs)
	s.mu.Unlock()
	if s.sc.IsSampled() && !s.t.p.shut.Load() { // after Shutdown the queue exports nothing more
		s.t.p.q.OnEnd(s)
	}
}

// dedupe removes earlier values of repeated keys in place, keeping each
// key where it first appeared with the value it was last given. Without a
// repeated key (the proxy's spans have none) it only compares keys.
func dedupe(a []attribute.KeyValue) []attribute.KeyValue {
	if !repeats(a) {
		return a
	}
	out := a[:0]
	for _, kv := range a {
		i := 0
		for i < len(out) && out[i].Key != kv.Key {
			i++
		}
		if i < len(out) {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	clear(a[len(out):])
	return out
}

// repeats reports whether a key appears twice in a.
func repeats(a []attribute.KeyValue) bool {
	for i := 1; i < len(a); i++ {
		for j := range i {
			if a[i].Key == a[j].Key {
				return true
			}
		}
	}
	return false
}

func (s *span) AddEvent(string, ...trace.EventOption) { s.count(&s.events) }
func (s *span) AddLink(trace.Link)                    { s.count(&s.links) }

func (s *span) RecordError(err error, _ ...trace.EventOption) {
	if err != nil {
		s.count(&s.events)
	}
}

func (s *span) count(n *int) {
	s.mu.Lock()
	if !s.ended {
		*n++
	}
	s.mu.Unlock()
}

func (s *span) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

func (s *span) SpanContext() trace.SpanContext { return s.sc }

// SetStatus sets the status as the SDK does: Ok over Error over Unset, a
// description only with Error.
func (s *span) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.status.Code > code {
		return
	}
	st := sdktrace.Status{Code: code}
	if code == codes.Error {
		st.Description = description
	}
	s.status = st
}

func (s *span) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.name = name
	}
}

// SetAttributes adds kv, an invalid one dropped and counted as the SDK
// does, as are those past the limit of distinct keys.
func (s *span) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.add(kv)
}

// add appends kv; s.mu is held or s not yet shared.
func (s *span) add(kv []attribute.KeyValue) {
	for _, a := range kv {
		if !a.Valid() {
			s.dropped++
			continue
		}
		if len(s.attrs) >= maxAttributes {
			s.attrs = dedupe(s.attrs)
			if len(s.attrs) >= maxAttributes && !hasKey(s.attrs, a.Key) {
				s.dropped++
				continue
			}
		}
		s.attrs = append(s.attrs, a)
	}
}

func hasKey(a []attribute.KeyValue, k attribute.Key) bool {
	for _, kv := range a {
		if kv.Key == k {
			return true
		}
	}
	return false
}

func (s *span) TracerProvider() trace.TracerProvider { return s.t.p }

// The read-only view, for the queue and the exporter once the span has
// ended (and for tests through the SDK's SpanExporter interface).

func (s *span) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

func (s *span) Parent() trace.SpanContext { return s.parent }
func (s *span) SpanKind() trace.SpanKind  { return s.kind }
func (s *span) StartTime() time.Time      { return s.start }

func (s *span) EndTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

// Attributes are the span's attributes, without duplicate keys once it
// has ended. The slice is the span's: not to be modified.
func (s *span) Attributes() []attribute.KeyValue {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attrs
}

func (s *span) Links() []sdktrace.Link   { return nil }
func (s *span) Events() []sdktrace.Event { return nil }

func (s *span) Status() sdktrace.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *span) InstrumentationScope() instrumentation.Scope { return s.t.scope }

// InstrumentationLibrary is the scope under its deprecated name.
//
//lint:ignore SA1019 ReadOnlySpan has it
func (s *span) InstrumentationLibrary() instrumentation.Library { return s.t.scope }

func (s *span) Resource() *resource.Resource { return s.t.p.res }

func (s *span) DroppedAttributes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

func (s *span) DroppedLinks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links
}

func (s *span) DroppedEvents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

func (s *span) ChildSpanCount() int { return int(s.children.Load()) }

// unsampled is the span of a request the sampler dropped: it carries its
// span context (so that its children follow the decision) and records
// nothing.
type unsampled struct {
	embedded.Span
	sc trace.SpanContext
	p  *provider
}

func (*unsampled) End(...trace.SpanEndOption)              {}
func (*unsampled) AddEvent(string, ...trace.EventOption)   {}
func (*unsampled) AddLink(trace.Link)                      {}
func (*unsampled) IsRecording() bool                       { return false }
func (*unsampled) RecordError(error, ...trace.EventOption) {}
func (u *unsampled) SpanContext() trace.SpanContext        { return u.sc }
func (*unsampled) SetStatus(codes.Code, string)            {}
func (*unsampled) SetName(string)                          {}
func (*unsampled) SetAttributes(...attribute.KeyValue)     {}
func (u *unsampled) TracerProvider() trace.TracerProvider  { return u.p }

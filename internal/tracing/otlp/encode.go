package otlp

import (
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// encoder turns a batch of ended spans into the body of an OTLP/HTTP
// export: an opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest
// in protobuf, written straight from the SDK's read-only spans into a
// buffer it keeps, the fields as the SDK's own exporter fills them
// (go.opentelemetry.io/otel/exporters/otlp/otlptrace's tracetransform).
// Once its buffers have grown to a batch's size it allocates nothing: the
// generated types cost about 30 allocations a span (issue 27). The field
// numbers are the .proto's (opentelemetry-proto, trace/v1 and common/v1):
// encode_test.go decodes what it writes with the generated types, and
// cmd's TestTracingCollector sends it to the real Collector. Not safe for
// concurrent use.
type encoder struct {
	buf    []byte
	groups []group // the batch's resource and scope pairs, in order of first appearance
	of     []int   // the group of each span of the batch

	// The resource last encoded, and its attributes as KeyValue fields:
	// every span of a process has the same.
	res      *resource.Resource
	resAttrs []byte
}

// group is the spans of one resource and instrumentation scope.
type group struct {
	res   *resource.Resource
	scope instrumentation.Scope
}

// encode returns the request for spans, in e's buffer: valid until the
// next call.
func (e *encoder) encode(spans []sdktrace.ReadOnlySpan) []byte {
	e.group(spans)
	b := e.buf[:0]
	for i, g := range e.groups {
		if e.seenBefore(i) {
			continue
		}
		var rs int
		b, rs = openField(b, 1) // resource_spans
		if g.res != nil {
			var r int
			b, r = openField(b, 1) // resource
			b = append(b, e.resource(g.res)...)
			b = closeField(b, r)
		}
		for j := i; j < len(e.groups); j++ {
			if e.groups[j].res == g.res {
				b = e.appendScopeSpans(b, j, spans)
			}
		}
		if g.res != nil {
			b = appendString(b, 3, g.res.SchemaURL())
		}
		b = closeField(b, rs)
	}
	e.buf = b
	return b
}

// group fills e.groups and e.of for spans.
func (e *encoder) group(spans []sdktrace.ReadOnlySpan) {
	e.groups, e.of = e.groups[:0], e.of[:0]
	for _, s := range spans {
		g := group{res: s.Resource(), scope: s.InstrumentationScope()}
		i := 0
		for i < len(e.groups) && e.groups[i] != g {
			i++
		}
		if i == len(e.groups) {
			e.groups = append(e.groups, g)
		}
		e.of = append(e.of, i)
	}
}

// seenBefore reports whether a group before group i has its resource.
func (e *encoder) seenBefore(i int) bool {
	for _, g := range e.groups[:i] {
		if g.res == e.groups[i].res {
			return true
		}
	}
	return false
}

// resource is the content of res's Resource message: its attributes (1).
func (e *encoder) resource(res *resource.Resource) []byte {
	if res != e.res {
		e.res, e.resAttrs = res, appendSet(e.resAttrs[:0], 1, res.Set())
	}
	return e.resAttrs
}

// appendScopeSpans appends the ScopeSpans (2) of group gi: its scope (1),
// its spans (2) and the scope's schema URL (3).
func (e *encoder) appendScopeSpans(b []byte, gi int, spans []sdktrace.ReadOnlySpan) []byte {
	scope := &e.groups[gi].scope
	b, ss := openField(b, 2)
	b, sc := openField(b, 1)
	b = appendString(b, 1, scope.Name)
	b = appendString(b, 2, scope.Version)
	b = appendSet(b, 3, &scope.Attributes)
	b = closeField(b, sc)
	for i, s := range spans {
		if e.of[i] == gi {
			b = appendSpan(b, s)
		}
	}
	b = appendString(b, 3, scope.SchemaURL)
	return closeField(b, ss)
}

// appendSpan appends s as a Span (2 of ScopeSpans).
func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	b, start := openField(b, 2)
	sc, parent := s.SpanContext(), s.Parent()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, 1, tid[:])
	b = appendBytes(b, 2, sid[:])
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = appendString(b, 3, ts.String())
	}
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendBytes(b, 4, psid[:])
	}
	b = appendString(b, 5, s.Name())
	b = appendVarint(b, 6, spanKind(s.SpanKind()))
	b = appendFixed64(b, 7, unixNano(s.StartTime()))
	b = appendFixed64(b, 8, unixNano(s.EndTime()))
	b = appendKeyValues(b, 9, s.Attributes())
	b = appendVarint(b, 10, count(s.DroppedAttributes()))
	for _, ev := range s.Events() {
		var e int
		b, e = openField(b, 11)
		b = appendFixed64(b, 1, unixNano(ev.Time))
		b = appendString(b, 2, ev.Name)
		b = appendKeyValues(b, 3, ev.Attributes)
		b = appendVarint(b, 4, count(ev.DroppedAttributeCount))
		b = closeField(b, e)
	}
	b = appendVarint(b, 12, count(s.DroppedEvents()))
	for _, l := range s.Links() {
		b = appendLink(b, l)
	}
	b = appendVarint(b, 14, count(s.DroppedLinks()))
	b = appendStatus(b, s.Status())
	b = appendFixed32(b, 16, spanFlags(sc.TraceFlags(), parent))
	return closeField(b, start)
}

// appendLink appends l as a Span.Link (13).
func appendLink(b []byte, l sdktrace.Link) []byte {
	b, start := openField(b, 13)
	tid, sid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
	b = appendBytes(b, 1, tid[:])
	b = appendBytes(b, 2, sid[:])
	if ts := l.SpanContext.TraceState(); ts.Len() > 0 {
		b = appendString(b, 3, ts.String())
	}
	b = appendKeyValues(b, 4, l.Attributes)
	b = appendVarint(b, 5, count(l.DroppedAttributeCount))
	b = appendFixed32(b, 6, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext))
	return closeField(b, start)
}

// appendStatus appends st as a Status (15): message (2) and code (3),
// whose numbers differ from the API's (OK is 1 there, ERROR 2). An unset
// status with no message is left out, as proto3 has it.
func appendStatus(b []byte, st sdktrace.Status) []byte {
	var code uint64
	switch st.Code {
	case codes.Ok:
		code = 1
	case codes.Error:
		code = 2
	}
	if code == 0 && st.Description == "" {
		return b
	}
	b, start := openField(b, 15)
	b = appendString(b, 2, st.Description)
	b = appendVarint(b, 3, code)
	return closeField(b, start)
}

// spanKind is k's Span.SpanKind: the same numbers, 0 for one the API
// does not define.
func spanKind(k trace.SpanKind) uint64 {
	if k < trace.SpanKindInternal || k > trace.SpanKindConsumer {
		return 0
	}
	return uint64(k)
}

// spanFlags is a span's or link's flags field: the W3C trace flags, and
// whether the context they came with (the parent's; the linked one) is
// remote (SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, _IS_REMOTE_MASK).
func spanFlags(tf trace.TraceFlags, ctx trace.SpanContext) uint32 {
	f := uint32(tf) | 0x100
	if ctx.IsRemote() {
		f |= 0x200
	}
	return f
}

// unixNano is t in nanoseconds since 1970, 0 for an earlier or zero time.
func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(max(t.UnixNano(), 0))
}

package otlp

import (
	"math"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// The encoder is checked against the generated types of opentelemetry-proto
// (test code only: the binary has none of them). An
// ExportTraceServiceRequest is read as a TracesData, the same message on
// the wire (resource_spans, 1) without the collector package, which would
// bring gRPC into go.mod.

var (
	t0       = time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	traceID  = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	spanID   = trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}
	parentID = trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

func sc(tid trace.TraceID, sid trace.SpanID, remote bool, ts string) trace.SpanContext {
	state, err := trace.ParseTraceState(ts)
	if err != nil {
		panic(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: state, Remote: remote})
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func kv(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

// TestEncode: every field of a span, every kind of attribute value, and
// the grouping by resource and scope, as the generated types read them.
func TestEncode(t *testing.T) {
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.43.0", attribute.String("service.name", "sidecar"))
	other := resource.NewSchemaless(attribute.String("service.name", "other"))
	scope := instrumentation.Scope{Name: "proxy", Version: "1.2", SchemaURL: "https://s", Attributes: attribute.NewSet(attribute.Bool("x", true))}
	long := strings.Repeat("p", 300) // a span past 16 KiB would need a three-byte length: the attribute makes one past 128 bytes
	full := tracetest.SpanStub{
		Name: "POST", SpanContext: sc(traceID, spanID, false, "vendor=a"), Parent: sc(traceID, parentID, true, ""),
		SpanKind: trace.SpanKindServer, StartTime: t0, EndTime: t0.Add(1500 * time.Microsecond),
		Attributes: []attribute.KeyValue{
			attribute.String("url.path", long), attribute.Bool("b", false), attribute.Int("i", -7), attribute.Float64("f", math.Pi),
			attribute.StringSlice("ss", []string{"a", ""}), attribute.Int64Slice("is", []int64{1, 300}), attribute.BoolSlice("bs", []bool{true}),
			attribute.Float64Slice("fs", []float64{0.5}),
		},
		DroppedAttributes: 2,
		Events:            []sdktrace.Event{{Name: "ev", Time: t0.Add(time.Millisecond), Attributes: []attribute.KeyValue{attribute.Int("n", 1)}, DroppedAttributeCount: 1}},
		DroppedEvents:     3,
		Links:             []sdktrace.Link{{SpanContext: sc(traceID, parentID, true, "k=v"), Attributes: []attribute.KeyValue{attribute.String("l", "1")}}},
		Status:            sdktrace.Status{Code: codes.Error, Description: "upstream_tls: bad_certificate"},
		Resource:          res, InstrumentationScope: scope,
	}
	child := tracetest.SpanStub{Name: "connect", SpanContext: sc(traceID, parentID, false, ""), Parent: sc(traceID, spanID, false, ""),
		SpanKind: trace.SpanKindInternal, StartTime: t0, EndTime: t0, Status: sdktrace.Status{Code: codes.Ok}, Resource: res, InstrumentationScope: scope}
	root := tracetest.SpanStub{Name: "root", SpanContext: sc(traceID, spanID, false, ""), Resource: other,
		InstrumentationScope: instrumentation.Scope{Name: "b"}}
	otherScope := tracetest.SpanStub{Name: "GET", SpanContext: sc(traceID, spanID, false, ""), SpanKind: trace.SpanKindClient,
		Resource: res, InstrumentationScope: instrumentation.Scope{Name: "a"}}

	var e encoder
	var got tracepb.TracesData
	for range 2 { // the second time with the buffers kept
		if err := proto.Unmarshal(e.encode(tracetest.SpanStubs{full, root, otherScope, child}.Snapshots()), &got); err != nil {
			t.Fatal(err)
		}
	}
	flagsLocal, flagsRemote := uint32(0x101), uint32(0x301)
	fullPB := &tracepb.Span{
		TraceId: traceID[:], SpanId: spanID[:], TraceState: "vendor=a", ParentSpanId: parentID[:], Flags: flagsRemote, Name: "POST",
		Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: uint64(t0.UnixNano()), EndTimeUnixNano: uint64(t0.Add(1500 * time.Microsecond).UnixNano()),
		Attributes: []*commonpb.KeyValue{
			str("url.path", long),
			kv("b", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}),
			kv("i", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -7}}),
			kv("f", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.Pi}}),
			kv("ss", array(sv("a"), sv(""))),
			kv("is", array(&commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 1}}, &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 300}})),
			kv("bs", array(&commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}})),
			kv("fs", array(&commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}})),
		},
		DroppedAttributesCount: 2,
		Events: []*tracepb.Span_Event{{TimeUnixNano: uint64(t0.Add(time.Millisecond).UnixNano()), Name: "ev",
			Attributes: []*commonpb.KeyValue{kv("n", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 1}})}, DroppedAttributesCount: 1}},
		DroppedEventsCount: 3,
		Links: []*tracepb.Span_Link{{TraceId: traceID[:], SpanId: parentID[:], TraceState: "k=v", Attributes: []*commonpb.KeyValue{str("l", "1")},
			Flags: flagsRemote}},
		Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "upstream_tls: bad_certificate"},
	}
	want := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "sidecar")}},
			ScopeSpans: []*tracepb.ScopeSpans{
				{Scope: &commonpb.InstrumentationScope{Name: "proxy", Version: "1.2", Attributes: []*commonpb.KeyValue{
					kv("x", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}})}},
					Spans: []*tracepb.Span{fullPB, {TraceId: traceID[:], SpanId: parentID[:], ParentSpanId: spanID[:], Flags: flagsLocal, Name: "connect",
						Kind: tracepb.Span_SPAN_KIND_INTERNAL, StartTimeUnixNano: uint64(t0.UnixNano()), EndTimeUnixNano: uint64(t0.UnixNano()),
						Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}}},
					SchemaUrl: "https://s"},
				{Scope: &commonpb.InstrumentationScope{Name: "a"}, Spans: []*tracepb.Span{{TraceId: traceID[:], SpanId: spanID[:], Flags: flagsLocal,
					Name: "GET", Kind: tracepb.Span_SPAN_KIND_CLIENT}}},
			},
			SchemaUrl: "https://opentelemetry.io/schemas/1.43.0",
		},
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "other")}},
			ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "b"}, Spans: []*tracepb.Span{{TraceId: traceID[:],
				SpanId: spanID[:], Flags: flagsLocal, Name: "root"}}}},
		},
	}}
	if !proto.Equal(want, &got) {
		t.Errorf("decoded export:\n%s\nwant:\n%s", prototext.Format(&got), prototext.Format(want))
	}
}

func sv(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func array(vs ...*commonpb.AnyValue) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vs}}}
}

// TestEncodeAllocs: once its buffers have grown, the encoder allocates
// nothing for a batch of the proxy's spans.
func TestEncodeAllocs(t *testing.T) {
	spans := make(tracetest.SpanStubs, 128)
	res := resource.NewSchemaless(attribute.String("service.name", "sidecar"))
	for i := range spans {
		spans[i] = tracetest.SpanStub{Name: "GET", SpanContext: sc(traceID, spanID, false, ""), Parent: sc(traceID, parentID, true, ""),
			StartTime: t0, EndTime: t0, Resource: res, InstrumentationScope: instrumentation.Scope{Name: "proxy"},
			Attributes: []attribute.KeyValue{attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 200),
				attribute.String("url.path", "/v1/payments"), attribute.String("server.address", "api.example")}}
	}
	batch := spans.Snapshots()
	var e encoder
	e.encode(batch)
	if n := testing.AllocsPerRun(20, func() { e.encode(batch) }); n != 0 {
		t.Errorf("%v allocations a batch, want 0", n)
	}
}

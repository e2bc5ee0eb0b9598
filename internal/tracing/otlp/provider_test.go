package otlp

import (
	"context"
	"errors"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// recorder is an exporter that keeps what it is given.
type recorder struct{ *tracetest.InMemoryExporter }

func (recorder) Shutdown(context.Context) error { return nil }

// TestProviderAsSDK: the same calls through the provider of this package
// and through the SDK's, with the same sampler and resource, make the same
// spans: names, kinds, parents and trace, attributes (duplicates
// resolved as the SDK resolves them, invalid ones dropped and counted),
// status, times given, scope and resource; and the same sampling
// decisions, with the client's traceparent sampled or not, a new root,
// and a ratio of 0.
func TestProviderAsSDK(t *testing.T) {
	start := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	scenario := func(tp trace.TracerProvider, parent context.Context) {
		tr := tp.Tracer("scope-a", trace.WithInstrumentationVersion("1.2.3"))
		ctx, root := tr.Start(parent, "GET", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("at.start", "x")))
		root.SetAttributes(attribute.String("k", "first"), attribute.Int("n", 1), attribute.String("k", "last"),
			attribute.KeyValue{Key: "", Value: attribute.StringValue("invalid")})
		root.SetStatus(codes.Error, "upstream_unreachable")
		root.SetStatus(codes.Unset, "ignored")
		_, child := tr.Start(ctx, "send", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start))
		child.SetName("GET")
		child.SetStatus(codes.Ok, "description dropped")
		child.SetStatus(codes.Error, "not over Ok")
		child.End(trace.WithTimestamp(start.Add(2 * time.Millisecond)))
		child.SetAttributes(attribute.String("after", "end"))
		_, internal := tr.Start(ctx, "internal", trace.WithTimestamp(start.Add(time.Millisecond)))
		internal.End(trace.WithTimestamp(start.Add(time.Millisecond)))
		_, fresh := tp.Tracer("scope-b").Start(ctx, "new root", trace.WithNewRoot(), trace.WithTimestamp(start))
		fresh.End(trace.WithTimestamp(start.Add(time.Millisecond)))
		root.End(trace.WithTimestamp(start.Add(3 * time.Millisecond)))
		root.End(trace.WithTimestamp(start.Add(time.Hour))) // a second End changes nothing
	}
	remote := func(sampled string) context.Context {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"+sampled)
		r.Header.Set("Tracestate", "vendor=value")
		return propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(r.Header))
	}
	for _, tt := range []struct {
		name   string
		ratio  float64
		parent context.Context
	}{
		{"no parent", 1, context.Background()},
		{"sampled traceparent", 1, remote("01")},
		{"unsampled traceparent", 1, remote("00")},
		{"ratio 0", 0, context.Background()},
		{"ratio 0, sampled traceparent", 0, remote("01")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := on()
			cfg.Ratio = tt.ratio
			res := newResource(cfg, "v-test")

			sdkExp := tracetest.NewInMemoryExporter()
			sdkTP := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler(cfg)), sdktrace.WithResource(res),
				sdktrace.WithSyncer(sdkExp))
			scenario(sdkTP, tt.parent)
			want := normalize(sdkExp.GetSpans()) // before Shutdown, which empties it
			if err := sdkTP.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}

			ours := recorder{tracetest.NewInMemoryExporter()}
			tr, err := New(cfg, Options{Exporter: ours, Version: "v-test"})
			if err != nil {
				t.Fatal(err)
			}
			scenario(tr.TracerProvider(), tt.parent)
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}

			got := normalize(ours.GetSpans())
			if len(got) != len(want) {
				t.Fatalf("%d spans exported, the SDK %d:\ngot  %v\nwant %v", len(got), len(want), got, want)
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("span %d:\ngot  %+v\nwant %+v", i, got[i], want[i])
				}
			}
		})
	}
}

// normalized is what of a span both providers must agree on. IDs made at
// random are replaced by their role: the trace's (the client's or new)
// and the parent's name.
type normalized struct {
	Name, Kind, Trace, Parent, Scope, TraceState string
	Remote, Sampled                              bool
	Start, End                                   time.Time
	Attrs, Resource                              string
	Dropped, Children                            int
	Status                                       sdktrace.Status
}

func normalize(spans tracetest.SpanStubs) []normalized {
	names := map[trace.SpanID]string{}
	for _, s := range spans {
		names[s.SpanContext.SpanID()] = s.Name
	}
	var out []normalized
	for _, s := range spans {
		n := normalized{Name: s.Name, Kind: s.SpanKind.String(), Scope: s.InstrumentationScope.Name + "@" + s.InstrumentationScope.Version,
			TraceState: s.SpanContext.TraceState().String(), Remote: s.Parent.IsRemote(), Sampled: s.SpanContext.IsSampled(),
			Start: s.StartTime, End: s.EndTime, Attrs: attrString(s.Attributes), Resource: attrString(s.Resource.Attributes()),
			Dropped: s.DroppedAttributes, Children: s.ChildSpanCount, Status: s.Status}
		switch tid := s.SpanContext.TraceID().String(); {
		case tid == "4bf92f3577b34da6a3ce929d0e0e4736":
			n.Trace = "the client's"
		case s.Parent.IsValid() && s.Parent.TraceID() != s.SpanContext.TraceID():
			n.Trace = "not the parent's"
		default:
			n.Trace = "new or the parent's"
		}
		if p := s.Parent.SpanID(); p.IsValid() {
			n.Parent = names[p]
			if n.Parent == "" {
				n.Parent = p.String()
			}
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b normalized) int { return strings.Compare(a.Name+a.Scope, b.Name+b.Scope) })
	return out
}

func attrString(kv []attribute.KeyValue) string {
	var b strings.Builder
	for _, a := range kv {
		b.WriteString(string(a.Key) + "=" + a.Value.String() + ";")
	}
	return b.String()
}

// TestSpanImplementsReadOnlySpan: span implements every exported method
// of the SDK's ReadOnlySpan itself. It embeds the interface only to have
// the unexported one; a method a later SDK adds would be promoted from
// that nil and panic when called: here rather than in the exporter.
func TestSpanImplementsReadOnlySpan(t *testing.T) {
	tr, err := New(on(), Options{Exporter: recorder{tracetest.NewInMemoryExporter()}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()
	_, sp := tr.TracerProvider().Tracer("test").Start(context.Background(), "s")
	sp.End()
	v := reflect.ValueOf(sp)
	iface := reflect.TypeFor[sdktrace.ReadOnlySpan]()
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		if !m.IsExported() {
			continue
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: %v (span does not implement it: the SDK added it?)", m.Name, r)
				}
			}()
			v.MethodByName(m.Name).Call(nil)
		}()
	}
}

// TestSpanAfterEnd: an ended span is no longer recording and ignores its
// setters; events and links are counted as dropped while it records; a
// span ended after Shutdown is not queued, one started after it does not
// record.
func TestSpanAfterEnd(t *testing.T) {
	rec := recorder{tracetest.NewInMemoryExporter()}
	tr, err := New(on(), Options{Exporter: rec})
	if err != nil {
		t.Fatal(err)
	}
	_, sp := tr.TracerProvider().Tracer("test").Start(context.Background(), "s")
	_, open := tr.TracerProvider().Tracer("test").Start(context.Background(), "ended after Shutdown")
	sp.AddEvent("e")
	sp.RecordError(errors.New("e"))
	sp.RecordError(nil)
	sp.AddLink(trace.Link{})
	sp.End()
	if sp.IsRecording() {
		t.Error("IsRecording after End: true")
	}
	sp.SetName("renamed")
	sp.SetAttributes(attribute.Bool("late", true))
	sp.SetStatus(codes.Error, "late")
	sp.AddEvent("late")
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	open.End()
	if n := tr.tp.q.waiting(); n != 0 {
		t.Errorf("%d spans queued after Shutdown, want 0", n)
	}
	got := rec.GetSpans()
	if len(got) != 1 {
		t.Fatalf("%d spans exported, want 1 (none ended after Shutdown)", len(got))
	}
	s := got[0]
	if s.Name != "s" || len(s.Attributes) != 0 || s.Status.Code != codes.Unset || s.DroppedEvents != 2 || s.DroppedLinks != 1 {
		t.Errorf("exported %q, attributes %v, status %v, dropped events %d and links %d; want \"s\", none, unset, 2 and 1",
			s.Name, s.Attributes, s.Status, s.DroppedEvents, s.DroppedLinks)
	}
	_, late := tr.TracerProvider().Tracer("test").Start(context.Background(), "after shutdown")
	if late.IsRecording() {
		t.Error("a span started after Shutdown is recording")
	}
}

// BenchmarkRequestSpans: the two spans of a traced request on a pooled
// connection, through this package's provider
// ("ours") and through the SDK's with the same sampler, resource and
// queue ("sdk", what New made before issue 27's provider), exported to
// nowhere.
func BenchmarkRequestSpans(b *testing.B) {
	cfg := on()
	providers := []struct {
		name string
		make func() (trace.TracerProvider, func())
	}{
		{"ours", func() (trace.TracerProvider, func()) {
			tr, err := New(cfg, Options{Exporter: discardExporter{}})
			if err != nil {
				b.Fatal(err)
			}
			return tr.TracerProvider(), func() { _ = tr.Shutdown(context.Background()) }
		}},
		{"sdk", func() (trace.TracerProvider, func()) {
			q := newQueue(discardExporter{}, Options{}, time.Second, newMetrics(nil), zap.NewNop())
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler(cfg)), sdktrace.WithResource(newResource(cfg, "")),
				sdktrace.WithSpanProcessor(q))
			return tp, func() { _ = tp.Shutdown(context.Background()) }
		}},
	}
	for _, p := range providers {
		b.Run(p.name, func(b *testing.B) {
			tp, stop := p.make()
			defer stop()
			request := requestSpans(tp)
			b.ReportAllocs()
			for b.Loop() {
				request()
			}
		})
	}
}

// requestSpans returns a function that makes, with tp, the two spans of
// a traced request on a pooled connection (the server span and its send),
// start to end with their attributes, as the proxy does.
func requestSpans(tp trace.TracerProvider) func() {
	s := tracing.NewServer(tp)
	r := httptest.NewRequest("GET", "http://api.example/bytes/200", nil)
	o := tracing.Outcome{Method: "GET", Host: "api.example", Path: "/bytes/200", Status: 200, ProtoMajor: 1, ProtoMinor: 1,
		Client: "127.0.0.1:5555", Mode: "forward", Upstream: "live", Attempts: 1, Serial: "0abc"}
	a := tracing.Attempt{N: 1, Method: "GET", Host: "api.example", Port: 443, Path: "/bytes/200", Serial: "0abc", Status: 200,
		ProtoMajor: 1, ProtoMinor: 1}
	return func() {
		ctx, sp := s.Start(r)
		_, as := tracing.StartAttempt(tracing.Tracer(ctx), ctx, "GET")
		tracing.EndAttempt(as, &a)
		tracing.End(sp, &o)
	}
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

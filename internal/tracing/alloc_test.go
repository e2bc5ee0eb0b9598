//go:build !race

// The race detector makes sync.Pool drop what it is given at random,
// which these counts would see.

package tracing

import (
	"context"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// discard is a span processor that keeps nothing.
type discard struct{}

func (discard) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discard) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discard) Shutdown(context.Context) error                  { return nil }
func (discard) ForceFlush(context.Context) error                { return nil }

// TestSpanAllocs: what a traced request's two spans on a pooled
// connection (the server span and its send) cost in allocations, the
// SDK's included (the provider of the proxy's tests; production's,
// internal/tracing/otlp's, has its own guard: TestRequestSpansAllocs): a
// guard for issue 27's CPU budget. The SDK itself makes
// the span, its context, the attributes' copy, their de-duplication map
// and the snapshot the processor gets; the options and the attributes'
// scratch array are made once here, not per span.
func TestSpanAllocs(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(discard{}))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	s := NewServer(tp)
	r := httptest.NewRequest("GET", "http://api.example/bytes/200", nil)
	o := Outcome{Method: "GET", Host: "api.example", Path: "/bytes/200", Status: 200, ProtoMajor: 1, ProtoMinor: 1,
		Client: "127.0.0.1:5555", Mode: "forward", Upstream: "live", Attempts: 1, Serial: "0abc"}
	a := Attempt{N: 1, Method: "GET", Host: "api.example", Port: 443, Path: "/bytes/200", Serial: "0abc", Status: 200,
		ProtoMajor: 1, ProtoMinor: 1}
	bare := testing.AllocsPerRun(200, func() { _, sp := s.Start(r); End(sp, nil) }) // a server span without attributes
	tests := []struct {
		name string
		max  float64
		f    func()
		less float64 // what f's count includes that is not the span's
	}{
		{name: "server span", max: 7, f: func() { _, sp := s.Start(r); End(sp, &o) }},
		{name: "send span", max: 4, less: bare, f: func() {
			ctx, sp := s.Start(r)
			_, as := StartAttempt(Tracer(ctx), ctx, "GET")
			EndAttempt(as, &a)
			End(sp, nil)
		}},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(200, tt.f) - tt.less; n > tt.max {
			t.Errorf("%s: %v allocations, want at most %v", tt.name, n, tt.max)
		}
	}
}

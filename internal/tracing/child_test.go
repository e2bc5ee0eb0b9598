package tracing

import (
	"context"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTracerFollowsProvider: the tracer Tracer gives makes its children
// with the provider of the span in the context, whichever provider the
// last call saw (Tracer keeps the last one).
func TestTracerFollowsProvider(t *testing.T) {
	type arm struct {
		rec *tracetest.SpanRecorder
		s   *Server
	}
	var arms [2]arm
	for i := range arms {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		arms[i] = arm{rec: rec, s: NewServer(tp)}
	}
	r := httptest.NewRequest("GET", "http://api.example/x", nil)
	for round := range 3 {
		for i, a := range arms {
			ctx, sp := a.s.Start(r)
			tr := Tracer(ctx)
			if tr == nil {
				t.Fatalf("round %d, provider %d: no tracer for a recording span", round, i)
			}
			_, child := StartAttempt(tr, ctx, "GET")
			child.End()
			End(sp, nil)
			ended := a.rec.Ended()
			last := ended[len(ended)-2] // the child, then the server span
			if last.Parent().SpanID() != sp.SpanContext().SpanID() {
				t.Fatalf("round %d, provider %d: the child's parent is %v, want the server span %v",
					round, i, last.Parent().SpanID(), sp.SpanContext().SpanID())
			}
			if got, want := len(ended), 2*(round+1); got != want {
				t.Fatalf("round %d, provider %d: %d spans ended with this provider, want %d", round, i, got, want)
			}
		}
	}
	if Tracer(context.Background()) != nil {
		t.Error("a context without a span: got a tracer, want nil")
	}
}

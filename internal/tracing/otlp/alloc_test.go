//go:build !race

// The race detector makes sync.Pool drop what it is given at random,
// which these counts would see.

package otlp

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing"
)

// TestRequestSpansAllocs: the two spans of a traced request on a pooled
// connection (the server span and its send) cost 4 allocations through
// this package's provider: each span and the context that carries it
// (the SDK's made 11). A guard for issue 27's CPU budget.
func TestRequestSpansAllocs(t *testing.T) {
	tr, err := New(on(), Options{Exporter: discardExporter{}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()
	s := tracing.NewServer(tr.TracerProvider())
	r := httptest.NewRequest("GET", "http://api.example/bytes/200", nil)
	o := tracing.Outcome{Method: "GET", Host: "api.example", Path: "/bytes/200", Status: 200, ProtoMajor: 1, ProtoMinor: 1,
		Client: "127.0.0.1:5555", Mode: "forward", Upstream: "live", Attempts: 1, Serial: "0abc"}
	a := tracing.Attempt{N: 1, Method: "GET", Host: "api.example", Port: 443, Path: "/bytes/200", Serial: "0abc", Status: 200,
		ProtoMajor: 1, ProtoMinor: 1}
	n := testing.AllocsPerRun(500, func() {
		ctx, sp := s.Start(r)
		_, as := tracing.StartAttempt(tracing.Tracer(ctx), ctx, "GET")
		tracing.EndAttempt(as, &a)
		tracing.End(sp, &o)
	})
	if n > 4 {
		t.Errorf("a traced request's two spans: %v allocations, want at most 4", n)
	}
}

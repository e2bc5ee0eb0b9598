//go:build !race

// The race detector makes sync.Pool drop what it is given at random,
// which these counts would see.

package otlp

import (
	"context"
	"testing"
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
	n := testing.AllocsPerRun(500, requestSpans(tr.TracerProvider()))
	if n > 4 {
		t.Errorf("a traced request's two spans: %v allocations, want at most 4", n)
	}
}

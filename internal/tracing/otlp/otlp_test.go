package otlp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// blockingExporter holds every export until released, counting spans.
type blockingExporter struct {
	release  chan struct{}
	exported atomic.Int64
	calls    atomic.Int64
	fail     bool
	shutdown atomic.Bool
}

func (e *blockingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.calls.Add(1)
	select {
	case <-e.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	if e.fail {
		return errors.New("collector unavailable")
	}
	e.exported.Add(int64(len(spans)))
	return nil
}

func (e *blockingExporter) Shutdown(context.Context) error { e.shutdown.Store(true); return nil }

func on() config.Tracing {
	return config.Tracing{Endpoint: &url.URL{Scheme: "http", Host: "127.0.0.1:1", Path: "/v1/traces"}, Sampler: "parentbased_traceidratio",
		Ratio: 1, ServiceName: config.DefaultServiceName}
}

func spansOf(t *testing.T, tr *Tracing, n int) {
	t.Helper()
	tracer := tr.TracerProvider().Tracer("test")
	for range n {
		_, sp := tracer.Start(context.Background(), "s")
		sp.End()
	}
}

func dropped(reg *prometheus.Registry, reason string) float64 {
	return counter(reg, "payrails_proxy_tracing_spans_dropped_total", reason)
}

// counter is the value of the counter name (with the one label value
// label, when not ""); -1 when there is none.
func counter(reg *prometheus.Registry, name, label string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// TestQueueNeverBlocks: with the exporter stuck, ending spans never
// waits: what does not fit is dropped and counted; once the exporter
// moves, the queued spans go.
func TestQueueNeverBlocks(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	tr, err := New(on(), Options{Exporter: exp, Registerer: reg, Queue: 8, Batch: 4, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { spansOf(t, tr, 100); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ending spans blocked on a stuck exporter")
	}
	// The goroutine holds a batch of 4 in the stuck export, the queue 8:
	// every other span was dropped.
	poll.Until(t, "the first export", 5*time.Second, func() bool { return exp.calls.Load() == 1 })
	if got := dropped(reg, dropQueueFull); got < 100-4-8 {
		t.Errorf("dropped %v spans for a full queue, want at least %d", got, 100-4-8)
	}
	close(exp.release)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := exp.exported.Load() + int64(dropped(reg, dropQueueFull)); got != 100 {
		t.Errorf("exported + dropped = %d, want 100", got)
	}
	if !exp.shutdown.Load() {
		t.Error("the exporter was not shut down")
	}
}

// TestShutdownWithinDeadline: a collector that never answers does not hold
// shutdown past its context; what was left is counted as dropped.
func TestShutdownWithinDeadline(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	tr, err := New(on(), Options{Exporter: exp, Registerer: reg, Queue: 64, Batch: 4, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	spansOf(t, tr, 20)
	poll.Until(t, "the first export", 5*time.Second, func() bool { return exp.calls.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_ = tr.Shutdown(ctx)
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("shutdown took %s with a 100ms deadline", d)
	}
	if got := dropped(reg, dropShutdown) + dropped(reg, dropExportFailed); got != 20 {
		t.Errorf("dropped %v spans at shutdown, want 20", got)
	}
}

// TestShutdownFlushes: spans ended before shutdown are exported by it,
// with no interval passing; spans after it are not recorded.
func TestShutdownFlushes(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{})}
	close(exp.release)
	tr, err := New(on(), Options{Exporter: exp, Queue: 64, Batch: 512, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	spansOf(t, tr, 10)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := exp.exported.Load(); got != 10 {
		t.Errorf("%d spans exported at shutdown, want 10", got)
	}
	_, sp := tr.TracerProvider().Tracer("test").Start(context.Background(), "late")
	if sp.IsRecording() {
		t.Error("a span started after shutdown records")
	}
	sp.End()
}

// TestOff: no endpoint, no pipeline; its methods are safe on nil.
func TestOff(t *testing.T) {
	tr, err := New(config.Tracing{}, Options{})
	if tr != nil || err != nil {
		t.Fatalf("New(off) = %v, %v", tr, err)
	}
	if tr.TracerProvider() != nil || tr.Shutdown(context.Background()) != nil {
		t.Error("a nil Tracing is not off")
	}
}

// TestOTLPHTTP: the real exporter posts protobuf to the endpoint's path,
// with the service name, version and resource attributes, and the
// sampler's parent-based decisions: an unsampled parent is not exported.
func TestOTLPHTTP(t *testing.T) {
	srv, received := otlpSink(t)
	cfg := on()
	cfg.Endpoint, _ = url.Parse(srv.URL + "/otlp/v1/traces")
	cfg.ServiceName, cfg.Resource = "billing-sidecar", []config.Attribute{{Key: "deployment.environment.name", Value: "live"}}
	reg := prometheus.NewRegistry()
	tr, err := New(cfg, Options{Version: "1.2.3", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tracer := tr.TracerProvider().Tracer("test")
	_, sp := tracer.Start(context.Background(), "sampled")
	sp.End()
	unsampled := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true}))
	_, sp = tracer.Start(unsampled, "parent not sampled")
	sp.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	res := map[string]string{}
	for _, req := range received() {
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				res[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names = append(names, s.GetName())
				}
			}
		}
	}
	if len(names) != 1 || names[0] != "sampled" {
		t.Errorf("exported spans %v, want only the sampled one", names)
	}
	for k, v := range map[string]string{"service.name": "billing-sidecar", "service.version": "1.2.3", "deployment.environment.name": "live",
		"telemetry.sdk.language": "go"} {
		if res[k] != v {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, res[k], v, res)
		}
	}
	if n := counter(reg, "payrails_proxy_tracing_spans_exported_total", ""); n != 1 {
		t.Errorf("exported_total %v, want 1", n)
	}
}

// otlpSink is an OTLP/HTTP endpoint at /otlp/v1/traces that keeps what it
// receives (received returns it), checking that it is protobuf. An
// ExportTraceServiceRequest is read as the TracesData it is on the wire
// (encode_test.go).
func otlpSink(t *testing.T) (*httptest.Server, func() []*tracepb.TracesData) {
	var mu sync.Mutex
	var got []*tracepb.TracesData
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &tracepb.TracesData{}
		if r.URL.Path != "/otlp/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, req) != nil {
			t.Errorf("export to %s (%s) is not OTLP protobuf", r.URL.Path, r.Header.Get("Content-Type"))
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []*tracepb.TracesData {
		mu.Lock()
		defer mu.Unlock()
		return append([]*tracepb.TracesData(nil), got...)
	}
}

// partialExporter takes every batch but reports rejected spans of each.
type partialExporter struct{ rejected int64 }

func (e partialExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	return &PartialError{Rejected: e.rejected, Message: "too old"}
}

func (partialExporter) Shutdown(context.Context) error { return nil }

// TestPartialSuccessCounted: the spans a collector rejected count as
// failed exports, the rest of the batch as exported.
func TestPartialSuccessCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	tr, err := New(on(), Options{Exporter: partialExporter{rejected: 2}, Registerer: reg, Queue: 64, Batch: 5, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	spansOf(t, tr, 5)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exp, drop := counter(reg, "payrails_proxy_tracing_spans_exported_total", ""), dropped(reg, dropExportFailed); exp != 3 || drop != 2 {
		t.Errorf("exported %v, dropped %v; want 3 and 2", exp, drop)
	}
}

// TestFullBatchesGo: the spans go in batches of Batch as soon as a batch
// is waiting, with no interval passing; the rest wait for it (or for
// shutdown).
func TestFullBatchesGo(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{})}
	close(exp.release)
	reg := prometheus.NewRegistry()
	tr, err := New(on(), Options{Exporter: exp, Registerer: reg, Queue: 64, Batch: 4, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	spansOf(t, tr, 11)
	poll.Until(t, "two full batches", 5*time.Second, func() bool { return exp.exported.Load() == 8 })
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exp.exported.Load() != 11 || exp.calls.Load() != 3 {
		t.Errorf("%d spans in %d exports, want 11 in 3", exp.exported.Load(), exp.calls.Load())
	}
}

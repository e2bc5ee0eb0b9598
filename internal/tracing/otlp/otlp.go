// Package otlp turns tracing on: a tracer provider with the configured
// sampler and resource (the SDK's samplers and resource; spans of its own,
// provider.go and span.go, at half the SDK's cost a request), a bounded
// export queue (queue.go) and an OTLP/HTTP exporter (export.go, encode.go:
// protobuf written straight from the ended spans; DESIGN.md § Tracing,
// issue 27). cmd wires it: New from config.Tracing, the provider to the
// proxy, Shutdown after the proxy has stopped. What the spans are is
// internal/tracing's; the proxy's tests make them with the SDK's provider
// (sdk/trace/tracetest), and TestProviderAsSDK holds the two to the same
// spans.
package otlp

import (
	"context"
	"fmt"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Options are what New needs besides the configuration.
type Options struct {
	// Version is service.version.
	Version string
	// Registerer takes the export metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger gets export failures (rate-limited); nil means none.
	Logger *zap.Logger
	// Exporter replaces the OTLP/HTTP exporter (tests); nil means OTLP/HTTP
	// to the configured endpoint (export.go).
	Exporter sdktrace.SpanExporter
	// Queue, Batch and Interval size the export queue; zero means the
	// defaults (DefaultQueue, DefaultBatch, DefaultInterval).
	Queue, Batch int
	Interval     time.Duration
}

// Defaults of the export queue: at most DefaultQueue spans wait (about a
// kilobyte each); a batch goes out when DefaultBatch spans are waiting, or
// DefaultInterval after the last one. The batch is small because turning
// it into protobuf holds a CPU, which a sidecar may have only one of: with
// 512 spans at a time (the SDK's default) bench/tracing.sh saw c1's p99
// go from 2.1 ms off to 8.8 ms on.
const (
	DefaultQueue    = 2048
	DefaultBatch    = 128
	DefaultInterval = time.Second
)

// Tracing is the running pipeline. Its methods are safe for concurrent
// use; a nil *Tracing is tracing off.
type Tracing struct {
	tp *provider
}

// New starts the pipeline of cfg, or returns nil when cfg is off (no
// endpoint). It dials nothing: the first export does. Call Shutdown.
func New(cfg config.Tracing, o Options) (*Tracing, error) {
	if cfg.Endpoint == nil {
		return nil, nil
	}
	exp := o.Exporter
	if exp == nil {
		x, err := newExporter(cfg, o.Version)
		if err != nil {
			return nil, fmt.Errorf("tracing: the OTLP exporter for %s: %w", cfg, err)
		}
		exp = x
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	// The SDK reports what it cannot return (a partial success, say)
	// through its process-wide handler, which would write to stderr
	// outside the JSON log.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("OpenTelemetry", zap.Error(err))
	}))
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = config.DefaultExportTimeout
	}
	q := newQueue(exp, o, timeout, newMetrics(o.Registerer), log)
	return &Tracing{tp: newProvider(sampler(cfg), newResource(cfg, o.Version), q)}, nil
}

// TracerProvider is what the proxy makes its spans with; nil when t is.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.tp
}

// Shutdown sends the spans still queued and stops the exporter, within
// ctx: what is not sent when ctx ends is dropped and counted. Later spans
// are not recorded. A nil *Tracing does nothing.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.shutdown(ctx)
}

// sampler is cfg's: one of config.Samplers.
func sampler(cfg config.Tracing) sdktrace.Sampler {
	var s sdktrace.Sampler
	switch cfg.Sampler {
	case "always_on", "parentbased_always_on":
		s = sdktrace.AlwaysSample()
	case "always_off", "parentbased_always_off":
		s = sdktrace.NeverSample()
	default:
		s = sdktrace.TraceIDRatioBased(cfg.Ratio)
	}
	if cfg.Sampler == "always_on" || cfg.Sampler == "always_off" || cfg.Sampler == "traceidratio" {
		return s
	}
	return sdktrace.ParentBased(s)
}

// newResource is OTEL_RESOURCE_ATTRIBUTES' attributes, then the SDK's,
// service.name and service.version, a later one taking a key over an
// earlier one.
func newResource(cfg config.Tracing, version string) *resource.Resource {
	var attrs []attribute.KeyValue
	for _, a := range cfg.Resource {
		attrs = append(attrs, attribute.String(a.Key, a.Value))
	}
	attrs = append(attrs, semconv.TelemetrySDKLanguageGo, semconv.TelemetrySDKName("opentelemetry"),
		semconv.TelemetrySDKVersion(otel.Version()), semconv.ServiceName(cfg.ServiceName))
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	return resource.NewWithAttributes(semconv.SchemaURL, attrs...)
}

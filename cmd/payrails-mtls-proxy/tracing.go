package main

import (
	"context"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing/otlp"
	"go.uber.org/zap"
)

// startTracing starts the span export when tracing is on (issue 27).
func (a *app) startTracing() error {
	t, err := otlp.New(a.cfg.Tracing, otlp.Options{Version: version, Registerer: a.registry, Logger: a.log.Named("tracing")})
	if err != nil || t == nil {
		return err
	}
	a.tracing = t
	tc := a.cfg.Tracing
	a.log.Info("tracing: spans are exported over OTLP/HTTP", zap.String("endpoint", tc.String()),
		zap.String("from", tc.EndpointFrom), zap.String("sampler", tc.Sampler), zap.Float64("ratio", tc.Ratio),
		zap.String("service", tc.ServiceName))
	return nil
}

// stopTracing sends the spans still queued, within timeouts.shutdown, and
// stops the export (issue 27): after the proxy has stopped, so that the
// spans of the requests it finished go too.
func (a *app) stopTracing() {
	if a.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Timeouts.Shutdown)
	defer cancel()
	if err := a.tracing.Shutdown(ctx); err != nil {
		a.log.Warn("tracing: the export did not stop cleanly; queued spans may be lost", zap.Error(err))
	}
	a.tracing = nil
}

package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing/otlp"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The benchmarks run client, proxy and stand-in upstream in one process:
// use them to compare changes to the proxy (allocations per request, CPU
// profiles), not as absolute figures; bench/compare.sh measures the proxy
// alone against its peers.

func benchEnv(b *testing.B, h2 bool) (*env, *standin.Server) {
	ps := newPKI(b)
	up := startStandin(b, ps, func(o *standin.Options) { o.DisableHTTP2 = !h2 })
	// As in production: one JSON line per request at info level, written
	// (here to io.Discard), and Prometheus metrics.
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	e := startProxy(b, testConfig{Logger: log, Registry: prometheus.NewRegistry(),
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	return e, up
}

func benchRequests(b *testing.B, c *http.Client, url string) {
	benchCalls(b, func() (*http.Response, error) { return c.Get(url) })
}

// benchCalls runs call in parallel loops, checking each answer is a 200.
func benchCalls(b *testing.B, call func() (*http.Response, error)) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := call()
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkForward: absolute-form requests, as HTTP_PROXY clients send.
func BenchmarkForward(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		b.Run(fmt.Sprintf("http2=%v", h2), func(b *testing.B) {
			e, _ := benchEnv(b, h2)
			benchRequests(b, e.forwardClient(b), "http://"+hostA+"/bytes/200")
		})
	}
}

// BenchmarkGateway: origin-form requests to the proxy as a base URL.
func BenchmarkGateway(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		b.Run(fmt.Sprintf("http2=%v", h2), func(b *testing.B) {
			e, _ := benchEnv(b, h2)
			benchRequests(b, plainClient(b), e.url+"/bytes/200")
		})
	}
}

// BenchmarkPayment: the usual API call, a POST with a 1 KiB JSON body, in
// forward mode.
func BenchmarkPayment(b *testing.B) {
	payload := `{"amount":{"value":"10.00","currency":"EUR"},"meta":"` + strings.Repeat("x", 970) + `"}`
	for _, h2 := range []bool{false, true} {
		b.Run(fmt.Sprintf("http2=%v", h2), func(b *testing.B) {
			e, _ := benchEnv(b, h2)
			c := e.forwardClient(b)
			benchCalls(b, func() (*http.Response, error) {
				return c.Post("http://"+hostA+"/v1/payments", "application/json", strings.NewReader(payload))
			})
		})
	}
}

// BenchmarkBigBody: 1 MiB responses through the proxy.
func BenchmarkBigBody(b *testing.B) {
	e, _ := benchEnv(b, true)
	b.SetBytes(1 << 20)
	benchRequests(b, plainClient(b), e.url+"/bytes/1048576")
}

// BenchmarkTraced: BenchmarkForward's HTTP/1.1 request with every request
// traced and exported as in production (internal/tracing/otlp, OTLP/HTTP
// to a receiver in the process that only reads the body): what a traced
// request costs over BenchmarkForward/http2=false, allocations included
// (those of the export goroutine too: the benchmark counts the process's).
func BenchmarkTraced(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(sink.Close)
	endpoint, _ := url.Parse(sink.URL + "/v1/traces")
	tr, err := otlp.New(config.Tracing{Endpoint: endpoint, Sampler: "parentbased_traceidratio", Ratio: 1,
		ServiceName: config.DefaultServiceName}, otlp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	ps := newPKI(b)
	up := startStandin(b, ps, func(o *standin.Options) { o.DisableHTTP2 = true })
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	e := startProxy(b, testConfig{Logger: log, Registry: prometheus.NewRegistry(), Tracer: tr.TracerProvider(),
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	benchRequests(b, e.forwardClient(b), "http://"+hostA+"/bytes/200")
}

package otlp

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// twoSpans is a batch to export.
func twoSpans() []sdktrace.ReadOnlySpan {
	res := resource.NewSchemaless()
	return tracetest.SpanStubs{
		{Name: "a", SpanContext: sc(traceID, spanID, false, ""), Resource: res, InstrumentationScope: instrumentation.Scope{Name: "s"}},
		{Name: "b", SpanContext: sc(traceID, parentID, false, ""), Resource: res, InstrumentationScope: instrumentation.Scope{Name: "s"}},
	}.Snapshots()
}

// collectorAt is a tracing configuration exporting to srv.
func collectorAt(t *testing.T, srv *httptest.Server) config.Tracing {
	t.Helper()
	u, err := url.Parse(srv.URL + "/v1/traces")
	if err != nil {
		t.Fatal(err)
	}
	return config.Tracing{Endpoint: u, Timeout: config.DefaultExportTimeout}
}

// TestExportRequest: what the exporter sends: a POST of protobuf to the
// endpoint's path, gzipped when asked, with the configured headers.
func TestExportRequest(t *testing.T) {
	for _, gz := range []bool{false, true} {
		var got tracepb.TracesData
		var header http.Header
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			header = r.Header
			var body io.Reader = r.Body
			if r.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(r.Body)
				if err != nil {
					t.Error(err)
					return
				}
				body = zr
			}
			b, _ := io.ReadAll(body)
			if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &got) != nil {
				t.Errorf("%s %s: not an export", r.Method, r.URL.Path)
			}
		}))
		cfg := collectorAt(t, srv)
		cfg.Gzip = gz
		cfg.Headers = []config.Header{{Name: "Api-Key", Value: config.NewSecret("k-123")}}
		x, err := newExporter(cfg, "1.2.3")
		if err != nil {
			t.Fatal(err)
		}
		if err := x.ExportSpans(context.Background(), twoSpans()); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		want := map[string]string{"Api-Key": "k-123", "Content-Type": "application/x-protobuf", "User-Agent": "payrails-mtls-proxy/1.2.3"}
		if gz {
			want["Content-Encoding"] = "gzip"
		}
		for k, v := range want {
			if header.Get(k) != v {
				t.Errorf("gzip %v: header %s = %q, want %q", gz, k, header.Get(k), v)
			}
		}
		if n := len(got.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()); n != 2 {
			t.Errorf("gzip %v: %d spans received, want 2", gz, n)
		}
	}
}

// answer is one response of a scripted collector.
type answer struct {
	status     int
	retryAfter string
	body       []byte
	location   string
}

// scripted is a collector giving its answers in turn (the last one from
// then on), counting the tries.
func scripted(t *testing.T, answers ...answer) (*httptest.Server, *atomic.Int64) {
	var tries atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		a := answers[min(int(tries.Add(1))-1, len(answers)-1)]
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		if a.location != "" {
			w.Header().Set("Location", a.location)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	t.Cleanup(srv.Close)
	return srv, &tries
}

// status is a google.rpc.Status with msg, as a collector answers a failure.
func status(msg string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 3)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, msg)
}

// partial is an ExportTraceServiceResponse with a partial success.
func partial(rejected int64, msg string) []byte {
	var ps []byte
	ps = protowire.AppendTag(ps, 1, protowire.VarintType)
	ps = protowire.AppendVarint(ps, uint64(rejected))
	ps = protowire.AppendTag(ps, 2, protowire.BytesType)
	ps = protowire.AppendString(ps, msg)
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, ps)
}

// TestExportRetries: a busy or restarting collector (429, 502, 503, 504)
// is tried again, after its Retry-After when it gives one, within the
// export's timeout; any other answer is final.
func TestExportRetries(t *testing.T) {
	elsewhere, elsewhereTries := scripted(t, answer{status: 200})
	tests := []struct {
		name    string
		answers []answer
		timeout time.Duration
		tries   int64
		want    []string // in the error; none: success
		wait    time.Duration
	}{
		{name: "ok", answers: []answer{{status: 200}}, tries: 1},
		{name: "busy then ok", answers: []answer{{status: 429}, {status: 502}, {status: 504}, {status: 200}}, tries: 4},
		{name: "retry-after", answers: []answer{{status: 503, retryAfter: "1"}, {status: 200}}, tries: 2, wait: time.Second},
		{name: "retry-after past the timeout", answers: []answer{{status: 503, retryAfter: "3600"}}, timeout: 2 * time.Second, tries: 1,
			want: []string{"503", "not tried again", "export timeout"}},
		{name: "busy until the timeout", answers: []answer{{status: 503}}, timeout: 300 * time.Millisecond,
			want: []string{"503", "not tried again"}},
		{name: "bad request", answers: []answer{{status: 400, body: status("unknown field 99")}}, tries: 1,
			want: []string{"POST http://", "400 Bad Request", "unknown field 99"}},
		{name: "server error", answers: []answer{{status: 500}}, tries: 1, want: []string{"500"}},
		{name: "redirect", answers: []answer{{status: 307, location: elsewhere.URL + "/v1/traces"}}, tries: 1,
			want: []string{"307", "redirected to " + elsewhere.URL}},
		{name: "partial", answers: []answer{{status: 200, body: partial(1, "span too old")}}, tries: 1,
			want: []string{"rejected 1 spans", "span too old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, tries := scripted(t, tt.answers...)
			x, err := newExporter(collectorAt(t, srv), "test")
			if err != nil {
				t.Fatal(err)
			}
			x.backoff = 10 * time.Millisecond
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			began := time.Now()
			err = x.ExportSpans(ctx, twoSpans())
			took := time.Since(began)
			switch {
			case len(tt.want) == 0 && err != nil:
				t.Errorf("export failed: %v", err)
			case len(tt.want) > 0 && err == nil:
				t.Errorf("export succeeded, want an error with %q", tt.want)
			case err != nil:
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q, want it to contain %q", err, w)
					}
				}
			}
			if tt.tries > 0 && tries.Load() != tt.tries {
				t.Errorf("%d tries, want %d", tries.Load(), tt.tries)
			}
			if tt.tries == 0 && tries.Load() < 2 {
				t.Errorf("%d tries, want several within the timeout", tries.Load())
			}
			if took < tt.wait || took > tt.wait+5*time.Second {
				t.Errorf("the export took %s, want about %s", took, tt.wait)
			}
		})
	}
	if elsewhereTries.Load() != 0 {
		t.Error("the exporter followed a redirect")
	}
}

// TestRetryDelay: the retry policy alone.
func TestRetryDelay(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "http://c", Err: &netOpError{}}
	tests := []struct {
		name     string
		err      error
		tries    int
		again    bool
		min, max time.Duration
	}{
		{"success", nil, 0, false, 0, 0},
		{"429", &statusError{code: 429}, 0, true, 500 * time.Millisecond, time.Second},
		{"503 with Retry-After", &statusError{code: 503, retryAfter: 7 * time.Second}, 0, true, 7 * time.Second, 7 * time.Second},
		{"504 third try", &statusError{code: 504}, 2, true, 2 * time.Second, 4 * time.Second},
		{"502 capped", &statusError{code: 502}, 30, true, maxBackoff / 2, maxBackoff},
		{"400", &statusError{code: 400}, 0, false, 0, 0},
		{"500", &statusError{code: 500}, 0, false, 0, 0},
		{"refused", refused, 0, true, 500 * time.Millisecond, time.Second},
		{"deadline", &url.Error{Op: "Post", URL: "http://c", Err: context.DeadlineExceeded}, 0, false, 0, 0},
		{"partial", &PartialError{Rejected: 1}, 0, false, 0, 0},
		{"tls", &url.Error{Op: "Post", URL: "https://c", Err: &tls.CertificateVerificationError{Err: errors.New("unknown authority")}}, 0, false, 0, 0},
	}
	for _, tt := range tests {
		d, again := retryDelay(tt.err, tt.tries, firstBackoff)
		if again != tt.again || d < tt.min || d > tt.max {
			t.Errorf("%s: retryDelay = %s, %v; want %v within %s..%s", tt.name, d, again, tt.again, tt.min, tt.max)
		}
	}
	for v, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "-1": 0, "soon": 0, "99999999": time.Hour,
		time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat): 0} {
		if got := retryAfter(v); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", v, got, want)
		}
	}
	if d := retryAfter(time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)); d < 58*time.Second || d > time.Minute {
		t.Errorf("retryAfter(a date a minute ahead) = %s", d)
	}
}

// netOpError is a refused connection, as net/http reports it.
type netOpError struct{}

func (*netOpError) Error() string { return "dial tcp: connection refused" }
func (*netOpError) Unwrap() error { return errRefused }

// TestExportTLS: an https collector verified with the configured CA, to
// which the exporter presents the configured client certificate, read
// again for a new connection (a renewed pair is used without a restart);
// without the CA, the collector is refused at once, not tried again.
func TestExportTLS(t *testing.T) {
	ca, err := pki.NewCA("collector CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	issue := func(cn string, server bool) *pki.Leaf {
		l, err := ca.Issue(pki.LeafOptions{CommonName: cn, DNSNames: []string{"localhost"}, IPs: ipLoopback(), Server: server, Client: !server})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, ca.CertPEM)
	crt, key := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	writeLeaf := func(l *pki.Leaf) {
		writeFile(t, crt, l.CertPEM)
		writeFile(t, key, l.KeyPEM)
	}
	writeLeaf(issue("sidecar-1", false))
	var seen atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{issue("collector", true).TLS()}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	cfg := collectorAt(t, srv)
	cfg.CAFile = config.TracingFile{Path: caFile, Var: "OTEL_EXPORTER_OTLP_CERTIFICATE"}
	cfg.CertFile = config.TracingFile{Path: crt, Var: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"}
	cfg.KeyFile = config.TracingFile{Path: key, Var: "OTEL_EXPORTER_OTLP_CLIENT_KEY"}
	x, err := newExporter(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, cn := range []string{"sidecar-1", "sidecar-2"} {
		if err := x.ExportSpans(context.Background(), twoSpans()); err != nil {
			t.Fatal(err)
		}
		if seen.Load() != cn {
			t.Errorf("the collector saw client certificate %v, want %s", seen.Load(), cn)
		}
		writeLeaf(issue("sidecar-2", false))
		_ = x.Shutdown(context.Background()) // the next export opens a new connection
	}

	cfg.CAFile = config.TracingFile{}
	x, err = newExporter(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	x.backoff = time.Hour
	if err := x.ExportSpans(context.Background(), twoSpans()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("export to a collector of an unknown CA: %v", err)
	}

	writeFile(t, caFile, []byte("not PEM"))
	cfg.CAFile = config.TracingFile{Path: caFile, Var: "OTEL_EXPORTER_OTLP_CERTIFICATE"}
	if _, err := newExporter(cfg, "test"); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_CERTIFICATE") {
		t.Errorf("a CA file without PEM: %v", err)
	}
}

// TestNeverThroughProxy: the exports never go through HTTP_PROXY, which
// in a pod often names this sidecar.
func TestNeverThroughProxy(t *testing.T) {
	srv, _ := scripted(t, answer{status: 200})
	c, err := newClient(collectorAt(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if tr, ok := c.Transport.(*http.Transport); !ok || tr.Proxy != nil {
		t.Errorf("the exporter's transport %T has a proxy function", c.Transport)
	}
}

var errRefused = syscall.ECONNREFUSED

func ipLoopback() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} }

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

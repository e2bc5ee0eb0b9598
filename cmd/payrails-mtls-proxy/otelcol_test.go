package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// otelcolDir is where .ci/otelcol.sh builds the collector by default.
const otelcolDir = "/var/cache/payrails-mtls-proxy-ci/otelcol"

// otelcol returns the collector .ci/otelcol.sh built from the manifest in
// this checkout: DIR/<version>-<hash of the manifest>/otelcol-payrails.
// Without it the test skips (fails under PAYRAILS_PROXY_REQUIRE_INTEROP=1).
func otelcol(t *testing.T) string {
	t.Helper()
	manifest, err := os.ReadFile("../../.ci/otelcol-builder.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^  version: (\S+)$`).FindSubmatch(manifest)
	if m == nil {
		t.Fatal(".ci/otelcol-builder.yaml has no dist version")
	}
	sum := sha256.Sum256(manifest)
	dir := os.Getenv("PAYRAILS_PROXY_OTELCOL_DIR")
	if dir == "" {
		dir = otelcolDir
	}
	bin := filepath.Join(dir, string(m[1])+"-"+hex.EncodeToString(sum[:])[:12], "otelcol-payrails")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	how := "build it with `bash .ci/otelcol.sh " + dir + "` (the collector's builder, a few minutes)"
	if interop.Required() {
		t.Fatalf("the OpenTelemetry Collector %s is required (%s=1) but missing: %s", bin, interop.EnvRequire, how)
	}
	t.Skipf("no OpenTelemetry Collector at %s: %s", bin, how)
	return ""
}

// startCollector runs the collector with the OTLP/HTTP receiver on a free
// loopback port and the file exporter writing to out; it returns the
// receiver's base URL. The collector is stopped when the test ends.
func startCollector(t *testing.T, bin, out string) string {
	t.Helper()
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
exporters:
  file:
    path: %s
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`, addr, out)
	cfgPath := filepath.Join(t.TempDir(), "otelcol.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", "file:"+cfgPath)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("collector output:\n%s", stderr.String())
		}
	})
	poll.Until(t, "the collector's OTLP/HTTP receiver", 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr
}

// otlpSpan is a span as the file exporter writes it (OTLP/JSON).
type otlpSpan struct {
	TraceID, SpanID, ParentSpanID, Name string
	Kind                                int
	Attributes                          []struct {
		Key   string
		Value map[string]any
	}
	Status struct{ Code int }
}

func (s otlpSpan) attr(key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			for _, v := range a.Value {
				return fmt.Sprint(v)
			}
		}
	}
	return ""
}

// collected reads the spans the collector wrote, and service.name.
func collected(t *testing.T, path string) ([]otlpSpan, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil, ""
	}
	defer f.Close()
	var spans []otlpSpan
	service := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var line struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []struct {
						Key   string
						Value struct{ StringValue string }
					}
				}
				ScopeSpans []struct{ Spans []otlpSpan }
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("the collector's file holds a line that is not OTLP/JSON: %v", err)
		}
		for _, rs := range line.ResourceSpans {
			for _, a := range rs.Resource.Attributes {
				if a.Key == "service.name" {
					service = a.Value.StringValue
				}
			}
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
	}
	return spans, service
}

// postTraced sends a payment with the client's traceparent and values
// that must never reach a span.
func postTraced(t *testing.T, r *running, traceparent string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+apiHost+"/v1/payments?card=qry-secret-1", strings.NewReader(`{"pan":"body-secret-2"}`))
	req.Header.Set("Traceparent", traceparent)
	req.Header.Set("X-Api-Key", "hdr-secret-3")
	resp, err := r.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestTracingCollector: the app exports its spans over OTLP/HTTP to a real
// OpenTelemetry Collector (built with the collector's builder), which
// writes them to a file: a forward-mode request's server span continues
// the client's traceparent, its send and the new connection's spans are
// below it, and nothing secret was written. The spans in flight at
// shutdown are flushed. Once as they are, once gzipped with a header, as
// OTEL_EXPORTER_OTLP_COMPRESSION and _HEADERS ask (internal/tracing/otlp's
// own exporter, issue 27).
func TestTracingCollector(t *testing.T) {
	bin := otelcol(t)
	for name, env := range map[string]map[string]string{
		"plain": nil,
		"gzip":  {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-team=payments"},
	} {
		t.Run(name, func(t *testing.T) { tracingCollector(t, bin, env) })
	}
}

func tracingCollector(t *testing.T, bin string, env map[string]string) {
	out := filepath.Join(t.TempDir(), "spans.jsonl")
	endpoint := startCollector(t, bin, out)
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	if _, _, err := leaf.WriteFiles(w.certDir, "domain.pem", "domain.key"); err != nil {
		t.Fatal(err)
	}
	// No warm connection and no verification: the request opens the connection, so that its
	// connect, handshake and first-byte spans are there.
	r := startAppEnv(t, w.configFile(t, "    warm_connections: 0\nreload: {verify: false}\n"+
		"tracing: {otlp_endpoint: '"+endpoint+"', sample_ratio: 1.0}\n"), env)
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	postTraced(t, r, "00-"+traceID+"-"+parentID+"-01")
	r.stop() // the spans go at shutdown at the latest
	var spans []otlpSpan
	var service string
	defer func() {
		if t.Failed() {
			for _, l := range r.logs.All() {
				t.Logf("app log: %s %v", l.Message, l.ContextMap())
			}
		}
	}()
	poll.Until(t, "the collector to write the request's spans", 20*time.Second, func() bool {
		spans, service = collected(t, out)
		return len(spans) >= 5
	})
	byName := map[string]otlpSpan{}
	for _, s := range spans {
		if s.TraceID != traceID {
			t.Errorf("span %q in trace %s, want the client's %s", s.Name, s.TraceID, traceID)
		}
		byName[fmt.Sprintf("%s/%d", s.Name, s.Kind)] = s
	}
	server, send := byName["POST/2"], byName["POST/3"] // SPAN_KIND_SERVER, SPAN_KIND_CLIENT
	if server.ParentSpanID != parentID || send.ParentSpanID != server.SpanID || server.SpanID == "" {
		t.Fatalf("server span %+v under %s, send span under %s; want the client's %s, then the server span", server, server.ParentSpanID,
			send.ParentSpanID, parentID)
	}
	for _, name := range []string{"connect/1", "tls handshake/1", "first byte/1"} { // SPAN_KIND_INTERNAL
		if byName[name].ParentSpanID != send.SpanID {
			t.Errorf("span %s is not below the send (spans: %v)", name, byName)
		}
	}
	for k, v := range map[string]string{"url.path": "/v1/payments", "http.response.status_code": "200", "payrails.proxy.attempts": "1",
		"payrails.certificate.serial": serialOf(leaf), "server.address": apiHost} {
		if got := server.attr(k); got != v {
			t.Errorf("server span %s = %q, want %q", k, got, v)
		}
	}
	if service != "payrails-mtls-proxy" {
		t.Errorf("service.name %q", service)
	}
	raw, _ := os.ReadFile(out)
	for _, secret := range []string{"qry-secret-1", "body-secret-2", "hdr-secret-3"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the collector got %q", secret)
		}
	}
}

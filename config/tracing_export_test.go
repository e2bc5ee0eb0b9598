package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestTracingExport: the exporter's variables, the traces one over the
// general one; header values percent-decoded and kept as secrets.
func TestTracingExport(t *testing.T) {
	dir := t.TempDir()
	ca, crt, key := writeFile(t, dir, "ca.pem", "x"), writeFile(t, dir, "c.pem", "x"), writeFile(t, dir, "k.pem", "x")
	tests := []struct {
		name    string
		env     map[string]string
		headers []Header
		timeout time.Duration
		gzip    bool
		files   [3]TracingFile
	}{
		{name: "defaults", timeout: DefaultExportTimeout},
		{name: "general", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%3Dcr%2Cet , x-team = pay ments,",
			"OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
			headers: []Header{{"Api-Key", NewSecret("s=cr,et")}, {"X-Team", NewSecret("pay ments")}}, timeout: 2500 * time.Millisecond, gzip: true},
		{name: "traces over general", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2",
			"OTEL_EXPORTER_OTLP_TIMEOUT": "1", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "30000", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
			"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none"},
			headers: []Header{{"B", NewSecret("2")}}, timeout: 30 * time.Second},
		{name: "files", env: map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": ca, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": crt,
			"OTEL_EXPORTER_OTLP_CLIENT_KEY": key}, timeout: DefaultExportTimeout,
			files: [3]TracingFile{{ca, "OTEL_EXPORTER_OTLP_CERTIFICATE"}, {crt, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE"},
				{key, "OTEL_EXPORTER_OTLP_CLIENT_KEY"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{otelEndpoint: "https://c.example:4318"}
			for k, v := range tt.env {
				m[k] = v
			}
			tc := mustLoad(t, oneUpstream, env(m), Overrides{}).Tracing
			if !reflect.DeepEqual(tc.Headers, tt.headers) || tc.Timeout != tt.timeout || tc.Gzip != tt.gzip {
				t.Errorf("headers %v (%d) timeout %s gzip %v, want %v (%d) %s %v", tc.Headers, len(tc.Headers), tc.Timeout, tc.Gzip,
					tt.headers, len(tt.headers), tt.timeout, tt.gzip)
			}
			if got := [3]TracingFile{tc.CAFile, tc.CertFile, tc.KeyFile}; got != tt.files {
				t.Errorf("files %v, want %v", got, tt.files)
			}
		})
	}
}

// TestTracingExportErrors: a bad exporter variable is an error naming it
// and saying what to write; a header's value is never echoed.
func TestTracingExportErrors(t *testing.T) {
	dir := t.TempDir()
	crt := writeFile(t, dir, "c.pem", "x")
	tests := []struct {
		name     string
		endpoint string
		env      map[string]string
		want     []string
	}{
		{"timeout text", "", map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, []string{"env OTEL_EXPORTER_OTLP_TIMEOUT", "milliseconds"}},
		{"timeout zero", "", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}, []string{"env OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "from 1"}},
		{"compression", "", map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, []string{"env OTEL_EXPORTER_OTLP_COMPRESSION", "gzip or none"}},
		{"header without =", "", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=1,hunter2"}, []string{"env OTEL_EXPORTER_OTLP_HEADERS", "item 2"}},
		{"header name", "", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "bad name=hunter2"}, []string{"item 1", "header name"}},
		{"header value", "", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "key=hunt%0Aer2"}, []string{"env OTEL_EXPORTER_OTLP_TRACES_HEADERS",
			"item 1 (Key)", "percent-encode"}},
		{"header escape", "", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "key=hunter2%zz"}, []string{"item 1 (Key)"}},
		{"missing file", "", map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": filepath.Join(dir, "nope.pem")},
			[]string{"env OTEL_EXPORTER_OTLP_CERTIFICATE", "does not exist"}},
		{"certificate without key", "", map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": crt},
			[]string{"env OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_KEY"}},
		{"key without certificate", "", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": crt},
			[]string{"env OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"}},
		{"TLS files with http", "http://c:4318", map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": crt},
			[]string{"env OTEL_EXPORTER_OTLP_CERTIFICATE", "https://"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{otelEndpoint: "https://c.example:4318"}
			if tt.endpoint != "" {
				m[otelEndpoint] = tt.endpoint
			}
			for k, v := range tt.env {
				m[k] = v
			}
			path := writeFile(t, t.TempDir(), "proxy.yaml", oneUpstream)
			_, err := Parse([]byte(oneUpstream), path, env(m), Overrides{}, true)
			e := findError(t, err, "tracing")
			contains(t, "error", e.Error(), tt.want...)
			if strings.Contains(err.Error(), "hunt") {
				t.Errorf("error %q echoes a header's value", err)
			}
		})
	}
}

// TestTracingHeadersRedacted: a printed Tracing never shows a header's
// value.
func TestTracingHeadersRedacted(t *testing.T) {
	tc := mustLoad(t, oneUpstream, env(map[string]string{otelEndpoint: "https://c.example", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=hunter2"}),
		Overrides{}).Tracing
	for _, s := range []string{tc.String(), fmt.Sprintf("%v", tc), fmt.Sprintf("%+v", tc), fmt.Sprintf("%#v", tc)} {
		if strings.Contains(s, "hunt") {
			t.Errorf("%q shows a header's value", s)
		}
	}
}

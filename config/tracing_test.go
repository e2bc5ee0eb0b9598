package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestTracing: off by default; on with tracing.otlp_endpoint or the
// standard variables, which beat the file (the traces one, taken as it
// is, beats the other); the sampler, service and resource from OTEL_*.
func TestTracing(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		env      map[string]string
		endpoint string // "" means off
		from     string
		sampler  string
		ratio    float64
		service  string
		resource []Attribute
	}{
		{name: "off by default", sampler: defaultSampler, ratio: 1, service: DefaultServiceName},
		{name: "ratio without endpoint is off", file: "tracing: {sample_ratio: 0.5}\n", sampler: defaultSampler, ratio: 0.5, service: DefaultServiceName},
		{name: "file", file: "tracing: {otlp_endpoint: 'http://127.0.0.1:4318', sample_ratio: 0.25}\n",
			endpoint: "http://127.0.0.1:4318/v1/traces", from: "tracing.otlp_endpoint", sampler: defaultSampler, ratio: 0.25, service: DefaultServiceName},
		{name: "file with a path", file: "tracing: {otlp_endpoint: 'https://otel.example/otlp/'}\n",
			endpoint: "https://otel.example/otlp/v1/traces", from: "tracing.otlp_endpoint", sampler: defaultSampler, ratio: 1, service: DefaultServiceName},
		{name: "env beats file", file: "tracing: {otlp_endpoint: 'http://file:4318'}\n", env: map[string]string{otelEndpoint: "http://env:4318"},
			endpoint: "http://env:4318/v1/traces", from: otelEndpoint, sampler: defaultSampler, ratio: 1, service: DefaultServiceName},
		{name: "traces endpoint as it is", env: map[string]string{otelEndpoint: "http://env:4318", otelTracesEndpoint: "http://traces:4318/custom"},
			endpoint: "http://traces:4318/custom", from: otelTracesEndpoint, sampler: defaultSampler, ratio: 1, service: DefaultServiceName},
		{name: "sdk disabled", env: map[string]string{otelEndpoint: "http://env:4318", "OTEL_SDK_DISABLED": "true"},
			sampler: defaultSampler, ratio: 1, service: DefaultServiceName},
		{name: "sampler and resource", file: "tracing: {otlp_endpoint: 'http://c:4318', sample_ratio: 0.5}\n",
			env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1",
				"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs, deployment.environment.name=live,team=pay%20ments",
				"OTEL_SERVICE_NAME":        "billing-sidecar"},
			endpoint: "http://c:4318/v1/traces", from: "tracing.otlp_endpoint", sampler: "traceidratio", ratio: 0.1, service: "billing-sidecar",
			resource: []Attribute{{"deployment.environment.name", "live"}, {"team", "pay ments"}}},
		{name: "service from resource", env: map[string]string{otelEndpoint: "http://c:4318", "OTEL_RESOURCE_ATTRIBUTES": "service.name=a"},
			endpoint: "http://c:4318/v1/traces", from: otelEndpoint, sampler: defaultSampler, ratio: 1, service: "a"},
		{name: "sampler arg ignored for always_on", env: map[string]string{otelEndpoint: "http://c:4318", "OTEL_TRACES_SAMPLER": "always_on",
			"OTEL_TRACES_SAMPLER_ARG": "nonsense"}, endpoint: "http://c:4318/v1/traces", from: otelEndpoint, sampler: "always_on", ratio: 1, service: DefaultServiceName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustLoad(t, tt.file+oneUpstream, env(tt.env), Overrides{})
			tc := cfg.Tracing
			got := ""
			if tc.Endpoint != nil {
				got = tc.Endpoint.String()
			}
			if got != tt.endpoint || tc.EndpointFrom != tt.from {
				t.Errorf("endpoint %q from %q, want %q from %q", got, tc.EndpointFrom, tt.endpoint, tt.from)
			}
			if tc.Sampler != tt.sampler || tc.Ratio != tt.ratio || tc.ServiceName != tt.service || !reflect.DeepEqual(tc.Resource, tt.resource) {
				t.Errorf("sampler %q ratio %v service %q resource %v, want %q %v %q %v", tc.Sampler, tc.Ratio, tc.ServiceName, tc.Resource,
					tt.sampler, tt.ratio, tt.service, tt.resource)
			}
		})
	}
}

// TestTracingErrors: a bad endpoint, ratio, sampler, protocol or resource
// is a configuration error naming the key and where the value came from;
// credentials in the URL are refused, and never echoed.
func TestTracingErrors(t *testing.T) {
	on := map[string]string{otelEndpoint: "http://127.0.0.1:4318"}
	with := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range on {
			out[k] = v
		}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name, file string
		env        map[string]string
		key        string
		want       []string
		never      string
	}{
		{"no scheme", "tracing: {otlp_endpoint: '127.0.0.1:4318'}\n", nil, "tracing.otlp_endpoint", []string{"file ", "http://", "4318"}, ""},
		{"grpc scheme", "tracing: {otlp_endpoint: 'grpc://c:4317'}\n", nil, "tracing.otlp_endpoint", []string{"OTLP over HTTP"}, ""},
		{"no host", "tracing: {otlp_endpoint: 'http://:4318'}\n", nil, "tracing.otlp_endpoint", []string{"no host"}, ""},
		{"user info", "tracing: {otlp_endpoint: 'https://me:hunter2@c.example'}\n", nil, "tracing.otlp_endpoint",
			[]string{"OTEL_EXPORTER_OTLP_HEADERS"}, "hunter2"},
		{"query", "tracing: {otlp_endpoint: 'https://c.example/?api_key=hunter2'}\n", nil, "tracing.otlp_endpoint",
			[]string{"query", "OTEL_EXPORTER_OTLP_HEADERS"}, "hunter2"},
		{"bad port", "tracing: {otlp_endpoint: 'http://c:99999'}\n", nil, "tracing.otlp_endpoint", []string{"1 to 65535"}, ""},
		{"env endpoint", "", map[string]string{otelEndpoint: "localhost"}, "tracing.otlp_endpoint", []string{"env " + otelEndpoint}, ""},
		{"ratio", "tracing: {sample_ratio: 2}\n", nil, "tracing.sample_ratio", []string{"0 to 1"}, ""},
		{"ratio text", "tracing: {sample_ratio: half}\n", nil, "tracing.sample_ratio", []string{"0 to 1"}, ""},
		{"sampler arg", "", with(map[string]string{"OTEL_TRACES_SAMPLER_ARG": "-1"}), "tracing.sample_ratio",
			[]string{"env OTEL_TRACES_SAMPLER_ARG"}, ""},
		{"sampler", "", with(map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}), "tracing",
			[]string{"env OTEL_TRACES_SAMPLER", "parentbased_traceidratio"}, ""},
		{"grpc protocol", "", with(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}), "tracing",
			[]string{"env OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "4318"}, ""},
		{"resource", "", with(map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "a=1,secretvalue"}), "tracing",
			[]string{"env OTEL_RESOURCE_ATTRIBUTES", "item 2"}, "secretvalue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseErr(t, tt.file+oneUpstream, env(tt.env), Overrides{})
			e := findError(t, err, tt.key)
			contains(t, "error", e.Error(), tt.want...)
			if tt.never != "" && strings.Contains(err.Error(), tt.never) {
				t.Errorf("error %q echoes %q", err, tt.never)
			}
		})
	}
}

// TestTracingOffIgnoresOTEL: with tracing off, the other OTEL_* variables
// are not read, so a value meant for another program sharing the
// environment does not stop the proxy.
func TestTracingOffIgnoresOTEL(t *testing.T) {
	cfg := mustLoad(t, oneUpstream, env(map[string]string{"OTEL_TRACES_SAMPLER": "xray", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}), Overrides{})
	if cfg.Tracing.Endpoint != nil {
		t.Errorf("tracing on: %v", cfg.Tracing)
	}
}

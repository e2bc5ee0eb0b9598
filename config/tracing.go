package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Tracing configures OpenTelemetry tracing (DESIGN.md § Tracing). It is
// off (Endpoint nil) unless tracing.otlp_endpoint or one of the standard
// OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT variables is set; the other OTEL_*
// variables the proxy honours are read, and validated, only when it is on.
type Tracing struct {
	// Endpoint is the URL spans are POSTed to, OTLP over HTTP
	// (http/protobuf): tracing.otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT
	// with /v1/traces appended to its path, or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is. http or https, a host,
	// no user information, query or fragment. nil means tracing is off.
	Endpoint *url.URL
	// EndpointFrom names the setting Endpoint came from, for the start-up
	// log line: "tracing.otlp_endpoint" or the variable.
	EndpointFrom string
	// Sampler is one of the OTEL_TRACES_SAMPLER names the proxy supports
	// (Samplers); default "parentbased_traceidratio": a request whose
	// client sent a traceparent is sampled when the client's span was, any
	// other with probability Ratio.
	Sampler string
	// Ratio is the probability of the ratio samplers, 0..1:
	// OTEL_TRACES_SAMPLER_ARG, else tracing.sample_ratio. Default 1.
	Ratio float64
	// ServiceName is the service.name of every span: OTEL_SERVICE_NAME,
	// else service.name in OTEL_RESOURCE_ATTRIBUTES, else
	// "payrails-mtls-proxy".
	ServiceName string
	// Resource are the other attributes of OTEL_RESOURCE_ATTRIBUTES, in
	// their order, values percent-decoded; service.name is left out.
	Resource []Attribute

	// How spans are sent (tracing_export.go): each from
	// OTEL_EXPORTER_OTLP_TRACES_<NAME>, else OTEL_EXPORTER_OTLP_<NAME>.

	// Headers go with every export: _HEADERS, name=value pairs separated
	// by commas, values percent-encoded; later ones take a name over. The
	// values are secrets.
	Headers []Header
	// Timeout bounds one export, its retries included: _TIMEOUT, in
	// milliseconds. Default DefaultExportTimeout.
	Timeout time.Duration
	// Gzip compresses each export: _COMPRESSION gzip; none (the default)
	// sends it as it is.
	Gzip bool
	// CAFile verifies an https endpoint instead of the system's roots:
	// _CERTIFICATE. CertFile and KeyFile are the client certificate the
	// exporter presents: _CLIENT_CERTIFICATE and _CLIENT_KEY, both or
	// neither. PEM files; https endpoints only.
	CAFile, CertFile, KeyFile TracingFile
}

// Attribute is one key=value of OTEL_RESOURCE_ATTRIBUTES.
type Attribute struct{ Key, Value string }

// Samplers are the values of OTEL_TRACES_SAMPLER the proxy supports (the
// OpenTelemetry SDK's built-in ones; jaeger_remote and xray are not).
var Samplers = []string{"parentbased_traceidratio", "parentbased_always_on", "parentbased_always_off",
	"traceidratio", "always_on", "always_off"}

// DefaultServiceName is Tracing.ServiceName's default.
const DefaultServiceName = "payrails-mtls-proxy"

const (
	defaultSampler     = "parentbased_traceidratio"
	defaultSampleRatio = 1.0
	tracesPath         = "/v1/traces"
	otelEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	otelTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)

// applyTracingEnv takes the standard OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT
// variables over tracing.otlp_endpoint, as any environment variable is
// over the file; the traces one, used as it is, over the other.
func applyTracingEnv(r *raw, env lookupFunc) {
	for _, name := range []string{otelEndpoint, otelTracesEndpoint} {
		if v, ok := env.get(name); ok {
			r.tracingEndpoint = setting{value: v, set: true, at: origin{source: "env " + name, key: "tracing.otlp_endpoint"}}
			r.tracingExact = name == otelTracesEndpoint
		}
	}
}

// tracing validates the tracing block and the OTEL_* variables.
func (b *builder) tracing(r *raw) Tracing {
	t := Tracing{Sampler: defaultSampler, Ratio: b.ratio(r.tracingRatio, defaultSampleRatio), ServiceName: DefaultServiceName}
	s := r.tracingEndpoint
	if !s.set {
		return t
	}
	if v, ok := b.env.get("OTEL_SDK_DISABLED"); ok && strings.EqualFold(strings.TrimSpace(v), "true") {
		return t
	}
	t.Endpoint = b.otlpEndpoint(s, r.tracingExact)
	t.EndpointFrom = s.at.key
	if strings.HasPrefix(s.at.source, "env ") {
		t.EndpointFrom = strings.TrimPrefix(s.at.source, "env ")
	}
	b.otlpProtocol()
	if v, ok := b.env.get("OTEL_TRACES_SAMPLER"); ok {
		t.Sampler = strings.ToLower(strings.TrimSpace(v))
		b.oneOf(setting{value: t.Sampler, set: true, at: envAt("OTEL_TRACES_SAMPLER", "tracing")}, Samplers...)
	}
	if v, ok := b.env.get("OTEL_TRACES_SAMPLER_ARG"); ok && strings.HasSuffix(t.Sampler, "traceidratio") {
		t.Ratio = b.ratio(setting{value: v, set: true, at: envAt("OTEL_TRACES_SAMPLER_ARG", "tracing.sample_ratio")}, t.Ratio)
	}
	t.Resource, t.ServiceName = b.resource()
	otlpVars{&b.values, b.env}.read(&t)
	return t
}

func envAt(name, key string) origin { return origin{source: "env " + name, key: key} }

// otlpEndpoint parses an OTLP/HTTP base URL (or, exact, the traces URL
// itself).
func (b *builder) otlpEndpoint(s setting, exact bool) *url.URL {
	v := strings.TrimSpace(s.value)
	u, err := url.Parse(v)
	const example = "write the collector's OTLP/HTTP base URL, such as http://127.0.0.1:4318"
	switch {
	case err != nil:
		b.addCause(s.at, err, "%q is not a URL; %s", v, example)
		return nil
	case u.Scheme != "http" && u.Scheme != "https":
		b.add(s.at, "%q must start with http:// or https:// (OTLP over HTTP; the gRPC port 4317 is not supported); %s", v, example)
		return nil
	case u.Host == "" || u.Hostname() == "":
		b.add(s.at, "%q has no host; %s", v, example)
		return nil
	case u.User != nil:
		b.add(s.at, "the OTLP endpoint must not carry a user or password; pass credentials in OTEL_EXPORTER_OTLP_HEADERS")
		return nil
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		b.add(s.at, "%q must not have a query or fragment; pass credentials in OTEL_EXPORTER_OTLP_HEADERS", u.Scheme+"://"+u.Host+u.Path)
		return nil
	}
	if _, ok := parsePort(u.Port(), 1); u.Port() != "" && !ok {
		b.add(s.at, "%q has port %q; the port must be a number from 1 to 65535", v, u.Port())
		return nil
	}
	if !exact {
		u.Path = strings.TrimSuffix(u.Path, "/") + tracesPath
		u.RawPath = ""
	} else if u.Path == "" {
		u.Path = "/"
	}
	return u
}

// otlpProtocol refuses an OTLP protocol other than http/protobuf: the
// proxy would send HTTP to a gRPC port.
func (b *builder) otlpProtocol() {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if v, ok := b.env.get(name); ok && strings.TrimSpace(v) != "http/protobuf" {
			b.add(envAt(name, "tracing"), "%q is not supported: the proxy exports OTLP over HTTP only; set http/protobuf "+
				"(or unset it) and point the endpoint at the collector's OTLP/HTTP port (4318 by default)", v)
		}
	}
}

// ratio parses a probability, 0..1.
func (b *values) ratio(s setting, def float64) float64 {
	if !s.set {
		return def
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s.value), 64)
	if err != nil || f < 0 || f > 1 || f != f {
		b.add(s.at, "%q is not a ratio; write a number from 0 to 1 (0.1 samples one request in ten)", s.value)
		return def
	}
	return f
}

// resource reads OTEL_RESOURCE_ATTRIBUTES (key=value pairs separated by
// commas, values percent-encoded) and OTEL_SERVICE_NAME. A malformed pair
// is an error that names its position, never its value.
func (b *builder) resource() ([]Attribute, string) {
	service := DefaultServiceName
	var attrs []Attribute
	if v, ok := b.env.get("OTEL_RESOURCE_ATTRIBUTES"); ok {
		at := envAt("OTEL_RESOURCE_ATTRIBUTES", "tracing")
		for i, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			k, val, ok := strings.Cut(item, "=")
			k = strings.TrimSpace(k)
			dec, err := url.PathUnescape(strings.TrimSpace(val))
			if !ok || k == "" || err != nil {
				b.add(at, "item %d is not key=value with a percent-encoded value; write pairs such as "+
					"deployment.environment.name=live,service.namespace=payments", i+1)
				continue
			}
			if k == "service.name" {
				service = dec
				continue
			}
			attrs = append(attrs, Attribute{Key: k, Value: dec})
		}
	}
	if v, ok := b.env.get("OTEL_SERVICE_NAME"); ok {
		service = strings.TrimSpace(v)
	}
	return attrs, service
}

// String is the endpoint for messages: its scheme, host and path only.
func (t Tracing) String() string {
	if t.Endpoint == nil {
		return "off"
	}
	return fmt.Sprintf("%s://%s%s", t.Endpoint.Scheme, t.Endpoint.Host, t.Endpoint.Path)
}

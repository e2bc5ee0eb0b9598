package config

import (
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The OTLP exporter's own variables (issue 27): how spans are sent, each
// read as OTEL_EXPORTER_OTLP_TRACES_<NAME>, else OTEL_EXPORTER_OTLP_<NAME>,
// as the OpenTelemetry specification has it for a per-signal variable.
// Read, like every OTEL_* variable, only when tracing is on.

// Header is one header of OTEL_EXPORTER_OTLP_[TRACES_]HEADERS. Its value is
// a credential (a hosted backend's API key, say): a Secret, never printed.
type Header struct {
	Name  string // canonical form
	Value Secret
}

// TracingFile is a PEM file the exporter reads, with the variable that
// named it (for the messages about it).
type TracingFile struct {
	Path string // absolute; "" when unset
	Var  string // OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE, say
}

// DefaultExportTimeout is Tracing.Timeout's default, the specification's.
const DefaultExportTimeout = 10 * time.Second

const otlpPrefix = "OTEL_EXPORTER_OTLP_"

// otlpVars reads the exporter's variables: a concern of its own, apart
// from builder's.
type otlpVars struct {
	*values
	env lookupFunc
}

// otlpVar returns the value of OTEL_EXPORTER_OTLP_TRACES_<name>, else of
// OTEL_EXPORTER_OTLP_<name>, with the variable's name; ok is false when
// neither is set.
func (b otlpVars) otlpVar(name string) (value, from string, ok bool) {
	for _, v := range []string{otlpPrefix + "TRACES_" + name, otlpPrefix + name} {
		if value, ok := b.env.get(v); ok {
			return value, v, true
		}
	}
	return "", "", false
}

// read reads the exporter's variables into t, whose Endpoint is set: the
// certificate variables apply to an https one only.
func (b otlpVars) read(t *Tracing) {
	t.Timeout = DefaultExportTimeout
	if v, from, ok := b.otlpVar("TIMEOUT"); ok {
		ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || ms <= 0 || ms > int64(time.Hour/time.Millisecond) {
			b.add(envAt(from, "tracing"), "%q is not a timeout; write a whole number of milliseconds from 1 to 3600000 "+
				"(10000, the default, is 10 s)", v)
		} else {
			t.Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if v, from, ok := b.otlpVar("COMPRESSION"); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "gzip":
			t.Gzip = true
		case "none":
		default:
			b.add(envAt(from, "tracing"), "%q is not supported; write gzip or none (the default)", v)
		}
	}
	if v, from, ok := b.otlpVar("HEADERS"); ok {
		t.Headers = b.otlpHeaders(v, envAt(from, "tracing"))
	}
	t.CAFile = b.otlpFile("CERTIFICATE")
	t.CertFile = b.otlpFile("CLIENT_CERTIFICATE")
	t.KeyFile = b.otlpFile("CLIENT_KEY")
	switch {
	case t.CertFile.Path != "" && t.KeyFile.Path == "":
		b.add(envAt(t.CertFile.Var, "tracing"), "the client certificate has no key; set %sCLIENT_KEY to its PEM key file too, "+
			"or unset both", otlpPrefix)
	case t.KeyFile.Path != "" && t.CertFile.Path == "":
		b.add(envAt(t.KeyFile.Var, "tracing"), "the client key has no certificate; set %sCLIENT_CERTIFICATE to its PEM "+
			"certificate file too, or unset both", otlpPrefix)
	}
	if t.Endpoint == nil || t.Endpoint.Scheme == "https" {
		return
	}
	for _, f := range []TracingFile{t.CAFile, t.CertFile} {
		if f.Path != "" {
			b.add(envAt(f.Var, "tracing"), "TLS files apply to an https endpoint, and %s is http; write the endpoint with "+
				"https:// or unset %s", t, f.Var)
		}
	}
}

// otlpFile reads the path of one of the exporter's PEM files, checked
// like any file setting.
func (b otlpVars) otlpFile(name string) TracingFile {
	v, from, ok := b.otlpVar(name)
	if !ok {
		return TracingFile{}
	}
	return TracingFile{Path: b.file(setting{value: strings.TrimSpace(v), set: true, at: envAt(from, "tracing")}), Var: from}
}

// otlpHeaders parses name=value pairs separated by commas, values
// percent-encoded (the W3C Baggage format the specification names). A
// malformed pair is an error naming its position, never its value: a
// header's value is a credential.
func (b otlpVars) otlpHeaders(v string, at origin) []Header {
	var out []Header
	for i, item := range strings.Split(v, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		name, val, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		dec, err := url.PathUnescape(val)
		dec = strings.TrimSpace(dec)
		switch {
		case !ok || !validHeaderName(name):
			b.add(at, "item %d is not name=value with an HTTP header name; write pairs such as "+
				"api-key=VALUE,x-team=payments (values percent-encoded)", i+1)
			continue
		case err != nil || !validHeaderValue(dec):
			b.add(at, "the value of item %d (%s) is not a valid header value; percent-encode it (%%2C for a comma, "+
				"%%3D for =) and leave out control characters", i+1, textproto.CanonicalMIMEHeaderKey(name))
			continue
		}
		out = append(out, Header{Name: textproto.CanonicalMIMEHeaderKey(name), Value: NewSecret(dec)})
	}
	return out
}

// validHeaderValue reports whether v may be sent as a header's value (RFC
// 9110 §5.5: visible characters, spaces and tabs).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

package tracing

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Scope is the instrumentation scope of every span the proxy makes.
const Scope = "github.com/mtlsproxy/payrails-mtls-proxy"

// Names of the spans below the server span.
const (
	SpanToken     = "access token"  // waiting for a managed access token that was not ready
	SpanConnect   = "connect"       // the TCP connection, or the tunnel through the egress proxy (via)
	SpanHandshake = "tls handshake" // the TLS handshake with the upstream, presenting the client certificate
	SpanFirstByte = "first byte"    // from a new connection's handshake to the answer's headers
)

// The proxy's own attributes; the others are OpenTelemetry's HTTP, TLS and
// network semantic conventions (semconv).
const (
	// AttrAttempts is how many times the request was sent (server span).
	AttrAttempts = attribute.Key("payrails.proxy.attempts")
	// AttrErrorKind is the failure table's kind of a failure the proxy
	// made (the X-Payrails-Proxy-Error value), or "upstream_body".
	AttrErrorKind = attribute.Key("payrails.proxy.error_kind")
	// AttrMode is how the request arrived: forward, base, mitm,
	// http-tunnel, connect.
	AttrMode = attribute.Key("payrails.proxy.mode")
	// AttrUpstream names the configured upstream.
	AttrUpstream = attribute.Key("payrails.upstream")
	// AttrSerial is the serial of the client certificate presented, hex.
	AttrSerial = attribute.Key("payrails.certificate.serial")
	// AttrErrorID is the id of an error answer in Payrails' shape: the
	// API's, or the proxy's own (the id of its log line).
	AttrErrorID = attribute.Key("payrails.error.id")
	// AttrErrorCode is that answer's code.
	AttrErrorCode = attribute.Key("payrails.error.code")
	// AttrVia is the egress proxy (HOST:PORT) a connection went through.
	AttrVia = attribute.Key("payrails.proxy.via")
)

// Method is the span name and http.request.method of m: the method for
// the standard ones, "_OTHER" for any other (clients choose methods; a
// span name must not grow without bound).
func Method(m string) (name string, attr attribute.KeyValue) {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodHead, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m, semconv.HTTPRequestMethodKey.String(m)
	}
	return "HTTP", semconv.HTTPRequestMethodKey.String("_OTHER")
}

// protocolVersion is network.protocol.version for a request's major and
// minor version: "1.1", "1.0", "2".
func protocolVersion(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "1.1"
	case major == 1 && minor == 0:
		return "1.0"
	case major == 2:
		return "2"
	}
	return ""
}

// Package tracing is what the proxy's spans are (DESIGN.md § Tracing,
// issue 27): their names and attributes, the server span of each proxied
// request (Server), and the helpers the upstream client makes its child
// spans with. It uses the OpenTelemetry trace API only; the SDK, the
// export queue and the OTLP exporter are tracing/otlp's, wired by cmd.
//
// The rules every span here keeps:
//
//   - Never a header value, a query, a body, a token or a secret: the
//     attributes are the method, the path without its query, the host,
//     the status, and what the proxy did (attempts, the failure's kind, the
//     certificate's serial, the error id). Error descriptions are the
//     failure table's kinds and TLS alert names, never an error's text.
//   - Nothing is added to what is sent upstream: the server span continues
//     the client's traceparent, and the client's headers pass as they were
//     (the proxy never injects one of its own).
//   - Lean: a span only where there is something to time (no connect or
//     handshake span on a pooled connection, no token span for a cached
//     token); attributes are built once, when the span ends, and only when
//     it is recording; spans timed after the fact are started and ended
//     with explicit timestamps, so no span is open while nothing happens.
package tracing

// Package proxy owns the request path: it answers plain HTTP from local
// clients (forward-mode absolute-form requests, base-URL origin-form ones,
// and with connect: mitm the requests inside intercepted CONNECT tunnels),
// decides whether and where each request may go, and sends it to a
// Payrails upstream over mutual TLS with the certificate its source offers
// at that moment.
//
// The way of one request, in order:
//
//   - Proxy.ServeHTTP, or a tunnel's server (tunnel.go), calls handle
//     (proxy.go): admit checks the client's address, its proxy
//     credentials, the route (route.go) and the framing (hygiene.go);
//     a refusal is written by Error.write (errors.go).
//   - outboundFor and outbound (forward.go) build the one outbound request
//     (the inbound one is never modified; hop-by-hop headers go,
//     headers.go) and hand it to goproxy, whose hook prepare sends it with
//     Upstream.send (upstream.go).
//   - Upstream.send adds the managed access token (tokens.go) and sends
//     the request with the current generation (sendOnce, roundTrip): one
//     certificate's client, whose RoundTrip (generation.go) is the one
//     place choosing between the HTTP/1.1 fast path (h1client.go,
//     h1conn.go, h1pool.go) and net/http's Transport. Every connection is
//     opened by dialTLS (dial.go).
//   - A failure is classified (classify.go) into the one table of the
//     proxy's failures (errors.go) without any network I/O; whether the
//     upstream refuses a certificate is learnt off the request path
//     (certCheck, probe.go).
//   - goproxy's response hook finish drops hop-by-hop headers; the body is
//     copied to the client (copy.go, writer.go), and the deferred
//     finishExchange writes the one log line and the metrics (exchange.go,
//     metrics.go).
//
// Also here: serve.go (the listener, client limits and graceful shutdown),
// auth.go (proxy credentials), probe.go's Probe (check --remote).
//
// The package declares the small interfaces it needs from certificates
// (CertificateSource, LeafSource) and does not import certs; cmd wires the
// two together.
package proxy

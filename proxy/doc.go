// Package proxy owns the request path: it answers plain HTTP from local
// clients (forward-mode absolute-form requests, base-URL origin-form ones,
// and with connect: mitm intercepted CONNECT tunnels), decides whether and
// where each request may go, and sends it to a Payrails upstream over
// mutual TLS with the certificate its source offers at that moment.
//
// Where things are:
//
//   - proxy.go, route.go, auth.go, hygiene.go: admission (client address,
//     proxy credentials, route, framing) before anything leaves the host;
//     the proxy is never an open relay.
//   - forward.go, headers.go, copy.go, writer.go: goproxy's hooks, the
//     outbound request (never the inbound one modified), hop-by-hop header
//     removal, streaming bodies to the client.
//   - upstream.go, transport.go, h1.go, h1pool.go: connections to an
//     upstream, grouped in one generation per certificate so that a swap
//     never reuses a connection or session ticket of the old one; the
//     HTTP/1.1 fast path and net/http's Transport (HTTP/2, large bodies).
//   - errors.go, classify.go, probe.go: the one table of proxy failures
//     (status, X-Payrails-Proxy-Error kind, JSON body) and the mapping of
//     transport errors onto it, telling a refused client certificate apart.
//   - tokens.go (with proxy/token): managed access tokens.
//   - tunnel.go: connect: mitm; each intercepted tunnel is served by an
//     http.Server with the proxy port's limits and the same handler path.
//   - exchange.go, metrics.go: the one log line per request and the
//     Prometheus metrics.
//   - serve.go: the listener and graceful shutdown.
//
// The package declares the small interfaces it needs from certificates
// (CertificateSource, LeafSource) and does not import certs; cmd wires the
// two together.
package proxy

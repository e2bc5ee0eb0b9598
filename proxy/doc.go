// Package proxy is the inbound side of the sidecar: it answers plain HTTP
// from local clients (forward-mode absolute-form requests, base-URL
// origin-form ones, and with connect: mitm the requests inside intercepted
// CONNECT tunnels), decides whether and where each request may go, builds
// the one outbound request, hands it to the upstream client
// (proxy/upstream) and writes the answer and the one log line. It owns
// goproxy, header hygiene, the client limits and the request log; the
// upstream side (certificates, TLS, retries, failover, tokens) is
// proxy/upstream's, which never imports this package.
//
// The way of one request, in order:
//
//   - serve.go: the listener refuses clients outside allow_cidrs at accept
//     (admission.go) and caps the connections (internal/connlimit); the
//     server's limits hold on the port and inside tunnels (tunnel.go).
//   - Proxy.ServeHTTP, or a tunnel's server, calls handle (proxy.go): the
//     admission (admission.go) checks the client's address, its proxy
//     credentials (auth.go), the method and framing (hygiene.go) and the
//     route (route.go); a refusal is written from the one failure table
//     (proxy/failure).
//   - outboundFor and outbound (forward.go) build the outbound request:
//     the inbound one is never modified; hop-by-hop headers and names with
//     an underscore go (headers.go); the request's httptrace.ClientTrace
//     records the connection the upstream client used.
//   - goproxy's request hook prepare calls upstream.Client.Send, which
//     returns the upstream's answer or one of the failure table's errors,
//     and what it did (attempts, the added key, the certificate's serial).
//   - The answer, its X-Payrails-Proxy-* headers stripped and the proxy's
//     own set, is copied to the client (copy.go, writer.go); the deferred
//     journal.finish writes the one log line and the metrics (exchange.go,
//     metrics.go).
//
// Also here: RunServer (the admin port shares it), goproxy's log (its
// lines reduced to a kind, goproxylog.go).
package proxy

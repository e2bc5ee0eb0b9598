// Package upstream is the client of one Payrails upstream over mutual
// TLS: everything between a request the inbound proxy (package proxy)
// admitted and the upstream's answer. It never imports the inbound
// package; the inbound side calls Client.Send through a seam as small as
// httputil.ReverseProxy's Transport, and observes connections through
// net/http/httptrace.
//
// What it owns, by file:
//
//   - client.go: Client, New and Run, its one lifecycle (the selection and
//     warm-connection loop, the token manager, the certificate checks).
//   - send.go: Send, the attempts of one request, the managed token.
//   - policy.go: the retry policy, pure functions; budget.go, body.go: the
//     retry budget and the kept body.
//   - verdict.go: the one verdict on a failure (kind, retry reason,
//     refusal, advice) and the failure table's errors (proxy/failure).
//   - selection.go, selectstate.go: which certificate is presented
//     (decide, a pure rule; evaluate, in the loop), failover, readiness.
//   - verify.go, check.go: asking the upstream about a certificate, on
//     and off the request path.
//   - generation.go: one certificate's HTTP client, choosing between the
//     HTTP/1.1 fast path (proxy/upstream/h1) and net/http's Transport;
//     nothing under it sends a request again on its own.
//   - dial.go: every connection, over a context dialer (a net.Dialer, or
//     proxy/upstream/egress through an egress proxy).
//   - signer.go: the client key's signatures, seen per handshake: counted
//     by upstream and source (file, pkcs11) with their latency, a failure
//     made client_key_unavailable and readiness lost until a probe
//     handshake signs again; a key without RSA-PSS held at TLS 1.2.
//   - warm.go: warm connections and the server's idle timeouts.
//   - tokens.go: managed access tokens (proxy/token); probe.go: Probe,
//     for check --remote; metrics.go: its Prometheus metrics.
//
// What upstreams' answers mean (TLS alerts, edge refusal pages, Payrails'
// errors) is proxy/answer's, read by both sides.
package upstream

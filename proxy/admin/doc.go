// Package admin serves the admin listener: /healthz (the process is up),
// /readyz (every upstream presents a valid certificate now; notes such as an
// expiry within 30 days never make it fail), /certs (each upstream's
// certificate report as JSON: metadata and file names, never key material),
// /metrics (what the caller registered in Config.Gatherer: the process's,
// the proxy's and the certificate metrics) and, only with Config.Pprof, Go's
// profiling endpoints under /debug/pprof/. Serve runs that handler on the
// admin listener with its own limits (Limits: header, read, write and idle
// timeouts, a header cap and a connection cap), since the image binds it to
// 0.0.0.0 where any client on the pod network can reach it.
//
// It knows nothing of how certificates are kept: it reads each upstream
// through the plain functions of Upstream, which the caller (cmd) wires to a
// certificate store, since proxy, and so admin, does not import certs. It
// is separate from the proxy port so that probes and scrapes never share
// the merchant's identity path.
package admin

package upstream

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the upstream clients' Prometheus metrics, all prefixed
// payrails_proxy_: TLS handshakes and connections, managed tokens,
// certificate verification and failover, retries and warm connections. A
// nil *Metrics records nothing, so tests and tools need not register any.
// The inbound proxy has its own (requests, errors by kind, clients).
type Metrics struct {
	handshakes     *prometheus.CounterVec
	handshakeTime  *prometheus.HistogramVec
	upstreamConns  *prometheus.GaugeVec
	tokenFetches   *prometheus.CounterVec
	tokenExpiry    *prometheus.GaugeVec
	tokenInjected  *prometheus.CounterVec
	verifications  *prometheus.CounterVec
	failovers      *prometheus.CounterVec
	retries        *prometheus.CounterVec
	budgetRefusals *prometheus.CounterVec
	warm           *prometheus.GaugeVec
	signatures     *prometheus.CounterVec
	signatureTime  *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrails_proxy_upstream_tls_handshakes_total",
			Help: "TLS handshakes with upstreams, by upstream and whether the session was resumed.",
		}, []string{"upstream", "resumed"}),
		handshakeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payrails_proxy_upstream_tls_handshake_duration_seconds",
			Help:    "Duration of TLS handshakes with upstreams (TCP connect excluded).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"upstream"}),
		upstreamConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "payrails_proxy_upstream_connections_open",
			Help: "TLS connections open to each upstream.",
		}, []string{"upstream"}),
		tokenFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrails_proxy_token_fetches_total",
			Help: "Access token fetches from /auth/token, by upstream and result (ok, error).",
		}, []string{"upstream", "result"}),
		tokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "payrails_proxy_token_expiry_timestamp_seconds",
			Help: "Expiry of the current managed access token as a Unix timestamp.",
		}, []string{"upstream"}),
		tokenInjected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrails_proxy_token_injected_requests_total",
			Help: "Requests to which the proxy added the access token, by upstream and whether they were replayed after a 401.",
		}, []string{"upstream", "replayed"}),
	}
	m.selectionMetrics()
	m.signatures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrails_proxy_client_key_signatures_total",
		Help: "Signatures of full TLS handshakes by the client certificate's key, by upstream, source (file, pkcs11) and result (ok, error); resumed and pooled connections make none.",
	}, []string{"upstream", "source", "result"})
	m.signatureTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "payrails_proxy_client_key_signature_duration_seconds",
		Help:    "Time the client certificate's key took to sign a TLS handshake, by upstream and source (file, pkcs11).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"upstream", "source"})
	reg.MustRegister(m.handshakes, m.handshakeTime, m.upstreamConns, m.tokenFetches, m.tokenExpiry, m.tokenInjected,
		m.verifications, m.failovers, m.retries, m.budgetRefusals, m.warm, m.signatures, m.signatureTime)
	return m
}

// selectionMetrics makes the metrics of verification, failover, retries
// and warm connections.
func (m *Metrics) selectionMetrics() {
	m.verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrails_proxy_certificate_verifications_total",
		Help: "Verifications of a client certificate against its upstream (a TLS connection and a HEAD verify_path), by result: accepted, refused, unknown (the upstream could not be asked).",
	}, []string{"upstream", "result"})
	m.failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrails_proxy_certificate_failovers_total",
		Help: "Switches from a client certificate the upstream refused to another one it accepts.",
	}, []string{"upstream"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrails_proxy_upstream_retries_total",
		Help: "Requests sent to the upstream again, by reason (connect, tls, connection_lost, certificate_refused, payrails_retryable, edge_error).",
	}, []string{"upstream", "reason"})
	m.budgetRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrails_proxy_upstream_retry_budget_exhausted_total",
		Help: "Retries not made because the retry budget (a fifth of the requests of the last 10 s) was spent.",
	}, []string{"upstream"})
	m.warm = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "payrails_proxy_upstream_warm_connections",
		Help: "Idle, ready TLS connections with the certificate in use, per upstream (warm_connections keeps them open).",
	}, []string{"upstream"})
}

// upstream creates an upstream's series of the rotation and retry metrics
// at zero, so that rates and alerts on them work before the first event.
func (m *Metrics) upstream(name string) {
	if m == nil {
		return
	}
	for _, r := range []VerifyResult{VerifyAccepted, VerifyRefused, VerifyUnknown} {
		m.verifications.WithLabelValues(name, string(r))
	}
	for _, r := range retryReasons {
		m.retries.WithLabelValues(name, r)
	}
	m.failovers.WithLabelValues(name)
	m.budgetRefusals.WithLabelValues(name)
	m.warm.WithLabelValues(name)
}

func (m *Metrics) verification(upstream string, r VerifyResult) {
	if m != nil {
		m.verifications.WithLabelValues(upstream, string(r)).Inc()
	}
}

func (m *Metrics) failover(upstream string) {
	if m != nil {
		m.failovers.WithLabelValues(upstream).Inc()
	}
}

func (m *Metrics) retry(upstream, reason string) {
	if m != nil {
		m.retries.WithLabelValues(upstream, reason).Inc()
	}
}

func (m *Metrics) budgetExhausted(upstream string) {
	if m != nil {
		m.budgetRefusals.WithLabelValues(upstream).Inc()
	}
}

func (m *Metrics) warmConnections(upstream string, n int) {
	if m != nil {
		m.warm.WithLabelValues(upstream).Set(float64(n))
	}
}

func (m *Metrics) tokenFetched(upstream string, ok bool, expiry time.Time) {
	if m == nil {
		return
	}
	if !ok {
		m.tokenFetches.WithLabelValues(upstream, "error").Inc()
		return
	}
	m.tokenFetches.WithLabelValues(upstream, "ok").Inc()
	m.tokenExpiry.WithLabelValues(upstream).Set(float64(expiry.Unix()))
}

func (m *Metrics) tokenUsed(upstream string, replayed bool) {
	if m != nil {
		m.tokenInjected.WithLabelValues(upstream, strconv.FormatBool(replayed)).Inc()
	}
}

func (m *Metrics) handshake(upstream string, resumed bool, d time.Duration) {
	if m == nil {
		return
	}
	m.handshakes.WithLabelValues(upstream, strconv.FormatBool(resumed)).Inc()
	m.handshakeTime.WithLabelValues(upstream).Observe(d.Seconds())
}

// signature counts one signature of the client key and its latency.
func (m *Metrics) signature(upstream, source string, ok bool, d time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "error"
	}
	m.signatures.WithLabelValues(upstream, source, result).Inc()
	m.signatureTime.WithLabelValues(upstream, source).Observe(d.Seconds())
}

func (m *Metrics) upstreamConn(upstream string, delta float64) {
	if m != nil {
		m.upstreamConns.WithLabelValues(upstream).Add(delta)
	}
}

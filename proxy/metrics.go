package proxy

import (
	"net/http"
	"strconv"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics, all prefixed payrails_proxy_.
// A nil *Metrics records nothing, so tests and tools need not register any.
type Metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	denied         *prometheus.CounterVec
	handshakes     *prometheus.CounterVec
	handshakeTime  *prometheus.HistogramVec
	clientConns    prometheus.Gauge
	shedConns      prometheus.Counter
	dropped        prometheus.Counter
	upstreamConns  *prometheus.GaugeVec
	tokenFetches   *prometheus.CounterVec
	tokenExpiry    *prometheus.GaugeVec
	tokenInjected  *prometheus.CounterVec
	verifications  *prometheus.CounterVec
	failovers      *prometheus.CounterVec
	retries        *prometheus.CounterVec
	budgetRefusals *prometheus.CounterVec
	warm           *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrails_proxy_requests_total",
			Help: "Requests handled, by upstream, method and status class (1xx..5xx; 0xx when the response broke off).",
		}, []string{"upstream", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payrails_proxy_request_duration_seconds",
			Help:    "Time from the request's arrival to the end of its response, by upstream.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"upstream"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrails_proxy_upstream_errors_total",
			Help: "Requests that failed on the way to or from the upstream, by kind (the X-Payrails-Proxy-Error value).",
		}, []string{"upstream", "kind"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrails_proxy_denied_requests_total",
			Help: "Requests refused by the proxy, by reason (host_not_allowed, connect, source_not_allowed, ...); source_not_allowed counts connections refused at accept.",
		}, []string{"reason"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrails_proxy_upstream_tls_handshakes_total",
			Help: "TLS handshakes with upstreams, by upstream and whether the session was resumed.",
		}, []string{"upstream", "resumed"}),
		handshakeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payrails_proxy_upstream_tls_handshake_duration_seconds",
			Help:    "Duration of TLS handshakes with upstreams (TCP connect excluded).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"upstream"}),
		clientConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "payrails_proxy_client_connections_open",
			Help: "Client connections open on the proxy listener.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payrails_proxy_dropped_headers_total",
			Help: "Request header fields not forwarded because their name holds an underscore (as nginx's underscores_in_headers off).",
		}),
		shedConns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payrails_proxy_client_connections_shed_total",
			Help: "Idle client connections closed to make room for a new one at access.max_connections.",
		}),
		upstreamConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "payrails_proxy_upstream_connections_open",
			Help: "TLS connections open to each upstream.",
		}, []string{"upstream"}),
	}
	m.tokenMetrics()
	m.upstreamMetrics()
	reg.MustRegister(m.requests, m.duration, m.upstreamErrors, m.denied, m.handshakes, m.handshakeTime,
		m.clientConns, m.shedConns, m.dropped, m.upstreamConns, m.tokenFetches, m.tokenExpiry, m.tokenInjected,
		m.verifications, m.failovers, m.retries, m.budgetRefusals, m.warm)
	return m
}

// tokenMetrics makes the managed-token metrics.
func (m *Metrics) tokenMetrics() {
	m.tokenFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrails_proxy_token_fetches_total",
		Help: "Access token fetches from /auth/token, by upstream and result (ok, error).",
	}, []string{"upstream", "result"})
	m.tokenExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "payrails_proxy_token_expiry_timestamp_seconds",
		Help: "Expiry of the current managed access token as a Unix timestamp.",
	}, []string{"upstream"})
	m.tokenInjected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrails_proxy_token_injected_requests_total",
		Help: "Requests to which the proxy added the access token, by upstream and whether they were replayed after a 401.",
	}, []string{"upstream", "replayed"})
}

// upstreamMetrics makes the metrics of verification, failover, retries and
// warm connections.
func (m *Metrics) upstreamMetrics() {
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

// deniedSource counts a connection refused at accept (admission.go).
func (m *Metrics) deniedSource() {
	if m != nil {
		m.denied.WithLabelValues(deniedReason[failure.KindSourceNotAllowed]).Inc()
	}
}

// droppedHeaders counts request header fields dropped for an underscore.
func (m *Metrics) droppedHeaders(n int) {
	if m != nil {
		m.dropped.Add(float64(n))
	}
}

// shed counts a client connection closed, idle, to make room at the
// connection cap (internal/connlimit).
func (m *Metrics) shed() {
	if m != nil {
		m.shedConns.Inc()
	}
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

// deniedReason maps a refusal to the denied_requests_total label.
var deniedReason = map[failure.Kind]string{
	failure.KindHostNotAllowed:      "host_not_allowed",
	failure.KindConnectNotSupported: "connect",
	failure.KindSourceNotAllowed:    "source_not_allowed",
	failure.KindProxyAuthRequired:   "proxy_auth_required",
	failure.KindBadRequest:          "bad_request",
	failure.KindNoDefaultUpstream:   "no_default_upstream",
	failure.KindMethodNotAllowed:    "method_not_allowed",
}

// observe records one finished request.
func (m *Metrics) observe(ex *exchange, method string, status int, elapsed time.Duration) {
	if m == nil {
		return
	}
	upstream := ""
	if ex.up != nil {
		upstream = ex.up.name
	}
	m.requests.WithLabelValues(upstream, methodLabel(method), statusClass(status)).Inc()
	if ex.token != "" {
		m.tokenInjected.WithLabelValues(upstream, strconv.FormatBool(ex.token == "replayed")).Inc()
	}
	m.duration.WithLabelValues(upstream).Observe(elapsed.Seconds())
	if ex.err == nil {
		if ex.upstreamErr != nil {
			m.upstreamErrors.WithLabelValues(upstream, "upstream_body").Inc()
		}
		return
	}
	if reason, ok := deniedReason[ex.err.Kind]; ok {
		m.denied.WithLabelValues(reason).Inc()
		return
	}
	if ex.err.Kind != failure.KindClientClosed {
		m.upstreamErrors.WithLabelValues(upstream, string(ex.err.Kind)).Inc()
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

func (m *Metrics) handshake(upstream string, resumed bool, d time.Duration) {
	if m == nil {
		return
	}
	m.handshakes.WithLabelValues(upstream, strconv.FormatBool(resumed)).Inc()
	m.handshakeTime.WithLabelValues(upstream).Observe(d.Seconds())
}

func (m *Metrics) upstreamConn(upstream string, delta float64) {
	if m != nil {
		m.upstreamConns.WithLabelValues(upstream).Add(delta)
	}
}

// connState counts client connections; it is the listener's ConnState hook.
func (m *Metrics) connState(_ any, st http.ConnState) {
	if m == nil {
		return
	}
	switch st {
	case http.StateNew:
		m.clientConns.Inc()
	case http.StateClosed, http.StateHijacked:
		m.clientConns.Dec()
	}
}

// methodLabel keeps the label set small: clients choose methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodHead, http.MethodOptions, http.MethodConnect:
		return m
	}
	return "OTHER"
}

// statusClasses are the status label's values, indexed by status/100.
var statusClasses = [...]string{"0xx", "1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClass(status int) string {
	if status < 100 || status > 599 {
		return statusClasses[0]
	}
	return statusClasses[status/100]
}

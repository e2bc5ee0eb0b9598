package proxy

import (
	"net/http"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the inbound proxy's Prometheus metrics, all prefixed
// payrails_proxy_: requests by upstream and status, their duration,
// failures by kind, refusals, client connections. The upstream clients
// have their own (proxy/upstream). A nil *Metrics records nothing, so
// tests and tools need not register any.
type Metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	denied         *prometheus.CounterVec
	clientConns    prometheus.Gauge
	shedConns      prometheus.Counter
	dropped        prometheus.Counter
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
		clientConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "payrails_proxy_client_connections_open",
			Help: "Client connections open on the proxy listener.",
		}),
		shedConns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payrails_proxy_client_connections_shed_total",
			Help: "Idle client connections closed to make room for a new one at access.max_connections.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payrails_proxy_dropped_headers_total",
			Help: "Request header fields not forwarded because their name holds an underscore (as nginx's underscores_in_headers off).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.upstreamErrors, m.denied, m.clientConns, m.shedConns, m.dropped)
	return m
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
		upstream = ex.up.Name()
	}
	m.requests.WithLabelValues(upstream, methodLabel(method), statusClass(status)).Inc()
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

package main

import (
	"strconv"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/admin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newRegistry holds every metric the process exports: the Go runtime and
// process collectors, the proxy's request metrics and the certificate
// collector (both registered by newApp).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// upstreamView is what the admin endpoints show of one upstream: its
// certificate store, and what the proxy learnt from the upstream about
// those certificates: which one it presents, and each one's verification
// (up is nil for the local CA's store).
type upstreamView struct {
	store *certs.Store
	up    *proxy.Upstream
}

// adminUpstream presents a view to the admin endpoints.
func adminUpstream(v upstreamView) admin.Upstream {
	return admin.Upstream{
		Name:   v.store.Name(),
		Ready:  v.ready,
		Notes:  v.store.Notes,
		Report: func() any { return v.report() },
	}
}

// ready is the store's readiness, then the upstream's: a certificate it
// refuses with no other to fail over to makes the upstream not ready.
func (v upstreamView) ready() error {
	if err := v.store.Ready(); err != nil {
		return err
	}
	if v.up != nil {
		return v.up.Ready()
	}
	return nil
}

// report is the store's report with the proxy's knowledge merged in: the
// certificate presented (verification may keep an older one serving) and
// each candidate's verification.
func (v upstreamView) report() certs.Report {
	r := v.store.Report()
	if v.up == nil {
		return r
	}
	statuses := map[string]proxy.CertificateStatus{}
	presented := ""
	for _, st := range v.up.CertificateStatuses() {
		statuses[st.Fingerprint] = st
		if st.InUse {
			presented = st.Fingerprint
		}
	}
	for i := range r.Candidates {
		d := &r.Candidates[i]
		if st, ok := statuses[d.Fingerprint]; ok {
			d.Verification = &certs.Verification{Result: string(st.Result), Reason: st.Reason, At: st.At, Next: st.Next}
		}
		if presented != "" {
			d.InUse = d.Fingerprint == presented
			if d.InUse {
				inUse := *d
				r.InUse = &inUse
			}
		}
	}
	if err := v.up.Ready(); err != nil && r.Ready {
		r.Ready, r.Error = false, err.Error()
	}
	return r
}

// certCollector exports the certificate metrics of every store. It lives
// here, where certs and Prometheus meet: certs does not know Prometheus,
// and proxy/admin must not import certs. It reads each store's Report at
// scrape time, the same value /certs serves, so the two cannot disagree
// and there is nothing to keep in sync.
type certCollector struct {
	views                          []upstreamView
	reloads, lastSuccess, notAfter *prometheus.Desc
	ready                          *prometheus.Desc
}

// newCertCollector returns a collector over views; register it once.
func newCertCollector(views []upstreamView) *certCollector {
	return &certCollector{
		views: views,
		reloads: prometheus.NewDesc("payrails_proxy_certificate_reloads_total",
			"Certificate reloads by upstream and result (swapped, unchanged, failed).", []string{"upstream", "result"}, nil),
		lastSuccess: prometheus.NewDesc("payrails_proxy_certificate_last_reload_success_timestamp_seconds",
			"Unix time of the last reload that left a usable certificate.", []string{"upstream"}, nil),
		notAfter: prometheus.NewDesc("payrails_proxy_certificate_not_after_timestamp_seconds",
			"NotAfter of each loaded client certificate as a Unix timestamp; in_use marks the one presented.",
			[]string{"upstream", "serial", "in_use"}, nil),
		ready: prometheus.NewDesc("payrails_proxy_certificate_ready",
			"1 when the upstream presents a valid client certificate, else 0.", []string{"upstream"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reloads
	ch <- c.lastSuccess
	ch <- c.notAfter
	ch <- c.ready
}

// Collect implements prometheus.Collector.
func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.views {
		r := v.report()
		for _, rc := range []struct {
			result certs.Result
			n      uint64
		}{{certs.ResultSwapped, r.Reloads.Swapped}, {certs.ResultUnchanged, r.Reloads.Unchanged}, {certs.ResultFailed, r.Reloads.Failed}} {
			ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(rc.n), r.Upstream, string(rc.result))
		}
		if !r.Reloads.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, float64(r.Reloads.LastSuccess.Unix()), r.Upstream)
		}
		seen := map[string]bool{} // one series per serial, even if two CAs reused a serial
		for _, d := range r.Candidates {
			if seen[d.Serial] {
				continue
			}
			seen[d.Serial] = true
			presented := r.Ready && d.InUse // chosen, and not expired since
			ch <- prometheus.MustNewConstMetric(c.notAfter, prometheus.GaugeValue, float64(d.NotAfter.Unix()),
				r.Upstream, d.Serial, strconv.FormatBool(presented))
		}
		ready := 0.0
		if r.Ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready, r.Upstream)
	}
}

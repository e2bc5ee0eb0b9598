// Package certstatus is what the admin port shows of each upstream's
// certificates: the certificate store's report (certs) merged with what
// the upstream client learnt of those certificates (which one it
// presents, each one's verification: proxy/upstream), readiness, and the
// certificate metrics collector. It lives where certs, the upstream
// client and Prometheus meet, so that none of them imports another, and
// cmd only wires each store to its upstream by name.
package certstatus

import (
	"strconv"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/admin"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
)

// View is what the admin endpoints show of one upstream: its certificate
// store, and what its client learnt from the upstream about those
// certificates (Client is nil for the local CA's store, which has no
// upstream).
type View struct {
	Store  *certs.Store
	Client *upstream.Client
}

// Admin presents the view to the admin endpoints.
func (v View) Admin() admin.Upstream {
	return admin.Upstream{
		Name:   v.Store.Name(),
		Ready:  v.Ready,
		Notes:  v.Store.Notes,
		Report: func() any { return v.Report() },
	}
}

// Ready is the store's readiness, then the client's: a certificate the
// upstream refuses with no other to fail over to makes it not ready.
func (v View) Ready() error {
	if err := v.Store.Ready(); err != nil {
		return err
	}
	if v.Client != nil {
		return v.Client.Ready()
	}
	return nil
}

// Report is the store's report with the client's knowledge merged in: the
// certificate presented (verification may keep an older one serving) and
// each candidate's verification.
func (v View) Report() certs.Report {
	r := v.Store.Report()
	if v.Client == nil {
		return r
	}
	statuses := map[string]upstream.CertificateStatus{}
	presented := ""
	for _, st := range v.Client.CertificateStatuses() {
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
	if err := v.Client.Ready(); err != nil && r.Ready {
		r.Ready, r.Error = false, err.Error()
	}
	return r
}

// Collector exports the certificate metrics of every view. It reads each
// Report at scrape time, the same value /certs serves, so the two cannot
// disagree and there is nothing to keep in sync.
type Collector struct {
	views                          []View
	reloads, lastSuccess, notAfter *prometheus.Desc
	ready                          *prometheus.Desc
}

// NewCollector returns a collector over views; register it once.
func NewCollector(views []View) *Collector {
	return &Collector{
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
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reloads
	ch <- c.lastSuccess
	ch <- c.notAfter
	ch <- c.ready
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.views {
		r := v.Report()
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

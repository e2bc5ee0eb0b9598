package admin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// CertCollector exports the certificate metrics of every upstream, read
// from the stores at scrape time (nothing to keep in sync).
type CertCollector struct {
	ups                            []Upstream
	reloads, lastSuccess, notAfter *prometheus.Desc
	ready                          *prometheus.Desc
}

// NewCertCollector returns a collector over ups; register it once.
func NewCertCollector(ups []Upstream) *CertCollector {
	return &CertCollector{
		ups: ups,
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
func (c *CertCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reloads
	ch <- c.lastSuccess
	ch <- c.notAfter
	ch <- c.ready
}

// Collect implements prometheus.Collector.
func (c *CertCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.ups {
		m := u.Metrics()
		for _, result := range []string{"swapped", "unchanged", "failed"} {
			ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(m.Reloads[result]), u.Name, result)
		}
		if !m.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, float64(m.LastSuccess.Unix()), u.Name)
		}
		for _, cm := range m.Certificates {
			ch <- prometheus.MustNewConstMetric(c.notAfter, prometheus.GaugeValue, float64(cm.NotAfter.Unix()),
				u.Name, cm.Serial, strconv.FormatBool(cm.InUse))
		}
		ready := 0.0
		if u.Ready() == nil {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready, u.Name)
	}
}

package main

import (
	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/admin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newRegistry holds every metric the process exports: the Go runtime and
// process collectors, the proxy's request metrics (registered by the
// caller) and the certificate collector.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// adminUpstream presents a certificate store to the admin endpoints.
func adminUpstream(s *certs.Store) admin.Upstream {
	return admin.Upstream{
		Name:    s.Name(),
		Ready:   s.Ready,
		Notes:   s.Notes,
		Report:  func() any { return s.Report() },
		Metrics: func() admin.CertMetrics { return certMetrics(s) },
	}
}

func certMetrics(s *certs.Store) admin.CertMetrics {
	st, snap, inUse := s.Stats(), s.Current(), s.InUse()
	m := admin.CertMetrics{
		Reloads:     map[string]uint64{"swapped": st.Swapped, "unchanged": st.Unchanged, "failed": st.Failed},
		LastSuccess: st.LastSuccess,
	}
	seen := map[string]bool{} // one series per serial, even if two CAs reused a serial
	for _, p := range snap.Pairs {
		if seen[p.Serial] {
			continue
		}
		seen[p.Serial] = true
		m.Certificates = append(m.Certificates, admin.CertMetric{Serial: p.Serial, NotAfter: p.NotAfter(),
			InUse: inUse != nil && p.Leaf == inUse})
	}
	return m
}

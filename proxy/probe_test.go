package proxy_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

func TestProbe(t *testing.T) {
	ps := newPKI(t)
	api := startStandin(t, ps, nil)
	api12 := startStandin(t, ps, func(o *standin.Options) { o.MaxVersion = tls.VersionTLS12 })
	strangers := newPKI(t)
	// A TLS server that asks for no client certificate and answers with an
	// HTML page, as an edge or load balancer in front of an API might.
	edge := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte("<html><body>400 No required SSL certificate was sent</body></html>"))
	}))
	edge.TLS = &tls.Config{Certificates: []tls.Certificate{ps.server.TLS()}}
	edge.StartTLS()
	defer edge.Close()
	mine, theirs := ps.client.TLS(), strangers.client.TLS()
	tests := []struct {
		name     string
		addr     string
		roots    *pkiSet
		cert     *tls.Certificate
		want     upstream.Outcome
		wantEdge bool
	}{
		{"accepted", api.Addr, ps, &mine, upstream.OutcomeAccepted, false},
		{"refused, TLS 1.3", api.Addr, ps, &theirs, upstream.OutcomeCertificateRefused, false},
		{"refused, TLS 1.2", api12.Addr, ps, &theirs, upstream.OutcomeCertificateRefused, false},
		{"no certificate presented", api.Addr, ps, nil, upstream.OutcomeCertificateRefused, false},
		{"server untrusted", api.Addr, strangers, &mine, upstream.OutcomeServerUntrusted, false},
		{"nothing listening", closedPort(t), ps, &mine, upstream.OutcomeTCPFailed, false},
		{"server asks for no certificate", edge.Listener.Addr().String(), ps, &mine, upstream.OutcomeCertNotRequested, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := upstream.Probe(context.Background(), upstream.ProbeConfig{URL: &url.URL{Scheme: "https", Host: hostA},
				Address: tt.addr, RootCAs: tt.roots.ca.Pool(), Certificate: tt.cert})
			if res.Outcome != tt.want {
				t.Errorf("outcome %s, want %s (err %v)", res.Outcome, tt.want, res.Err)
			}
			if res.EdgePage != tt.wantEdge {
				t.Errorf("edge page %v, want %v", res.EdgePage, tt.wantEdge)
			}
			if tt.want == upstream.OutcomeAccepted && (res.Status != http.StatusOK || !res.ClientCertRequested || res.ServerCertificate == nil) {
				t.Errorf("accepted probe: status %d, requested %v, server certificate %v", res.Status, res.ClientCertRequested, res.ServerCertificate != nil)
			}
			if tt.want == upstream.OutcomeCertificateRefused && res.Alert == "" {
				t.Error("refusal without the alert's text")
			}
		})
	}
}

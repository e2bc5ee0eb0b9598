package main

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// TestCAFileReloaded: ca_file is watched like the certificates. The proxy
// starts with roots that do not verify the upstream (requests fail
// untrusted); once the right CA is written to ca_file, requests succeed
// without a restart; a bad bundle afterwards keeps the roots that work,
// and is counted.
func TestCAFileReloaded(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, apiHost, time.Time{})
	mustWrite(t, w.certDir+"/domain.pem", leaf.CertPEM, 0o644)
	mustWrite(t, w.certDir+"/domain.key", leaf.KeyPEM, 0o600)
	other, err := pki.NewCA("not the upstream's CA")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w.caFile, other.CertPEM, 0o644)
	r := startApp(t, w.configFile(t, "reload: {debounce: 20ms, poll_interval: 1h, verify: false}\n"))
	c := r.client(t)
	kind := func() string {
		resp, err := c.Get("http://" + apiHost + "/v1/echo")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return "ok"
		}
		return resp.Header.Get("X-Payrails-Proxy-Error")
	}
	if k := kind(); k != "upstream_tls" {
		t.Fatalf("with another CA in ca_file: %q, want upstream_tls", k)
	}
	writeAtomic(t, w.caFile, w.ca.CertPEM)
	poll.Until(t, "requests to succeed with the new ca_file", 10*time.Second, func() bool { return kind() == "ok" })
	if n := metric(t, r, "payrails_proxy_ca_reloads_total", withLabel("result", "swapped")); n != 1 {
		t.Errorf("ca reloads swapped = %v, want 1", n)
	}
	writeAtomic(t, w.caFile, []byte("not a certificate\n"))
	poll.Until(t, "the bad bundle to be counted", 10*time.Second, func() bool {
		return metric(t, r, "payrails_proxy_ca_reloads_total", withLabel("result", "failed")) == 1
	})
	r.app.clients[0].CloseIdleConnections()
	if k := kind(); k != "ok" {
		t.Errorf("after a bad bundle: %q, want the previous roots still verifying (ok)", k)
	}
}

// writeAtomic writes data to a hidden temporary name beside path and
// renames it into place, as careful tools and Kubernetes do.
func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	mustWrite(t, tmp, data, 0o644)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

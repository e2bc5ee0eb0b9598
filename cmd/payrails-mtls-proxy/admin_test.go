package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape parses /metrics with the Prometheus text parser.
func scrape(t testing.TB, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// adminGet GETs path from the admin listener and returns the status and the
// whole body.
func adminGet(t testing.TB, admin, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return resp.StatusCode, body
}

// value returns the value of the series of family name whose labels include
// want, or -1 when there is none. Histograms give their sample count.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetrics: counters and histograms move for real requests, a denied
// request, a failed upstream and a reload; the not-after gauge is the
// certificate's NotAfter.
func TestMetrics(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-2*time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	r := startApp(t, w.configFile(t, "reload: {debounce: 20ms, poll_interval: 1h}\n"))
	c := r.client(t)
	before := scrape(t, r.admin)
	for _, mf := range []string{"go_goroutines", "process_resident_memory_bytes", "payrails_proxy_certificate_ready"} {
		if before[mf] == nil {
			t.Errorf("/metrics lacks %s", mf)
		}
	}

	for range 3 {
		if _, err := echoSerial(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"http://example.com/", "http://" + apiHost + "/delay/1ms"} { // denied, fine
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // read to the end, so the connection stays open
		resp.Body.Close()
	}
	w.api.Close() // the upstream goes away: the next new connection fails
	for _, c := range r.app.clients {
		c.CloseIdleConnections()
	}
	resp, err := c.Get("http://" + apiHost + "/v1/down")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	next := w.clientCert(t, "next", time.Now().Add(-time.Hour))
	next.WriteFiles(w.certDir, "domain.pem", "domain.key")
	poll.Until(t, "the reload", 10*time.Second, func() bool { return r.app.views[0].Store.Stats().Swapped >= 2 })

	poll.Until(t, "the metrics of the last request", 10*time.Second, func() bool {
		return value(scrape(t, r.admin), "payrails_proxy_upstream_errors_total",
			map[string]string{"upstream": "live", "kind": "upstream_unreachable"}) == 1
	})
	after := scrape(t, r.admin)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"payrails_proxy_requests_total", map[string]string{"upstream": "live", "method": "GET", "code": "2xx"}, 4},
		{"payrails_proxy_requests_total", map[string]string{"upstream": "live", "method": "GET", "code": "5xx"}, 1},
		{"payrails_proxy_request_duration_seconds", map[string]string{"upstream": "live"}, 5},
		{"payrails_proxy_denied_requests_total", map[string]string{"reason": "host_not_allowed"}, 1},
		{"payrails_proxy_upstream_errors_total", map[string]string{"upstream": "live", "kind": "upstream_unreachable"}, 1},
		{"payrails_proxy_upstream_tls_handshakes_total", map[string]string{"upstream": "live", "resumed": "false"}, 1},
		{"payrails_proxy_upstream_tls_handshake_duration_seconds", map[string]string{"upstream": "live"}, 1},
		{"payrails_proxy_certificate_reloads_total", map[string]string{"upstream": "live", "result": "swapped"}, 2},
		{"payrails_proxy_certificate_not_after_timestamp_seconds", map[string]string{"upstream": "live", "serial": serialOf(next), "in_use": "true"},
			float64(next.Cert.NotAfter.Unix())},
		{"payrails_proxy_certificate_ready", map[string]string{"upstream": "live"}, 1},
	}
	for _, ck := range checks {
		if got := value(after, ck.name, ck.labels); got != ck.want {
			t.Errorf("%s%v = %v, want %v", ck.name, ck.labels, got, ck.want)
		}
	}
	if got := value(after, "payrails_proxy_certificate_last_reload_success_timestamp_seconds", map[string]string{"upstream": "live"}); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last reload success %v, want about now", got)
	}
	if got := value(after, "payrails_proxy_client_connections_open", nil); got < 1 {
		t.Errorf("client connections open %v, want at least the test client's", got)
	}
}

// TestReadyzFlips: /readyz is 503 with the reason while no valid
// certificate is loaded (here: the one in use expires), and 200 again
// after a good drop.
func TestReadyzFlips(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	short, err := w.ca.Issue(pki.LeafOptions{CommonName: "short", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(1500 * time.Millisecond), Client: true})
	if err != nil {
		t.Fatal(err)
	}
	short.WriteFiles(w.certDir, "domain.pem", "domain.key")
	r := startApp(t, w.configFile(t, "reload: {debounce: 20ms, poll_interval: 1h}\n"))
	status := func() (int, string) {
		code, body := adminGet(t, r.admin, "/readyz")
		return code, string(body)
	}
	if code, body := status(); code != 200 || !strings.Contains(body, "expires in 0 days") {
		t.Fatalf("readyz %d %s; want 200 with the expiry note", code, body)
	}
	poll.Until(t, "readyz to fail after expiry", 10*time.Second, func() bool { c, _ := status(); return c == 503 })
	if _, body := status(); !strings.Contains(body, "expired") {
		t.Errorf("503 body %s does not say why", body)
	}
	// An expired certificate is still loaded, but no longer presented.
	mfs := scrape(t, r.admin)
	expired := map[string]string{"upstream": "live", "serial": serialOf(short), "in_use": "false"}
	if got := value(mfs, "payrails_proxy_certificate_not_after_timestamp_seconds", expired); got != float64(short.Cert.NotAfter.Unix()) {
		t.Errorf("not_after%v = %v after expiry, want %v", expired, got, short.Cert.NotAfter.Unix())
	}
	if got := value(mfs, "payrails_proxy_certificate_ready", map[string]string{"upstream": "live"}); got != 0 {
		t.Errorf("certificate_ready = %v after expiry, want 0", got)
	}
	good := w.clientCert(t, "good", now.Add(-time.Minute))
	good.WriteFiles(w.certDir, "domain.pem", "domain.key")
	poll.Until(t, "readyz to recover after a good drop", 10*time.Second, func() bool { c, _ := status(); return c == 200 })
	resp, err := http.Get("http://" + r.admin + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestCertsEndpoint: /certs describes the certificates and never contains
// key material.
func TestCertsEndpoint(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	r := startApp(t, w.configFile(t, ""))
	_, body := adminGet(t, r.admin, "/certs")
	var reports []struct {
		Upstream string
		Ready    bool
		InUse    *struct{ Serial, Fingerprint string } `json:"in_use"`
		Reloads  struct{ LastResult string }           `json:"reloads"`
	}
	if err := json.Unmarshal(body, &reports); err != nil {
		t.Fatalf("/certs %s: %v", body, err)
	}
	if len(reports) != 1 || !reports[0].Ready || reports[0].InUse == nil || reports[0].InUse.Serial != serialOf(leaf) {
		t.Fatalf("/certs = %s", body)
	}
	keyB64 := strings.Split(string(leaf.KeyPEM), "\n")[1] // a line of the key's base64
	for _, bad := range []string{"PRIVATE KEY", "-----BEGIN", keyB64} {
		if strings.Contains(string(body), bad) {
			t.Errorf("/certs contains %q", bad)
		}
	}
}

// TestTokenMetrics: with managed tokens configured, the fetch, the token's
// expiry and the injected requests are exported, and no secret or token
// appears in /metrics or /certs.
func TestTokenMetrics(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	secret := filepath.Join(t.TempDir(), "secret")
	mustWrite(t, secret, []byte("s3cret\n"), 0o600)
	cfg := w.configFile(t, "")
	data, _ := os.ReadFile(cfg)
	data = []byte(strings.Replace(string(data), "    ca_file:", fmt.Sprintf("    token: {client_id: cid, client_secret_file: %s}\n    ca_file:", secret), 1))
	mustWrite(t, cfg, data, 0o600)
	r := startApp(t, cfg)
	c := r.client(t)
	for range 3 {
		if _, err := echoSerial(c); err != nil {
			t.Fatal(err)
		}
	}
	var mfs map[string]*dto.MetricFamily
	poll.Until(t, "the injected requests to be counted", 10*time.Second, func() bool {
		mfs = scrape(t, r.admin)
		return value(mfs, "payrails_proxy_token_injected_requests_total", map[string]string{"upstream": "live", "replayed": "false"}) == 3
	})
	if got := value(mfs, "payrails_proxy_token_fetches_total", map[string]string{"upstream": "live", "result": "ok"}); got != 1 {
		t.Errorf("token fetches %v, want 1", got)
	}
	exp := value(mfs, "payrails_proxy_token_expiry_timestamp_seconds", map[string]string{"upstream": "live"})
	if want := float64(time.Now().Add(time.Hour).Unix()); exp < want-60 || exp > want+60 {
		t.Errorf("token expiry %v, want about %v", exp, want)
	}
	for _, path := range []string{"/metrics", "/certs"} {
		if _, body := adminGet(t, r.admin, path); strings.Contains(string(body), "s3cret") || strings.Contains(string(body), "Bearer") {
			t.Errorf("%s shows the secret or a token", path)
		}
	}
}

// TestAdminListenerLimits: the app serves the admin port with the admin
// listener's own limits (proxy/admin.Serve and its defaults): a header
// beyond the small cap gets 431. The limits themselves are tested in
// proxy/admin through real sockets with shortened durations.
func TestAdminListenerLimits(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	r := startApp(t, w.configFile(t, ""))
	for _, tt := range []struct {
		header int
		want   int
	}{{1 << 10, http.StatusOK}, {16 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+r.admin+"/healthz", nil)
		req.Header.Set("X-Filler", strings.Repeat("a", tt.header))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%d-byte header: %v", tt.header, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("a %d-byte header on the admin port: status %d, want %d", tt.header, resp.StatusCode, tt.want)
		}
	}
}

// TestCertsAndMetricsDescribeCandidates: /certs describes every candidate
// with the fields operators and scripts read (their names and values are a
// contract), the metrics export the same candidates, and both mark the
// one in use.
func TestCertsAndMetricsDescribeCandidates(t *testing.T) {
	w := newWorld(t)
	older := w.clientCert(t, "older", time.Now().Add(-2*time.Hour))
	older.WriteFiles(w.certDir, "old.pem", "old.key")
	newer, err := w.ca.Issue(pki.LeafOptions{CommonName: "newer", DNSNames: []string{"newer.example"},
		NotBefore: time.Now().Add(-time.Hour), Client: true})
	if err != nil {
		t.Fatal(err)
	}
	newer.WriteFiles(w.certDir, "domain.pem", "domain.key")
	r := startApp(t, w.configFile(t, ""))
	_, body := adminGet(t, r.admin, "/certs")
	var reports []map[string]any
	if err := json.Unmarshal(body, &reports); err != nil || len(reports) != 1 {
		t.Fatalf("/certs %s: %v, want one report", body, err)
	}
	rep := reports[0]
	for _, k := range []string{"upstream", "source", "ready", "in_use", "reason", "candidates", "files", "findings",
		"loaded_at", "reloads"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("/certs lacks %q: %s", k, body)
		}
	}
	cands, _ := rep["candidates"].([]any)
	if len(cands) != 2 {
		t.Fatalf("candidates %v, want 2", rep["candidates"])
	}
	inUse, _ := rep["in_use"].(map[string]any)
	checkCertJSON(t, "in_use", inUse, newer, filepath.Join(w.certDir, "domain.pem"), filepath.Join(w.certDir, "domain.key"))
	for i, want := range []struct {
		leaf *pki.Leaf
		name string
	}{{newer, "domain"}, {older, "old"}} { // best first
		c, _ := cands[i].(map[string]any)
		checkCertJSON(t, fmt.Sprint("candidates[", i, "]"), c, want.leaf,
			filepath.Join(w.certDir, want.name+".pem"), filepath.Join(w.certDir, want.name+".key"))
	}
	mfs := scrape(t, r.admin)
	for _, want := range []struct {
		leaf  *pki.Leaf
		inUse string
	}{{newer, "true"}, {older, "false"}} {
		labels := map[string]string{"upstream": "live", "serial": serialOf(want.leaf), "in_use": want.inUse}
		if got := value(mfs, "payrails_proxy_certificate_not_after_timestamp_seconds", labels); got != float64(want.leaf.Cert.NotAfter.Unix()) {
			t.Errorf("not_after%v = %v, want %v", labels, got, want.leaf.Cert.NotAfter.Unix())
		}
	}
}

// checkCertJSON checks one certificate of /certs against the certificate
// and files it describes.
func checkCertJSON(t *testing.T, where string, got map[string]any, leaf *pki.Leaf, certFile, keyFile string) {
	t.Helper()
	want := map[string]any{
		"subject": leaf.Cert.Subject.String(), "issuer": leaf.Cert.Issuer.String(), "serial": serialOf(leaf),
		"fingerprint_sha256": certs.Fingerprint(leaf.Cert.Raw), "validity": "valid",
		"not_before": leaf.Cert.NotBefore.UTC().Format(time.RFC3339), "not_after": leaf.Cert.NotAfter.UTC().Format(time.RFC3339),
		"cert_file": certFile, "key_file": keyFile,
	}
	if len(leaf.Cert.DNSNames) > 0 {
		want["dns_names"] = fmt.Sprint(leaf.Cert.DNSNames)
		got["dns_names"] = fmt.Sprint(got["dns_names"])
	} else if _, ok := got["dns_names"]; ok {
		t.Errorf("%s: dns_names %v for a certificate without any", where, got["dns_names"])
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s.%s = %v, want %v", where, k, got[k], v)
		}
	}
}

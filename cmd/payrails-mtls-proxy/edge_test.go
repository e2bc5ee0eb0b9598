package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest/observer"
)

// The upstream of the rotation tests (rotation_nginx_test.go): a real
// nginx with ssl_verify_client on. nginx completes the handshake with a
// client certificate it does not trust (or has revoked) and answers every
// request on that connection with its 400 page "The SSL certificate
// error", as an edge in front of an API does.

// edgeLocation answers every request with what nginx knows of the client
// certificate and of the connection the request came on (edgeAnswer).
const edgeLocation = `
    location / {
      default_type application/json;
      return 200 '{"serial":"$ssl_client_serial","verify":"$ssl_client_verify","connection":"$connection","connection_requests":"$connection_requests","connection_time":"$connection_time"}';
    }`

// edgeAnswer is edgeLocation's answer.
type edgeAnswer struct {
	Serial             string `json:"serial"`
	Verify             string `json:"verify"`
	Connection         string `json:"connection"`          // nginx's serial number of the connection
	ConnectionRequests string `json:"connection_requests"` // how many requests it has carried, this one included
	ConnectionTime     string `json:"connection_time"`     // how long it has been open, in seconds
}

// edge is nginx in front of nothing (edgeLocation), and the files a proxy
// in front of it needs.
type edge struct {
	ca      *pki.CA // signs nginx's server certificate and the client certificates nginx trusts at first
	ng      *nginxServer
	opts    nginxOptions
	dir     string
	certDir string // the proxy's cert_dir
	caFile  string // the proxy's ca_file: it verifies nginx
}

// newEdge starts nginx (reloadable, logging every request) with the
// further server directives given, speaking HTTP/1.1.
func newEdge(t testing.TB, server string) *edge {
	t.Helper()
	return newEdgeProto(t, server, false)
}

// newEdgeProto is newEdge offering HTTP/2 too when h2.
func newEdgeProto(t testing.TB, server string, h2 bool) *edge {
	t.Helper()
	ca, err := pki.NewCA("edge CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, DNSNames: []string{apiHost}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	e := &edge{ca: ca, dir: t.TempDir()}
	e.certDir, e.caFile = filepath.Join(e.dir, "certs"), filepath.Join(e.dir, "ca.pem")
	if err := os.Mkdir(e.certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e.caFile, ca.CertPEM, 0o644)
	e.opts = nginxOptions{clientCA: filepath.Join(e.dir, "client-cas.pem"), locations: edgeLocation, server: server,
		accessLog: true, reloadable: true, http2: h2}
	if e.opts.serverCert, e.opts.serverKey, err = srv.WriteFiles(e.dir, "server.pem", "server.key"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e.opts.clientCA, ca.CertPEM, 0o644)
	e.ng = startNginxWith(t, e.opts)
	return e
}

// trust makes nginx accept client certificates of exactly these CAs, from
// the next connection on.
func (e *edge) trust(t testing.TB, cas ...*pki.CA) {
	t.Helper()
	var bundle []byte
	for _, ca := range cas {
		bundle = append(bundle, ca.CertPEM...)
	}
	mustWrite(t, e.opts.clientCA, bundle, 0o644)
	e.ng.reload(t, e.opts)
}

// reconfigure reloads nginx with other server directives.
func (e *edge) reconfigure(t testing.TB, server string) {
	t.Helper()
	e.opts.server = server
	e.ng.reload(t, e.opts)
}

// configFile writes the proxy's configuration: one upstream, nginx, with
// the folder certDir; upstream is more YAML for the upstream, top for the
// top level.
func (e *edge) configFile(t testing.TB, upstream, top string) string {
	t.Helper()
	y := fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
log: {level: debug, format: json}
reload: {debounce: %s, poll_interval: 1h}
upstreams:
  - name: live
    url: https://%s
    address: %s
    cert_dir: %s
    ca_file: %s
%s
%s`, edgeDebounce, apiHost, e.ng.addr, e.certDir, e.caFile, indent(upstream, "    "), top)
	p := filepath.Join(t.TempDir(), "config.yaml")
	mustWrite(t, p, []byte(y), 0o600)
	return p
}

// edgeDebounce is the proxy's reload.debounce in these tests.
const edgeDebounce = 50 * time.Millisecond

func indent(s, by string) string {
	if s == "" {
		return ""
	}
	return by + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+by)
}

// drop puts l into the proxy's certificate folder as name.pem and
// name.key, each written aside and renamed into place, key first.
func (e *edge) drop(t testing.TB, l *pki.Leaf, name string) {
	t.Helper()
	for _, f := range []struct {
		ext  string
		data []byte
		mode os.FileMode
	}{{".key", l.KeyPEM, 0o600}, {".pem", l.CertPEM, 0o644}} {
		tmp := filepath.Join(e.certDir, "."+name+f.ext+".tmp")
		mustWrite(t, tmp, f.data, f.mode)
		if err := os.Rename(tmp, filepath.Join(e.certDir, name+f.ext)); err != nil {
			t.Fatal(err)
		}
	}
}

// clientLeaf issues a client certificate; a later notBefore makes it the
// store's choice over the ones before.
func clientLeaf(t testing.TB, ca *pki.CA, cn string, notBefore time.Time) *pki.Leaf {
	t.Helper()
	l, err := ca.Issue(pki.LeafOptions{CommonName: cn, NotBefore: notBefore, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// writeCRL writes the CA's revocation list, in PEM, revoking leaves.
func writeCRL(t testing.TB, path string, ca *pki.CA, leaves ...*pki.Leaf) {
	t.Helper()
	now := time.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour)}
	for _, l := range leaves {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: l.Cert.SerialNumber, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatalf("making the CRL: %v", err)
	}
	mustWrite(t, path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
}

// edgeSample is one request through the proxy to nginx.
type edgeSample struct {
	path       string
	start, end time.Time
	attempts   int // X-Payrails-Proxy-Attempts; 1 when absent
	answer     edgeAnswer
	err        error // no answer, or one that is not edgeLocation's 200
}

func (s edgeSample) String() string {
	return fmt.Sprintf("%s at %s (%d attempts)", s.path, s.start.Format("15:04:05.000"), s.attempts)
}

// edgeGet sends one forward-mode GET through the proxy.
func edgeGet(c *http.Client, path string) edgeSample {
	s := edgeSample{path: path, start: time.Now(), attempts: 1}
	resp, err := c.Get("http://" + apiHost + path)
	if err != nil {
		s.err, s.end = err, time.Now()
		return s
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	s.end = time.Now()
	if a := resp.Header.Get(upstream.HeaderAttempts); a != "" {
		s.attempts, _ = strconv.Atoi(a)
	}
	switch {
	case err != nil:
		s.err = err
	case resp.StatusCode != http.StatusOK:
		s.err = fmt.Errorf("status %d (%s %q): %s", resp.StatusCode, failure.HeaderError, resp.Header.Get(failure.HeaderError), body)
	default:
		if err := json.Unmarshal(body, &s.answer); err != nil {
			s.err = fmt.Errorf("nginx's answer %q: %v", body, err)
		}
	}
	return s
}

// countFailed reports the failed samples (the first few in detail) and
// returns how many there were.
func countFailed(t *testing.T, samples []edgeSample) int {
	t.Helper()
	failed := 0
	for _, s := range samples {
		if s.err != nil {
			if failed++; failed <= 5 {
				t.Errorf("request %s failed: %v", s, s.err)
			}
		}
	}
	return failed
}

// sameSerial compares a serial as the proxy and certs write it with
// nginx's $ssl_client_serial (upper-case hex both, but say so).
func sameSerial(nginx string, l *pki.Leaf) bool { return strings.EqualFold(nginx, serialOf(l)) }

// certsReport reads the upstream's report from /certs.
func certsReport(t testing.TB, r *running) certs.Report {
	t.Helper()
	_, body := adminGet(t, r.admin, "/certs")
	var reports []certs.Report
	if err := json.Unmarshal(body, &reports); err != nil || len(reports) != 1 {
		t.Fatalf("/certs %s: %v, want one report", body, err)
	}
	return reports[0]
}

// candidate returns /certs' description of l, or fails the test.
func candidate(t testing.TB, rep certs.Report, l *pki.Leaf) certs.Description {
	t.Helper()
	for _, d := range rep.Candidates {
		if d.Serial == serialOf(l) {
			return d
		}
	}
	t.Fatalf("/certs has no candidate with serial %s: %+v", serialOf(l), rep.Candidates)
	return certs.Description{}
}

// status is what the proxy's upstream knows of l now (the value /certs
// merges in), without an HTTP round trip: for polling.
func status(r *running, l *pki.Leaf) upstream.CertificateStatus {
	for _, st := range r.app.proxy.Upstreams()[0].CertificateStatuses() {
		if st.Serial == serialOf(l) {
			return st
		}
	}
	return upstream.CertificateStatus{}
}

// total sums the series of a counter family whose labels include want.
func total(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	sum := 0.0
next:
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

func metric(t testing.TB, r *running, name string, labels map[string]string) float64 {
	t.Helper()
	return total(scrape(t, r.admin), name, labels)
}

var live = map[string]string{"upstream": "live"}

func withLabel(k, v string) map[string]string { return map[string]string{"upstream": "live", k: v} }

// requestLine returns the proxy's log line of the request to path.
// The line is written after the response has reached the client, so it is
// waited for.
func requestLine(t testing.TB, r *running, path string) map[string]any {
	t.Helper()
	var line map[string]any
	poll.Until(t, "the request line of "+path, 10*time.Second, func() bool {
		for _, e := range r.logs.FilterMessage("request").All() {
			if f := e.ContextMap(); f["path"] == path {
				line = f
				return true
			}
		}
		return false
	})
	return line
}

// ms formats a duration for the figures the tests log.
func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// jsonDecode reads resp's body as JSON into v and closes it.
func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// learntTimeout is the idle timeout the proxy said it learnt, or "none".
func learntTimeout(lines []observer.LoggedEntry) any {
	if len(lines) == 0 {
		return "none"
	}
	return lines[len(lines)-1].ContextMap()["server_idle_timeout"]
}

package deploytest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// buildBinary builds payrails-mtls-proxy from this checkout into a temp
// folder (the go command caches the work, so this is quick after once).
func buildBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build payrails-mtls-proxy for this test: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "payrails-mtls-proxy")
	if out, err := runTool(t, root, goCmd, "build", "-o", bin, "./cmd/payrails-mtls-proxy"); err != nil {
		t.Fatalf("go build ./cmd/payrails-mtls-proxy: %v\n%s", err, out)
	}
	return bin
}

// scrapeRunningProxy runs the real binary against an mTLS stand-in for
// Payrails, sends it traffic that gives each vector metric a series (a
// success with a managed token, a refused host, an unreachable upstream),
// and returns what /metrics then exports.
func scrapeRunningProxy(t *testing.T) exported {
	t.Helper()
	bin := buildBinary(t)
	dir := t.TempDir()
	ca, err := pki.NewCA("deploytest CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(pki.LeafOptions{CommonName: "live.payrails.test",
		DNSNames: []string{"live.payrails.test", "down.payrails.test"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(pki.LeafOptions{CommonName: "live.payrails.test", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.WriteFiles(certDir, "domain.pem", "domain.key"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.pem"), ca.CertPEM)
	writeFile(t, filepath.Join(dir, "secret"), []byte("s3cret\n"))

	api, err := standin.Start(standin.Options{Certificate: server.TLS(), ClientCAs: ca.Pool(),
		ClientID: "acme", ClientSecret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Close() })
	// An address where nothing listens: the port of a listener just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()

	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
upstreams:
  - name: live
    url: https://live.payrails.test
    address: %s
    default: true
    cert_dir: certs
    ca_file: ca.pem
    token: {client_id: acme, client_secret_file: secret}
  - name: down
    url: https://down.payrails.test
    address: %s
    cert_dir: certs
    ca_file: ca.pem
`, api.Addr, down)
	writeFile(t, filepath.Join(dir, "config.yaml"), []byte(cfg))
	proxyAddr, adminAddr := startBinary(t, bin, "serve", "--config", filepath.Join(dir, "config.yaml"))

	waitOK(t, "http://"+adminAddr+"/readyz")
	proxyURL, _ := url.Parse("http://" + proxyAddr)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	for _, r := range []struct {
		url  string
		want int
	}{
		{"http://live.payrails.test/v1/payments", http.StatusOK}, // token fetched and injected
		{"http://live.payrails.test/status/503", http.StatusServiceUnavailable},
		{"http://example.com/", http.StatusForbidden},                    // host not allowed: denied
		{"http://down.payrails.test/v1/payments", http.StatusBadGateway}, // upstream unreachable
	} {
		resp, err := c.Get(r.url)
		if err != nil {
			t.Fatalf("GET %s through the proxy: %v", r.url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.want {
			t.Fatalf("GET %s through the proxy: %d, want %d\n%s", r.url, resp.StatusCode, r.want, body)
		}
	}
	// The request metrics are recorded as each response ends: poll for them.
	var have exported
	deadline := time.Now().Add(10 * time.Second)
	for {
		have = scrape(t, "http://"+adminAddr+"/metrics")
		if have["payrails_proxy_upstream_errors_total"] != nil && have["payrails_proxy_denied_requests_total"] != nil &&
			have["payrails_proxy_token_injected_requests_total"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the traffic, /metrics still lacks request metrics: %s", keys(map[string]bool(namesOf(have))))
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	return have
}

func namesOf(have exported) map[string]bool {
	m := map[string]bool{}
	for n := range have {
		m[n] = true
	}
	return m
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startBinary runs the binary with a clean PAYRAILS_PROXY_* environment
// until the test ends (SIGTERM, then a bounded wait), and returns the
// proxy and admin addresses from its "proxy listening" log line.
func startBinary(t *testing.T, bin string, args ...string) (proxyAddr, adminAddr string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAYRAILS_PROXY_") && !strings.HasPrefix(strings.ToUpper(kv), "HTTP_PROXY=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var logText strings.Builder
	addrs := make(chan [2]string, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			logMu.Lock()
			logText.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			var line struct {
				Msg         string `json:"msg"`
				Listen      string `json:"listen"`
				AdminListen string `json:"admin_listen"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "proxy listening" {
				addrs <- [2]string{line.Listen, line.AdminListen}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan error, 1)
		go func() { <-readDone; exited <- cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("payrails-mtls-proxy did not stop within 40s of SIGTERM")
		}
	})
	select {
	case a := <-addrs:
		return a[0], a[1]
	case <-time.After(30 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("payrails-mtls-proxy logged no \"proxy listening\" within 30s:\n%s", logText.String())
	}
	return "", ""
}

// waitOK polls a URL until it answers 200, for at most 30 seconds.
func waitOK(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		status, body := 0, ""
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, body = resp.StatusCode, string(b)
		}
		cancel()
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not 200 within 30s: %d %s %v", u, status, body, err)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

// scrape reads /metrics in the text format and lists each series name with
// its label names: histograms and summaries as Prometheus stores them
// (_bucket with le, _sum, _count; quantile on a summary's own name).
func scrape(t *testing.T, u string) exported {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	have := exported{}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		if have[name] == nil {
			have[name] = map[string]bool{}
		}
		for _, l := range labels {
			have[name][l.GetName()] = true
		}
		for _, l := range extra {
			have[name][l] = true
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				add(name+"_bucket", m.GetLabel(), "le")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			case dto.MetricType_SUMMARY:
				add(name, m.GetLabel(), "quantile")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			default:
				add(name, m.GetLabel())
			}
		}
	}
	return have
}

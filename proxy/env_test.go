package proxy_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	hostA = "api.acme.test"
	hostB = "api.other.test"
)

// staticSource is a CertificateSource of one certificate a test can
// switch (set), signalling each change as a store does.
type staticSource struct {
	mu      sync.Mutex
	c       *tls.Certificate
	changed chan struct{}
}

func (s *staticSource) Certificate() *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func (s *staticSource) Candidates() []*tls.Certificate {
	if c := s.Certificate(); c != nil {
		return []*tls.Certificate{c}
	}
	return nil
}

func (s *staticSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// set makes c the certificate, and signals the change.
func (s *staticSource) set(c *tls.Certificate) {
	s.mu.Lock()
	s.c = c
	old := s.changed
	s.changed = make(chan struct{})
	s.mu.Unlock()
	close(old)
}

func sourceOf(l *pki.Leaf) *staticSource {
	s := &staticSource{changed: make(chan struct{})}
	if l != nil {
		c := l.TLS()
		s.c = &c
	}
	return s
}

// pkiSet is a CA, the stand-in's server certificate and a client certificate.
type pkiSet struct {
	ca     *pki.CA
	server *pki.Leaf
	client *pki.Leaf
}

func newPKI(t testing.TB) *pkiSet {
	t.Helper()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.LeafOptions{CommonName: hostA, DNSNames: []string{hostA, hostB, "localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	return &pkiSet{ca: ca, server: srv, client: newClientCert(t, ca, "merchant")}
}

func newClientCert(t testing.TB, ca *pki.CA, cn string) *pki.Leaf {
	t.Helper()
	l, err := ca.Issue(pki.LeafOptions{CommonName: cn, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func startStandin(t testing.TB, ps *pkiSet, mod func(*standin.Options)) *standin.Server {
	t.Helper()
	o := standin.Options{Certificate: ps.server.TLS(), ClientCAs: ps.ca.Pool(), ClientID: "cid", ClientSecret: "s3cret"}
	if mod != nil {
		mod(&o)
	}
	s, err := standin.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// env is a proxy on a loopback port in front of upstreams.
type env struct {
	proxy *proxy.Proxy
	url   string // http://127.0.0.1:PORT
	logs  *observer.ObservedLogs
}

func upstreamConfig(name, host, addr string, ps *pkiSet, src upstream.CertificateSource) upstream.Config {
	return upstream.Config{Name: name, URL: &url.URL{Scheme: "https", Host: host}, Address: addr,
		RootCAs: ps.ca.Pool(), Certificates: src, CertSource: "/certs/" + name}
}

// testConfig is what startProxy wires: the proxy's settings and its
// upstreams' (Retry, Timeouts and the metrics apply to every upstream
// that sets none of its own).
type testConfig struct {
	Upstreams  []upstream.Config
	Default    string
	Timeouts   proxy.Timeouts
	Retry      config.Retry
	AllowCIDRs []netip.Prefix
	Client     proxy.ClientLimits
	ProxyAuth  *proxy.AuthFile
	MITM       proxy.LeafSource
	Logger     *zap.Logger
	Registry   *prometheus.Registry // nil: no metrics
}

// startProxy builds the upstream clients and the proxy, runs them on a
// loopback port until the test ends, and stops them as cmd does: the
// proxy first, then the clients.
func startProxy(t testing.TB, cfg testConfig) *env {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	if cfg.Logger == nil {
		cfg.Logger = zap.New(core)
	}
	var pm *proxy.Metrics
	var um *upstream.Metrics
	if cfg.Registry != nil {
		pm, um = proxy.NewMetrics(cfg.Registry), upstream.NewMetrics(cfg.Registry)
	}
	var clients []*upstream.Client
	for _, uc := range cfg.Upstreams {
		if uc.Timeouts == (proxy.Timeouts{}) {
			uc.Timeouts = cfg.Timeouts
		}
		if uc.Retry.Attempts == 0 {
			uc.Retry = cfg.Retry
		}
		if uc.Logger == nil {
			uc.Logger = cfg.Logger
		}
		if uc.Metrics == nil {
			uc.Metrics = um
		}
		c, err := upstream.New(uc)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	p, err := proxy.New(proxy.Config{Upstreams: clients, Default: cfg.Default, Timeouts: cfg.Timeouts, AllowCIDRs: cfg.AllowCIDRs,
		Client: cfg.Client, ProxyAuth: cfg.ProxyAuth, MITM: cfg.MITM, Logger: cfg.Logger, Metrics: pm})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runCtx, stopClients := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { _ = c.Run(runCtx) })
	}
	go func() { done <- p.Serve(ctx, ln, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		stopClients()
		wg.Wait()
	})
	return &env{proxy: p, url: "http://" + ln.Addr().String(), logs: logs}
}

// simpleEnv: one stand-in, one upstream (hostA) with the PKI's client certificate.
func simpleEnv(t testing.TB) (*env, *pkiSet, *standin.Server) {
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{
		upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	return e, ps, up
}

// forwardClient sends requests through the proxy as HTTP_PROXY clients do.
func (e *env) forwardClient(t testing.TB) *http.Client {
	pu, _ := url.Parse(e.url)
	tr := &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// plainClient talks to the proxy as a base URL.
func plainClient(t testing.TB) *http.Client {
	tr := &http.Transport{Proxy: nil, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body of %s: %v", req.URL, err)
	}
	return resp, b
}

func get(t testing.TB, c *http.Client, u string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

func decodeEcho(t testing.TB, b []byte) standin.Echo {
	t.Helper()
	var e standin.Echo
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("echo body %q: %v", b, err)
	}
	return e
}

type errorBody struct {
	Errors []struct {
		ID, Code, Detail string
	}
}

// wantProxyError checks a response made by the proxy itself.
func wantProxyError(t testing.TB, resp *http.Response, body []byte, status int, kind failure.Kind) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if got := resp.Header.Get(failure.HeaderError); got != string(kind) {
		t.Errorf("%s = %q, want %q", failure.HeaderError, got, kind)
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 1 {
		t.Fatalf("error body %q is not Payrails' shape: %v", body, err)
	}
	if got, want := eb.Errors[0].Code, "proxy."+string(kind); got != want {
		t.Errorf("code %q, want %q", got, want)
	}
	if eb.Errors[0].Detail == "" {
		t.Error("empty detail")
	}
	return eb.Errors[0].Detail
}

// waitLogLines polls until n lines with message msg were logged: the
// request line is written after the response reached the client.
func (e *env) waitLogLines(t testing.TB, msg string, n int) []observer.LoggedEntry {
	t.Helper()
	var lines []observer.LoggedEntry
	waitFor(t, fmt.Sprintf("%d %q lines", n, msg), func() bool {
		lines = e.logs.FilterMessage(msg).All()
		return len(lines) >= n
	})
	if len(lines) != n {
		t.Fatalf("%d %q lines, want %d", len(lines), msg, n)
	}
	return lines
}

// waitFor polls cond until it holds, for at most 5 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, what, 5*time.Second, cond)
}

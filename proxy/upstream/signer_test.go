package upstream

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tlsscript"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// startVersionServer is an upstream that requires the client certificate,
// never resumes a session (every connection is a full handshake, so every
// one needs a signature) and answers each request with the TLS version.
func startVersionServer(t *testing.T, p *tlsscript.PKI) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.Server.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.CA.Pool(), NextProtos: []string{"http/1.1"},
		SessionTicketsDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	loopback.Serve(t, ln, func(c net.Conn) {
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		br := bufio.NewReader(tc)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			v := tls.VersionName(tc.ConnectionState().Version)
			fmt.Fprintf(tc, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(v), v)
		}
	})
	return ln.Addr().String()
}

// tokenKey is a client key that says it is in a PKCS#11 token and fails
// to sign while failing is set, as a removed token does.
type tokenKey struct {
	crypto.Signer
	failing atomic.Bool
}

func (k *tokenKey) KeySource() string { return "pkcs11" }

func (k *tokenKey) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if k.failing.Load() {
		return nil, errors.New("pkcs11: 0x32: CKR_DEVICE_REMOVED")
	}
	return k.Signer.Sign(r, d, o)
}

// runningClient is a client of addr presenting cert, its loop running
// until the test ends.
func runningClient(t *testing.T, addr string, roots *x509.CertPool, rs RootSource, cert *tls.Certificate,
	m *Metrics, log *zap.Logger) *Client {
	t.Helper()
	c, err := New(Config{Name: "live", URL: &url.URL{Scheme: "https", Host: "api.test"}, Address: addr,
		RootCAs: roots, Roots: rs, Certificates: FixedCertificate{cert}, Retry: config.Retry{Attempts: 1},
		Metrics: m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return c
}

// get sends one GET with the client's Send, as the inbound proxy does.
func get(t *testing.T, c *Client) (string, *failure.Error) {
	t.Helper()
	resp, _, ferr := c.Send(newReq(t, http.MethodGet, "", nil))
	if ferr != nil {
		return "", ferr
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), nil
}

func signatures(m *Metrics, source, result string) float64 {
	var out dto.Metric
	if err := m.signatures.WithLabelValues("live", source, result).Write(&out); err != nil {
		return -1
	}
	return out.GetCounter().GetValue()
}

// TestClientKeyUnavailable: a signature that fails (a token removed) fails
// that request with 502 client_key_unavailable, is counted, and makes the
// client not ready; the client probes with a full handshake at back-off
// and is ready again, serving, once the key signs again. Every signature
// is counted by upstream and source.
func TestClientKeyUnavailable(t *testing.T) {
	p := tlsscript.NewPKI(t, "api.test")
	addr := startVersionServer(t, p)
	key := &tokenKey{Signer: p.Client.Key}
	cert := p.Client.TLS()
	cert.PrivateKey = key
	m := NewMetrics(prometheus.NewRegistry())
	core, logs := observer.New(zapcore.InfoLevel)
	c := runningClient(t, addr, p.CA.Pool(), nil, &cert, m, zap.New(core))

	if body, ferr := get(t, c); ferr != nil || body != "TLS 1.3" {
		t.Fatalf("first request: %q, %v", body, ferr)
	}
	if n := signatures(m, "pkcs11", "ok"); n < 1 {
		t.Fatalf("signatures ok = %v, want the first handshake's counted under source pkcs11", n)
	}
	key.failing.Store(true)
	c.CloseIdleConnections() // the next request needs a handshake, hence a signature
	_, ferr := get(t, c)
	if ferr == nil || ferr.Kind != failure.KindClientKeyUnavailable || ferr.Kind.Status() != http.StatusBadGateway {
		t.Fatalf("request with the key failing: %v, want 502 %s", ferr, failure.KindClientKeyUnavailable)
	}
	for _, want := range []string{"could not sign", "PKCS#11", "check --key-uri"} {
		if !strings.Contains(ferr.Detail, want) {
			t.Errorf("detail %q lacks %q", ferr.Detail, want)
		}
	}
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "CKR_DEVICE_REMOVED") {
		t.Errorf("Ready() = %v, want not ready naming the key's failure", err)
	}
	if signatures(m, "pkcs11", "error") < 1 || logs.FilterMessageSnippet("could not sign").Len() != 1 {
		t.Errorf("failures counted %v, logged %d; want counted, logged once", signatures(m, "pkcs11", "error"),
			logs.FilterMessageSnippet("could not sign").Len())
	}
	key.failing.Store(false) // the token is back
	poll.Until(t, "the client to be ready again", 10*time.Second, func() bool { return c.Ready() == nil })
	if body, ferr := get(t, c); ferr != nil || body != "TLS 1.3" {
		t.Errorf("after the key recovered: %q, %v", body, ferr)
	}
	if logs.FilterMessageSnippet("signs again; the upstream is ready").Len() != 1 {
		for _, e := range logs.All() {
			t.Logf("log: %s %v", e.Message, e.ContextMap())
		}
		t.Error("the recovery was not logged")
	}
	var lat dto.Metric
	if err := m.signatureTime.WithLabelValues("live", "pkcs11").(prometheus.Histogram).Write(&lat); err != nil ||
		lat.GetHistogram().GetSampleCount() < 2 {
		t.Errorf("signature latencies recorded: %d, %v; want every signature's", lat.GetHistogram().GetSampleCount(), err)
	}
}

// TestKeyWithoutPSSHeldAtTLS12: an RSA key whose token offers no RSA-PSS
// (certs gives it PKCS#1 v1.5 schemes only) cannot sign TLS 1.3: the
// client holds that upstream at TLS 1.2, and says so once.
func TestKeyWithoutPSSHeldAtTLS12(t *testing.T) {
	p := tlsscript.NewPKI(t, "api.test")
	addr := startVersionServer(t, p)
	leaf, err := p.CA.Issue(pki.LeafOptions{CommonName: "merchant", KeyType: pki.KeyRSA2048, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		schemes []tls.SignatureScheme
		want    string
		logged  int
	}{
		{"PKCS#1 v1.5 only", []tls.SignatureScheme{tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512}, "TLS 1.2", 1},
		{"with PSS", nil, "TLS 1.3", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := leaf.TLS()
			cert.SupportedSignatureAlgorithms = tc.schemes
			core, logs := observer.New(zapcore.InfoLevel)
			c := runningClient(t, addr, p.CA.Pool(), nil, &cert, nil, zap.New(core))
			if body, ferr := get(t, c); ferr != nil || body != tc.want {
				t.Errorf("negotiated %q (%v), want %s", body, ferr, tc.want)
			}
			if n := logs.FilterMessageSnippet("held at TLS 1.2").Len(); n != tc.logged {
				t.Errorf("%d log lines about TLS 1.2, want %d", n, tc.logged)
			}
		})
	}
}

// fakeRoots is a RootSource whose pool the test swaps.
type fakeRoots struct {
	mu   sync.Mutex
	pool *x509.CertPool
	ch   chan struct{}
}

func (f *fakeRoots) Pool() *x509.CertPool     { f.mu.Lock(); defer f.mu.Unlock(); return f.pool }
func (f *fakeRoots) Changed() <-chan struct{} { f.mu.Lock(); defer f.mu.Unlock(); return f.ch }
func (f *fakeRoots) set(p *x509.CertPool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pool = p
	close(f.ch)
	f.ch = make(chan struct{})
}

// TestRootsReloaded: when ca_file's roots change, new connections verify
// the server with the new ones, without a restart.
func TestRootsReloaded(t *testing.T) {
	p := tlsscript.NewPKI(t, "api.test")
	addr := startVersionServer(t, p)
	other, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	roots := &fakeRoots{pool: other.Pool(), ch: make(chan struct{})}
	cert := p.Client.TLS()
	c := runningClient(t, addr, nil, roots, &cert, nil, zap.NewNop())
	if _, ferr := get(t, c); ferr == nil || ferr.Kind != failure.KindUpstreamTLS || !strings.Contains(ferr.Detail, "not trusted") {
		t.Fatalf("with the wrong roots: %v, want the server not trusted", ferr)
	}
	roots.set(p.CA.Pool())
	poll.Until(t, "a request to succeed with the new roots", 10*time.Second, func() bool {
		_, ferr := get(t, c)
		return ferr == nil
	})
}

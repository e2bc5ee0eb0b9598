package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
	"go.uber.org/zap"
)

// mitmWorld is a world with a local CA made by `ca init` and the app
// running with connect: mitm.
type mitmWorld struct {
	*world
	r              *running
	caCert, caKey  string
	caPool         *x509.CertPool
	merchantSerial string
}

func newMITMWorld(t *testing.T) *mitmWorld {
	t.Helper()
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	dir := t.TempDir()
	code, out, errOut := runCLI(t, nil, "ca", "init", "--out-dir", dir, "--host", apiHost)
	if code != exitOK {
		t.Fatalf("ca init: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "NODE_EXTRA_CA_CERTS") || !strings.Contains(out, "keytool") {
		t.Errorf("ca init does not say how to trust the CA:\n%s", out)
	}
	m := &mitmWorld{world: w, caCert: filepath.Join(dir, "ca.pem"), caKey: filepath.Join(dir, "ca.key"), merchantSerial: serialOf(leaf)}
	if st, err := os.Stat(m.caKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(m.caCert)
	m.caPool = x509.NewCertPool()
	m.caPool.AppendCertsFromPEM(data)
	m.r = startApp(t, w.configFile(t, fmt.Sprintf("connect: mitm\nmitm: {ca_cert_file: %s, ca_key_file: %s}\n", m.caCert, m.caKey)))
	return m
}

// httpsClient calls https:// URLs through the proxy as an HTTPS_PROXY
// client does (CONNECT), trusting the local CA.
func (m *mitmWorld) httpsClient(t testing.TB) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(m.r.proxy), TLSClientConfig: &tls.Config{RootCAs: m.caPool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// TestMITMGoClient: a Go client with HTTPS_PROXY and the local CA reaches
// the stand-in with the merchant's certificate, keeps one tunnel for many
// requests, and the leaf it was shown verifies only for the allowed host.
func TestMITMGoClient(t *testing.T) {
	m := newMITMWorld(t)
	c := m.httpsClient(t)
	var leaf *x509.Certificate
	for i := range 10 {
		resp, err := c.Get(fmt.Sprintf("https://%s/v1/echo?i=%d", apiHost, i))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body) // to the end, or the client drops the connection
		resp.Body.Close()
		var e standin.Echo
		json.Unmarshal(body, &e)
		if resp.StatusCode != 200 || e.Client.Serial != m.merchantSerial || e.Host != apiHost {
			t.Fatalf("request %d: status %d, upstream saw serial %q host %q", i, resp.StatusCode, e.Client.Serial, e.Host)
		}
		leaf = resp.TLS.PeerCertificates[0]
	}
	connects := 0
	for _, l := range m.r.logs.FilterMessage("request").All() {
		if l.ContextMap()["method"] == "CONNECT" {
			connects++
		}
	}
	if connects != 1 {
		t.Errorf("%d CONNECTs for 10 requests, want 1 (keep-alive inside the tunnel)", connects)
	}
	var tunnelled int // each line is written after its response reached the client
	poll.Until(t, "10 request lines in mitm mode", 10*time.Second, func() bool {
		tunnelled = m.r.logs.FilterField(zap.String("mode", "mitm")).Len()
		return tunnelled >= 10
	})
	if tunnelled != 10 {
		t.Errorf("%d request lines in mitm mode, want 10", tunnelled)
	}
	opts := x509.VerifyOptions{Roots: m.caPool, DNSName: apiHost}
	if _, err := leaf.Verify(opts); err != nil {
		t.Errorf("the leaf does not verify for %s: %v", apiHost, err)
	}
	opts.DNSName = "api.other.payrails.test"
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("the leaf verifies for another host")
	}
	if leaf.NotAfter.Sub(leaf.NotBefore) > 25*time.Hour {
		t.Errorf("the leaf lives %s, want short-lived", leaf.NotAfter.Sub(leaf.NotBefore))
	}
}

// TestMITMRefusals: CONNECT to an unconfigured host, another port or an IP
// literal gets 403 and no tunnel; a request inside a tunnel for another
// host is refused too.
func TestMITMRefusals(t *testing.T) {
	m := newMITMWorld(t)
	for _, target := range []string{"example.com:443", apiHost + ":8443", "127.0.0.1:443", "[::1]:443", apiHost + ".evil.com:443"} {
		before := m.api.Connections()
		resp, conn := rawConnect(t, m.r.addr, target)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(failure.HeaderError) != string(failure.KindHostNotAllowed) {
			t.Errorf("CONNECT %s: %d %s", target, resp.StatusCode, body)
		}
		// No tunnel: what follows on the connection is read as HTTP, not relayed.
		conn.Write([]byte("\x16\x03\x01\x00\x05hello"))
		if m.api.Connections() != before {
			t.Errorf("CONNECT %s reached the upstream", target)
		}
	}
	// Inside a tunnel to apiHost, a request naming another host.
	resp, conn := rawConnect(t, m.r.addr, apiHost+":443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %d", apiHost, resp.StatusCode)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: m.caPool, ServerName: apiHost})
	fmt.Fprintf(tc, "GET /v1/x HTTP/1.1\r\nHost: evil.example\r\n\r\n")
	inner, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if inner.StatusCode != http.StatusForbidden {
		t.Errorf("a request for another host inside the tunnel: %d", inner.StatusCode)
	}
}

func rawConnect(t *testing.T, proxyAddr, target string) (*http.Response, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return resp, conn
}

// TestMITMNameConstraints: a leaf for another host (or an IP), signed with
// the local CA's own key, fails verification: the key cannot impersonate
// other sites.
func TestMITMNameConstraints(t *testing.T) {
	m := newMITMWorld(t)
	caPEM, _ := os.ReadFile(m.caCert)
	keyPEM, _ := os.ReadFile(m.caKey)
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	ca, _ := x509.ParseCertificate(cb.Bytes)
	caKey, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		tmpl   x509.Certificate
		verify string
	}{
		{"another host", x509.Certificate{DNSNames: []string{"www.bank.example"}}, "www.bank.example"},
		{"a subdomain trick", x509.Certificate{DNSNames: []string{apiHost + ".evil.com"}}, apiHost + ".evil.com"},
		{"an IP address", x509.Certificate{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, "10.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tmpl := tt.tmpl
			tmpl.SerialNumber = big.NewInt(42)
			tmpl.Subject = pkix.Name{CommonName: tt.verify}
			tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca, key.Public(), caKey)
			if err != nil {
				t.Fatal(err)
			}
			leaf, _ := x509.ParseCertificate(der)
			_, err = leaf.Verify(x509.VerifyOptions{Roots: m.caPool, DNSName: tt.verify})
			if err == nil {
				t.Fatalf("a leaf for %s signed by the local CA verifies", tt.verify)
			}
			if _, ok := err.(x509.CertificateInvalidError); !ok {
				t.Errorf("error %v (%T), want a name-constraint violation", err, err)
			}
		})
	}
}

// TestMITMLeafCache: many CONNECTs from new clients cost one signature.
func TestMITMLeafCache(t *testing.T) {
	m := newMITMWorld(t)
	for range 20 {
		c := m.httpsClient(t) // a new transport: a new CONNECT and handshake
		resp, err := c.Get("https://" + apiHost + "/v1/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.Transport.(*http.Transport).CloseIdleConnections()
	}
	mfs := scrape(t, m.r.admin)
	if got := value(mfs, "payrails_proxy_mitm_leaf_signatures_total", nil); got != 1 {
		t.Errorf("%v leaf signatures for 20 CONNECTs to one host, want 1", got)
	}
}

// TestMITMInterop: curl and Python's urllib through HTTPS_PROXY with the
// local CA.
func TestMITMInterop(t *testing.T) {
	m := newMITMWorld(t)
	t.Run("curl --proxy --cacert", func(t *testing.T) {
		curl := interop.Tool(t, "curl")
		out, err := exec.Command(curl, "-sS", "-f", "--proxy", "http://"+m.r.addr, "--cacert", m.caCert,
			"https://"+apiHost+"/v1/payments?x=1").Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		checkMITMEcho(t, m, out)
	})
	t.Run("python urllib https_proxy + SSL_CERT_FILE", func(t *testing.T) {
		py := interop.Tool(t, "python3")
		script := `import sys, urllib.request
print(urllib.request.urlopen("https://` + apiHost + `/v1/payments?x=1", timeout=30).read().decode())`
		cmd := exec.Command(py, "-c", script)
		cmd.Env = append(os.Environ(), "https_proxy=http://"+m.r.addr, "SSL_CERT_FILE="+m.caCert, "no_proxy=", "NO_PROXY=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		checkMITMEcho(t, m, out)
	})
}

func checkMITMEcho(t *testing.T, m *mitmWorld, out []byte) {
	t.Helper()
	var e standin.Echo
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if e.Client.Serial != m.merchantSerial || e.Path != "/v1/payments" || e.Query != "x=1" {
		t.Errorf("upstream saw serial %q path %q query %q", e.Client.Serial, e.Path, e.Query)
	}
}

// TestMITMErrorsInsideTunnel: a failing upstream answers inside the tunnel
// with the proxy's JSON error, as in forward mode.
func TestMITMErrorsInsideTunnel(t *testing.T) {
	m := newMITMWorld(t)
	c := m.httpsClient(t)
	m.api.Close()
	for _, c := range m.r.app.clients {
		c.CloseIdleConnections()
	}
	resp, err := c.Get("https://" + apiHost + "/v1/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(failure.HeaderError) != string(failure.KindUpstreamUnreachable) {
		t.Errorf("inside the tunnel: %d %s %s", resp.StatusCode, resp.Header.Get(failure.HeaderError), body)
	}
}

// TestMITMShutdown: on shutdown a request in progress inside a tunnel
// finishes, and then the proxy ends the tunnel itself (hijacked
// connections are not the HTTP server's to wait for).
func TestMITMShutdown(t *testing.T) {
	m := newMITMWorld(t)
	resp, conn := rawConnect(t, m.r.addr, apiHost+":443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: m.caPool, ServerName: apiHost})
	before := m.api.Requests() // the app's own verification of its certificate counts too
	fmt.Fprintf(tc, "GET /delay/400ms HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	poll.Until(t, "the slow request to reach the upstream", 10*time.Second, func() bool { return m.api.Requests() > before })
	stopped := make(chan struct{})
	go func() { m.r.stop(); close(stopped) }()
	br := bufio.NewReader(tc)
	inner, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request in progress got no answer: %v", err)
	}
	io.Copy(io.Discard, inner.Body)
	if inner.StatusCode != 200 {
		t.Errorf("in-flight request inside the tunnel: %d", inner.StatusCode)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the tunnel stayed open after shutdown")
	}
	<-stopped
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// envRunMain makes the test binary run main() instead of the tests, so
// that a test can start the program as a process of its own (signals,
// exit codes) without building it first.
const envRunMain = "PAYRAILS_PROXY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

const apiHost = "api.acme.payrails.test"

// world is a stand-in Payrails API and a certificate folder, everything an
// app needs, made fresh per test.
type world struct {
	ca      *pki.CA
	api     *standin.Server
	apiOpts standin.Options // Keys is shared by every restart
	certDir string
	caFile  string
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, DNSNames: []string{apiHost}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	opts := standin.Options{Certificate: srv.TLS(), ClientCAs: ca.Pool(), ClientID: "cid", ClientSecret: "s3cret",
		Keys: &standin.KeyCounter{}}
	api, err := standin.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := &world{ca: ca, api: api, apiOpts: opts, certDir: filepath.Join(dir, "certs"), caFile: filepath.Join(dir, "ca.pem")}
	t.Cleanup(func() { w.api.Close() })
	if err := os.Mkdir(w.certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// restartAPI stops the stand-in (closing every connection, as a deploy
// would) and starts it again on the same address.
func (w *world) restartAPI(t testing.TB) {
	t.Helper()
	w.api.Close()
	o := w.apiOpts
	o.Addr = w.api.Addr
	api, err := standin.Start(o)
	if err != nil {
		t.Fatalf("restarting the stand-in: %v", err)
	}
	w.api = api
}

// clientCert issues a client certificate whose NotBefore orders it: later
// calls with a larger age offset give older certificates.
func (w *world) clientCert(t testing.TB, cn string, notBefore time.Time) *pki.Leaf {
	t.Helper()
	l, err := w.ca.Issue(pki.LeafOptions{CommonName: cn, NotBefore: notBefore, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// configFile writes a YAML configuration for one upstream in front of the
// stand-in, with extra top-level YAML appended.
func (w *world) configFile(t testing.TB, extra string) string {
	t.Helper()
	y := fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
log: {level: debug, format: json}
upstreams:
  - name: live
    url: https://%s
    address: %s
    cert_dir: %s
    ca_file: %s
%s`, apiHost, w.api.Addr, w.certDir, w.caFile, extra)
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// running is an app serving in the background.
type running struct {
	app   *app
	addr  string // the proxy's HOST:PORT
	admin string // the admin listener's HOST:PORT
	logs  *observer.ObservedLogs
	stop  func()
	proxy *url.URL
}

// startApp loads the configuration file through the config package and
// runs the same app as `serve`.
func startApp(t testing.TB, cfgPath string) *running {
	t.Helper()
	return startAppEnv(t, cfgPath, nil)
}

// startAppEnv is startApp with env as the environment the configuration
// is read with.
func startAppEnv(t testing.TB, cfgPath string, env map[string]string) *running {
	t.Helper()
	cfg, err := config.Load(cfgPath, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	a, err := newApp(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan listeners, 1)
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, func(l listeners) { ready <- l }) }()
	var l listeners
	select {
	case l = <-ready:
	case err := <-done:
		t.Fatalf("app stopped: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("app.run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	pu, _ := url.Parse("http://" + l.proxy)
	r := &running{app: a, addr: l.proxy, admin: l.admin, logs: logs, stop: stop, proxy: pu}
	r.waitVerified(t)
	return r
}

// waitVerified waits until the app has asked each upstream about the
// certificate it presents (reload.verify), so that tests counting the
// upstream's connections and requests start from a settled state.
func (r *running) waitVerified(t testing.TB) {
	t.Helper()
	if !r.app.cfg.Reload.Verify {
		return
	}
	for _, v := range r.app.views {
		up := v.Client
		if up == nil || v.Store.Certificate() == nil {
			continue // the local CA's store, or nothing to verify
		}
		poll.Until(t, "the app to verify its certificate for "+up.Name(), 10*time.Second, func() bool {
			for _, st := range up.CertificateStatuses() {
				if st.InUse && st.Result != upstream.VerifyPending {
					return true
				}
			}
			return false
		})
	}
}

// client sends requests through the app as HTTP_PROXY clients do.
func (r *running) client(t testing.TB) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(r.proxy), MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// clients returns n clients of the app, one per load worker.
func (r *running) clients(t testing.TB, n int) []*http.Client {
	cs := make([]*http.Client, n)
	for i := range cs {
		cs[i] = r.client(t)
	}
	return cs
}

// echoSerial makes one forward-mode request and returns the serial the
// upstream saw.
func echoSerial(c *http.Client) (string, error) {
	resp, err := c.Get("http://" + apiHost + "/v1/echo")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var e standin.Echo
	if err := json.Unmarshal(body, &e); err != nil {
		return "", err
	}
	return e.Client.Serial, nil
}

func serialOf(l *pki.Leaf) string { return fmt.Sprintf("%X", l.Cert.SerialNumber.Bytes()) }

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

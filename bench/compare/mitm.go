package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
)

// mitmConns is how many keep-alive clients the mitm scenario runs.
const mitmConns = 16

// proxyMITMConf is this proxy with connect: mitm, the local CA in the
// bench folder's mitm/ (written by runMITM).
var proxyMITMConf = template.Must(template.New("proxy-mitm").Parse(`listen: {{.Addr}}
admin_listen: {{.Admin}}
log: {level: warn, format: json}
connect: mitm
mitm: {ca_cert_file: {{.Dir}}/../mitm/ca.pem, ca_key_file: {{.Dir}}/../mitm/ca.key}
upstreams:
  - name: bench
    url: https://{{.Host}}
    address: {{.API}}
    cert_dir: {{.PKI.ClientDir}}
    ca_file: {{.PKI.CA}}
`))

// runMITM compares the two ways an HTTP client reaches the API through
// this proxy: forward mode (plain http:// through HTTP_PROXY) and
// connect: mitm (https:// through HTTPS_PROXY, the proxy terminating TLS
// with a local CA). Both run against one proxy process with the same Go
// load generator (wrk cannot speak CONNECT), mitmConns keep-alive clients,
// so the difference is the cost of the tunnel's TLS. The forward row is
// the reference: ×best is the mitm path relative to forward mode.
func runMITM(ctx context.Context, b *bench, s scenario) ([]row, error) {
	caPool, err := b.writeMITMCA()
	if err != nil {
		return nil, err
	}
	procs := &procSet{}
	defer procs.stopAll()
	p := peer{Name: "proxy-mitm", About: "this proxy with connect: mitm", conf: proxyMITMConf,
		confName: "config.yaml", argv: proxyArgv, ready: "/readyz"}
	in, err := b.startPeer(ctx, procs, p, b.api)
	if err != nil {
		return nil, err
	}
	proxyURL := &url.URL{Scheme: "http", Host: in.addr}
	ways := []struct {
		row    row
		target string
		tls    *tls.Config
	}{
		{row{Scenario: s.Name, Peer: "fwd (go client)", Ref: true}, "http://" + apiHost + "/small", nil},
		{row{Scenario: s.Name, Peer: "mitm (go client)"}, "https://" + apiHost + "/small", &tls.Config{RootCAs: caPool}},
	}
	for i := range ways { // warm-up: tunnels and pools open
		if _, err := goLoad(ctx, proxyURL, ways[i].tls, ways[i].target, time.Second); err != nil {
			return nil, fmt.Errorf("mitm warm-up %s: %w", ways[i].row.Peer, err)
		}
	}
	for run := 0; run < b.opts.runs; run++ {
		for k := range ways {
			w := &ways[(run+k)%len(ways)]
			before, err := groupCPU(in.proc.pgid())
			if err != nil {
				return nil, err
			}
			stopProfile := b.profile(ctx, in, b.opts.duration)
			f, err := goLoad(ctx, proxyURL, w.tls, w.target, b.opts.duration)
			stopProfile()
			if err != nil {
				w.row.Err = err.Error()
				continue
			}
			after, _ := groupCPU(in.proc.pgid())
			if f.Requests > 0 {
				f.CPUms1k = ms(after-before) / float64(f.Requests) * 1000
			}
			w.row.Runs = append(w.row.Runs, f)
			b.progress("%s run %d/%d %-16s %s", s.Name, run+1, b.opts.runs, w.row.Peer, f.summary())
		}
	}
	rows := make([]row, len(ways))
	for i, w := range ways {
		rows[i] = w.row
		rows[i].Median = medianOf(w.row.Runs)
	}
	return rows, nil
}

// writeMITMCA makes the local CA (as `ca init` does) in the bench folder.
func (b *bench) writeMITMCA() (*x509.CertPool, error) {
	certPEM, keyPEM, err := certs.NewMITMCA([]string{apiHost}, time.Now())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, "mitm")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool, nil
}

// goLoad runs mitmConns clients, each on its own kept-alive connection
// through the proxy, for d, and returns the rate and latencies.
func goLoad(ctx context.Context, proxyURL *url.URL, tlsCfg *tls.Config, target string, d time.Duration) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		errs     atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range mitmConns {
		tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: tlsCfg, MaxConnsPerHost: 1, DisableCompression: true}
		c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := getOK(context.Background(), c, target); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return figures{}, fmt.Errorf("no request succeeded: %v", firstErr.Load())
	}
	return figures{ReqPerSec: float64(len(lat)) / elapsed.Seconds(), P50ms: ms(percentile(lat, 50)),
		P99ms: ms(percentile(lat, 99)), Requests: int64(len(lat)), Errors: errs.Load()}, nil
}

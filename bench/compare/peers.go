package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"
)

// peer is one proxy under test: a row group of the table.
type peer struct {
	Name    string // row label and --peers value
	Tool    string // program looked up in PATH; "" for this proxy (--proxy-bin or built)
	bin     string // this proxy's binary for this row (--proxy-bins); "" means the run's
	Ref     bool   // a reference peer: ratios and targets compare with the best of these
	Forward bool   // clients send absolute-form requests (HTTP_PROXY) instead of origin-form
	About   string // one line for the report

	conf     *template.Template
	confName string
	// argv returns the command line and extra environment for the peer.
	argv func(b *bench, bin, dir, conf string) (args, env []string)
	// ready, when set, is polled (GET, 200) on the admin address after the
	// listener is up.
	ready string
	// reload makes the running peer read its configuration and certificate
	// files again and returns once the reload is complete (rotated). It is
	// nil for this proxy, which watches its certificate folder instead.
	reload func(ctx context.Context, b *bench, in *instance) error
}

// allPeers is every peer the runner knows, in table order.
var allPeers = []peer{
	{Name: "nginx", Tool: "nginx", Ref: true, About: "nginx proxy_pass https, upstream keepalive 64, ssl_session_reuse",
		conf: nginxConf, confName: "nginx.conf", argv: func(_ *bench, bin, dir, conf string) ([]string, []string) {
			return []string{bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")}, nil
		}, reload: reloadNginx},
	{Name: "haproxy", Tool: "haproxy", Ref: true, About: "HAProxy mode http, server ssl crt, http-reuse always (master-worker, -W)",
		conf: haproxyConf, confName: "haproxy.cfg", argv: func(_ *bench, bin, _, conf string) ([]string, []string) {
			return []string{bin, "-W", "-db", "-f", conf}, nil
		}, reload: reloadHAProxy},
	{Name: "stunnel", Tool: "stunnel4", Ref: true, About: "stunnel4 client = yes (TCP: one upstream TLS connection per client connection)",
		conf: stunnelConf, confName: "stunnel.conf", argv: func(_ *bench, bin, _, conf string) ([]string, []string) {
			return []string{bin, conf}, nil
		}, reload: reloadStunnel},
	{Name: "caddy", Tool: "caddy", Ref: true, About: "Caddy reverse_proxy, transport http tls_client_auth, keep-alive pool 64",
		conf: caddyConf, confName: "Caddyfile", argv: func(b *bench, bin, dir, conf string) ([]string, []string) {
			// Caddy keeps its state under XDG_DATA_HOME and XDG_CONFIG_HOME:
			// the peer's folder, not the runner's home.
			return []string{bin, "run", "--config", conf, "--adapter", "caddyfile"},
				[]string{"GOMAXPROCS=" + strconv.Itoa(b.cpus.Workers), "HOME=" + dir,
					"XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
		}, reload: reloadCaddy},
	{Name: "proxy-base", About: "this proxy, base-URL mode (origin-form GET /path)",
		conf: proxyConf, confName: "config.yaml", argv: proxyArgv, ready: "/readyz"},
	{Name: "proxy-fwd", Forward: true, About: "this proxy, forward mode (absolute-form GET http://api.bench.test/path)",
		conf: proxyConf, confName: "config.yaml", argv: proxyArgv, ready: "/readyz"},
}

func proxyArgv(b *bench, bin, _, conf string) ([]string, []string) {
	env := []string{"GOMAXPROCS=" + strconv.Itoa(b.cpus.Workers)}
	if b.opts.cpuProfiles != "" {
		env = append(env, "PAYRAILS_PROXY_DEBUG_PPROF=1") // /debug/pprof on the admin port, for --cpuprofile
	}
	return []string{bin, "serve", "--config", conf}, env
}

// instance is a running peer.
type instance struct {
	peer
	proc     *proc
	addr     string     // plain-HTTP listener
	admin    string     // this proxy's admin listener, Caddy's admin API
	dir      string     // the peer's own folder
	confPath string     // its configuration file
	pki      *pkiFiles  // with the peer's own client certificate files
	pairs    [][]string // this proxy: the files of each pair in its folder, oldest first (rotated)
}

// startPeer starts p in a fresh folder with api as its upstream, pinned to
// the peers' CPUs, waits until it is ready and checks that one request
// through it is answered by the API. The process joins procs.
func (b *bench) startPeer(ctx context.Context, procs *procSet, p peer, api string) (*instance, error) {
	dir, err := os.MkdirTemp(b.dir, p.Name+"-")
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	in := &instance{peer: p, dir: dir, confPath: filepath.Join(dir, p.confName)}
	if in.pki, err = b.pki.forPeer(dir); err != nil {
		return nil, err
	}
	in.pairs = [][]string{{in.pki.ClientCert, in.pki.ClientKey}}
	if in.addr, err = freeAddr(); err != nil {
		return nil, err
	}
	if in.admin, err = freeAddr(); err != nil {
		return nil, err
	}
	bind, port, err := net.SplitHostPort(in.addr)
	if err != nil {
		return nil, err
	}
	var conf bytes.Buffer
	data := map[string]any{"Dir": dir, "Addr": in.addr, "Admin": in.admin, "API": api, "Host": apiHost,
		"PKI": in.pki, "Workers": b.cpus.Workers, "Bind": bind, "Port": port}
	if err := p.conf.Execute(&conf, data); err != nil {
		return nil, err
	}
	if err := os.WriteFile(in.confPath, conf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	args, env := p.argv(b, b.toolPath(p), dir, in.confPath)
	if in.proc, err = procs.start(p.Name, b.cpus.Peer, filepath.Join(dir, "out.log"), env, args...); err != nil {
		return nil, err
	}
	if err := in.waitReady(ctx); err != nil {
		return nil, err
	}
	return in, in.smoke(ctx)
}

// toolPath is the program that runs peer p.
func (b *bench) toolPath(p peer) string {
	switch {
	case p.Tool == "" && p.bin != "":
		return p.bin
	case p.Tool == "":
		return b.proxyBin
	}
	return p.Tool
}

// waitReady waits for the listener and, for this proxy, for /readyz.
func (in *instance) waitReady(ctx context.Context) error {
	if err := in.proc.waitListening(ctx, in.addr, 15*time.Second); err != nil {
		return err
	}
	if in.ready == "" {
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for {
		last := ""
		resp, err := c.Get("http://" + in.admin + in.ready)
		if err != nil {
			last = err.Error()
		} else {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		}
		if time.Now().After(deadline) || in.proc.exited() {
			return fmt.Errorf("%s not ready (%s: %s):\n%s", in.Name, in.ready, last, in.proc.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// url is what a client asks for to get path through the peer: the
// peer's own address in base-URL mode, the API's http:// URL in forward mode.
func (in *instance) url(path string) string {
	if in.Forward {
		return "http://" + apiHost + path
	}
	return "http://" + in.addr + path
}

// client returns an HTTP client for the peer. keepAlive false makes a new
// TCP connection per request, as a legacy client that does not pool does.
func (in *instance) client(keepAlive bool) *http.Client {
	tr := &http.Transport{DisableKeepAlives: !keepAlive, DisableCompression: true}
	if in.Forward {
		tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: in.addr})
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// smoke sends GET /small through the peer and checks the API's answer.
func (in *instance) smoke(ctx context.Context) error {
	c := in.client(false)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url("/small"), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: GET /small: %w\n%s", in.Name, err, in.proc.logTail())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != smallBody {
		return fmt.Errorf("%s: GET /small: status %d, %d bytes (want 200, %d bytes), err %v: %.300s\n%s",
			in.Name, resp.StatusCode, len(body), len(smallBody), err, body, in.proc.logTail())
	}
	return nil
}

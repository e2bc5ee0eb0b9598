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
	argv func(c command) (args, env []string)
	// ready, when set, is polled (GET, 200) on the admin address after the
	// listener is up.
	ready string
	// reload makes the running peer read its configuration and certificate
	// files again and returns once the reload is complete (rotated). It is
	// nil for this proxy, which watches its certificate folder instead.
	reload func(ctx context.Context, in *instance) error
}

// command is what a peer's command line is made of.
type command struct {
	bin     string // the program (peerLauncher.toolPath)
	dir     string // the peer's own folder
	conf    string // its configuration file
	workers int    // cores per peer (cpuPlan.Workers)
	pprof   bool   // this proxy: serve /debug/pprof on the admin port (--cpuprofile)
}

// allPeers is every peer the runner knows, in table order.
var allPeers = []peer{
	{Name: "nginx", Tool: "nginx", Ref: true, About: "nginx proxy_pass https, upstream keepalive 64, ssl_session_reuse",
		conf: nginxConf, confName: "nginx.conf", argv: func(c command) ([]string, []string) {
			return []string{c.bin, "-p", c.dir, "-c", c.conf, "-e", filepath.Join(c.dir, "error.log")}, nil
		}, reload: reloadNginx},
	{Name: "haproxy", Tool: "haproxy", Ref: true, About: "HAProxy mode http, server ssl crt, http-reuse always (master-worker, -W)",
		conf: haproxyConf, confName: "haproxy.cfg", argv: func(c command) ([]string, []string) {
			return []string{c.bin, "-W", "-db", "-f", c.conf}, nil
		}, reload: reloadHAProxy},
	{Name: "stunnel", Tool: "stunnel4", Ref: true, About: "stunnel4 client = yes (TCP: one upstream TLS connection per client connection)",
		conf: stunnelConf, confName: "stunnel.conf", argv: func(c command) ([]string, []string) {
			return []string{c.bin, c.conf}, nil
		}, reload: reloadStunnel},
	{Name: "caddy", Tool: "caddy", Ref: true, About: "Caddy reverse_proxy, transport http tls_client_auth, keep-alive pool 64",
		conf: caddyConf, confName: "Caddyfile", argv: func(c command) ([]string, []string) {
			// Caddy keeps its state under XDG_DATA_HOME and XDG_CONFIG_HOME:
			// the peer's folder, not the runner's home.
			return []string{c.bin, "run", "--config", c.conf, "--adapter", "caddyfile"},
				[]string{"GOMAXPROCS=" + strconv.Itoa(c.workers), "HOME=" + c.dir,
					"XDG_DATA_HOME=" + filepath.Join(c.dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(c.dir, "config")}
		}, reload: reloadCaddy},
	{Name: "proxy-base", About: "this proxy, base-URL mode (origin-form GET /path)",
		conf: proxyConf, confName: "config.yaml", argv: proxyArgv, ready: "/readyz"},
	{Name: "proxy-fwd", Forward: true, About: "this proxy, forward mode (absolute-form GET http://api.bench.test/path)",
		conf: proxyConf, confName: "config.yaml", argv: proxyArgv, ready: "/readyz"},
}

func proxyArgv(c command) ([]string, []string) {
	env := []string{"GOMAXPROCS=" + strconv.Itoa(c.workers)}
	if c.pprof {
		env = append(env, "PAYRAILS_PROXY_DEBUG_PPROF=1") // /debug/pprof on the admin port, for --cpuprofile
	}
	return []string{c.bin, "serve", "--config", c.conf}, env
}

// instance is a running peer.
type instance struct {
	peer
	proc     *proc
	tool     string     // the program it runs (peerLauncher.toolPath)
	cpus     cpuPlan    // the plan it was started under: its workers, the load side's CPUs
	addr     string     // plain-HTTP listener
	admin    string     // this proxy's admin listener, Caddy's admin API
	dir      string     // the peer's own folder
	confPath string     // its configuration file
	pki      *pkiFiles  // with the peer's own client certificate files
	pairs    [][]string // this proxy: the files of each pair in its folder, oldest first (rotated)
}

// peerLauncher starts peers, each in a fresh folder under dir with client
// certificate files of its own, pinned to the peers' CPUs.
type peerLauncher struct {
	dir      string      // the run's folder
	pki      *pkiFiles   // the run's PKI, copied per peer (pkiFiles.forPeer)
	cpus     cpuPlan     // the peers' CPUs and workers
	proxyBin string      // this proxy's binary, for rows without one of their own
	pprof    bool        // --cpuprofile: this proxy serves /debug/pprof
	peers    []peer      // the selected peers, in table order (startAll)
	progress progressLog // where a peer that failed to start is reported
}

// startAll starts every selected peer with api as upstream. It returns
// one instance per peer (nil when it failed to start) and one row per peer
// (with the error when it failed). The processes join procs.
func (l *peerLauncher) startAll(ctx context.Context, procs *procSet, scenario, api string) ([]*instance, []row) {
	ins := make([]*instance, len(l.peers))
	rows := make([]row, len(l.peers))
	for i, p := range l.peers {
		rows[i] = row{Scenario: scenario, Peer: p.Name, Ref: p.Ref}
		in, err := l.start(ctx, procs, p, api)
		if err != nil {
			rows[i].Err = "start: " + err.Error()
			l.progress("%s %s: %v", scenario, p.Name, err)
			continue
		}
		ins[i] = in
	}
	return ins, rows
}

// start starts p in a fresh folder with api as its upstream, pinned to
// the peers' CPUs, waits until it is ready and checks that one request
// through it is answered by the API. The process joins procs.
func (l *peerLauncher) start(ctx context.Context, procs *procSet, p peer, api string) (*instance, error) {
	in, err := l.prepare(p, api)
	if err != nil {
		return nil, err
	}
	args, env := p.argv(command{bin: in.tool, dir: in.dir, conf: in.confPath, workers: l.cpus.Workers, pprof: l.pprof})
	if in.proc, err = procs.start(p.Name, l.cpus.Peer, filepath.Join(in.dir, "out.log"), env, args...); err != nil {
		return nil, err
	}
	if err := in.waitReady(ctx); err != nil {
		return nil, err
	}
	return in, in.smoke(ctx)
}

// prepare makes p's folder, client certificate files, addresses and
// configuration file, with api as its upstream.
func (l *peerLauncher) prepare(p peer, api string) (*instance, error) {
	dir, err := os.MkdirTemp(l.dir, p.Name+"-")
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	in := &instance{peer: p, tool: l.toolPath(p), cpus: l.cpus, dir: dir, confPath: filepath.Join(dir, p.confName)}
	if in.pki, err = l.pki.forPeer(dir); err != nil {
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
		"PKI": in.pki, "Workers": l.cpus.Workers, "Bind": bind, "Port": port}
	if err := p.conf.Execute(&conf, data); err != nil {
		return nil, err
	}
	return in, os.WriteFile(in.confPath, conf.Bytes(), 0o600)
}

// toolPath is the program that runs peer p.
func (l *peerLauncher) toolPath(p peer) string {
	switch {
	case p.Tool == "" && p.bin != "":
		return p.bin
	case p.Tool == "":
		return l.proxyBin
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

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
}

// allPeers is every peer the runner knows, in table order.
var allPeers = []peer{
	{Name: "nginx", Tool: "nginx", Ref: true, About: "nginx proxy_pass https, upstream keepalive 64, ssl_session_reuse",
		conf: nginxConf, confName: "nginx.conf", argv: func(_ *bench, bin, dir, conf string) ([]string, []string) {
			return []string{bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")}, nil
		}},
	{Name: "haproxy", Tool: "haproxy", Ref: true, About: "HAProxy mode http, server ssl crt, http-reuse always",
		conf: haproxyConf, confName: "haproxy.cfg", argv: func(_ *bench, bin, _, conf string) ([]string, []string) {
			return []string{bin, "-db", "-f", conf}, nil
		}},
	{Name: "stunnel", Tool: "stunnel4", Ref: true, About: "stunnel4 client = yes (TCP: one upstream TLS connection per client connection)",
		conf: stunnelConf, confName: "stunnel.conf", argv: func(_ *bench, bin, _, conf string) ([]string, []string) {
			return []string{bin, conf}, nil
		}},
	{Name: "proxy-base", About: "this proxy, base-URL mode (origin-form GET /path)",
		conf: proxyConf, confName: "config.yaml", argv: proxyArgv, ready: "/readyz"},
	{Name: "proxy-fwd", Forward: true, About: "this proxy, forward mode (absolute-form GET http://api.bench.test/path)",
		conf: proxyConf, confName: "config.yaml", argv: proxyArgv, ready: "/readyz"},
}

func proxyArgv(b *bench, bin, _, conf string) ([]string, []string) {
	return []string{bin, "serve", "--config", conf}, []string{"GOMAXPROCS=" + strconv.Itoa(b.cpus.Workers)}
}

// instance is a running peer.
type instance struct {
	peer
	proc  *proc
	addr  string // plain-HTTP listener
	admin string
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
	in := &instance{peer: p}
	if in.addr, err = freeAddr(); err != nil {
		return nil, err
	}
	if in.admin, err = freeAddr(); err != nil {
		return nil, err
	}
	var conf bytes.Buffer
	data := map[string]any{"Dir": dir, "Addr": in.addr, "Admin": in.admin, "API": api, "Host": apiHost,
		"PKI": b.pki, "Workers": b.cpus.Workers}
	if err := p.conf.Execute(&conf, data); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, p.confName)
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	args, env := p.argv(b, b.toolPath(p), dir, confPath)
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
	if p.Tool == "" {
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

package main

import (
	"context"
	"net/http"
	"time"

	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/certstatus"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/admin"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"go.uber.org/zap"
)

// app is the wired sidecar: per upstream a certificate store and a client,
// and the proxy in front of them. serve and demo run the same app.
type app struct {
	cfg      *config.Config
	log      *zap.Logger
	views    []certstatus.View // each store with its upstream's client, by name; the local CA's last, without one
	clients  []*upstream.Client
	tokens   []*certs.Token     // PKCS#11 tokens of key_uri upstreams; closed when run returns
	roots    []*certs.RootStore // each upstream's ca_file, watched with the stores
	watcher  *certs.Watcher
	auth     *proxy.AuthFile // nil without access.proxy_auth_file
	proxy    *proxy.Proxy
	registry *prometheus.Registry
	admin    http.Handler
	hupStops bool // SIGHUP is the caller's to stop with (demo), not a reload

	caReloads *prometheus.CounterVec // ca_file reloads by upstream and result
}

func newApp(cfg *config.Config, log *zap.Logger) (_ *app, err error) {
	warnExposedSecrets(cfg, log)
	a := &app{cfg: cfg, log: log, registry: newRegistry()}
	defer func() {
		if err != nil {
			a.closeTokens() // the process may go on (tests, demo): release the libraries
		}
	}()
	if err := a.upstreams(); err != nil {
		return nil, err
	}
	if f := cfg.Access.ProxyAuthFile; f != "" {
		if a.auth, err = proxy.NewAuthFile(f); err != nil {
			return nil, err
		}
	}
	minter, err := a.mitmLeaves()
	if err != nil {
		return nil, err
	}
	var leaves proxy.LeafSource
	if minter != nil {
		leaves = minter
	}
	a.proxy, err = proxy.New(proxy.Config{
		MITM:       leaves,
		ProxyAuth:  a.auth,
		Upstreams:  a.clients,
		Default:    defaultUpstream(cfg),
		Timeouts:   cfg.Timeouts,
		AllowCIDRs: cfg.Access.AllowCIDRs,
		Client:     proxy.ClientLimits{MaxConns: cfg.Access.MaxConnections},
		Logger:     log,
		Metrics:    proxy.NewMetrics(a.registry),
	})
	if err != nil {
		return nil, err
	}
	a.wireAdmin()
	a.watcher, err = certs.NewWatcher(a.stores(), certs.WatchOptions{Debounce: cfg.Reload.Debounce,
		PollInterval: cfg.Reload.PollInterval}, log.Named("certs"), a.roots...)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// upstreams makes each configured upstream's certificate store and its
// client, paired by name (a.views, in configuration order).
func (a *app) upstreams() error {
	m := upstream.NewMetrics(a.registry)
	for _, u := range a.cfg.Upstreams {
		src, err := a.certSource(u)
		if err != nil {
			return fmt.Errorf("upstream %q: %w", u.Name, err)
		}
		store := certs.NewStore(u.Name, src, a.log.Named("certs"))
		roots, err := certs.NewRootStore(u.Name, u.CAFile, a.log.Named("certs"), certs.WithRootsHook(a.countRootsReload(u.Name)))
		if err != nil {
			return fmt.Errorf("upstream %q: %w", u.Name, err)
		}
		a.roots = append(a.roots, roots)
		via := viaProxy(u.Via, u.ViaAuthFile, "via_auth_file")
		if via != nil && via.Auth != nil {
			if _, _, err := via.Auth(); err != nil { // at start a bad file stops the program; later dials re-read it
				return fmt.Errorf("upstream %q: %s: %w", u.Name, via.AuthSource, err)
			}
		}
		c, err := upstream.New(upstream.Config{
			Name: u.Name, URL: u.URL, Address: u.Address, Roots: roots, Certificates: store,
			CertSource: src.String(), Token: tokenConfig(u.Token), Verify: a.cfg.Reload.Verify,
			VerifyPath: u.VerifyPath, WarmConnections: u.WarmConnections, Via: via,
			Timeouts: a.cfg.Timeouts, Retry: a.cfg.Retry, Metrics: m, Logger: a.log,
		})
		if err != nil {
			return err
		}
		a.clients = append(a.clients, c)
		a.views = append(a.views, certstatus.View{Store: store, Client: c})
	}
	return nil
}

// countRootsReload counts an upstream's ca_file reloads by result
// (payrails_proxy_ca_reloads_total): a bad bundle that kept the old roots
// shows as failed.
func (a *app) countRootsReload(upstream string) func(certs.Result, error) {
	if a.caReloads == nil {
		a.caReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrails_proxy_ca_reloads_total",
			Help: "ca_file reloads by upstream and result (swapped, unchanged, failed: a bad bundle keeps the previous roots).",
		}, []string{"upstream", "result"})
		a.registry.MustRegister(a.caReloads)
	}
	for _, res := range []certs.Result{certs.ResultSwapped, certs.ResultUnchanged, certs.ResultFailed} {
		a.caReloads.WithLabelValues(upstream, string(res)) // visible at 0
	}
	return func(res certs.Result, _ error) { a.caReloads.WithLabelValues(upstream, string(res)).Inc() }
}

// certSource is the upstream's certificate source, with its PKCS#11 token
// opened when key_uri is set. The default (static) build refuses key_uri
// here, naming the pkcs11 flavour: serve exits with code 2.
func (a *app) certSource(u config.Upstream) (certs.Source, error) {
	src := certSource(u)
	if u.KeyURI == nil {
		return src, nil
	}
	if !certs.PKCS11Built {
		return src, fmt.Errorf("key_uri: %w", certs.ErrPKCS11Unavailable)
	}
	tok, err := certs.OpenToken(pkcs11Source(u.KeyURI, u.PKCS11PIN, u.PKCS11PINEnv),
		a.log.Named("pkcs11").With(zap.String("upstream", u.Name)))
	if err != nil {
		return src, fmt.Errorf("key_uri: %w", err)
	}
	a.tokens = append(a.tokens, tok)
	src.Token = tok
	return src, nil
}

// closeTokens releases every token's sessions and library.
func (a *app) closeTokens() {
	for _, t := range a.tokens {
		t.Close()
	}
	a.tokens = nil
}

// defaultUpstream names the upstream with default: true, "" when none.
func defaultUpstream(cfg *config.Config) string {
	for _, u := range cfg.Upstreams {
		if u.Default {
			return u.Name
		}
	}
	return ""
}

// stores are every certificate store the watcher follows.
func (a *app) stores() []*certs.Store {
	var ss []*certs.Store
	for _, v := range a.views {
		ss = append(ss, v.Store)
	}
	return ss
}

// wireAdmin gives the admin endpoints and the certificate collector the
// views.
func (a *app) wireAdmin() {
	var adminUps []admin.Upstream
	for _, v := range a.views {
		adminUps = append(adminUps, v.Admin())
	}
	a.registry.MustRegister(certstatus.NewCollector(a.views))
	a.admin = admin.New(admin.Config{Upstreams: adminUps, Gatherer: a.registry,
		Pprof: os.Getenv("PAYRAILS_PROXY_DEBUG_PPROF") == "1"})
}

// newRegistry holds every metric the process exports: the Go runtime and
// process collectors, the proxy's and the upstream clients' metrics and
// the certificate collector (registered by newApp).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// mitmLeaves sets up connect: mitm: the local CA is a certificate store like
// the client certificates (watched and reloaded the same way), and a
// Minter signs the leaves presented inside tunnels. nil when connect is
// reject.
func (a *app) mitmLeaves() (*certs.Minter, error) {
	if a.cfg.Connect != config.ConnectMITM {
		return nil, nil
	}
	src := certs.Source{CertFile: a.cfg.MITM.CACertFile, KeyFile: a.cfg.MITM.CAKeyFile}
	ca := certs.NewStore("mitm-ca", src, a.log.Named("certs"))
	if err := ca.Ready(); err != nil {
		return nil, fmt.Errorf("connect: mitm: the local CA cannot be used: %w (make one with `payrails-mtls-proxy ca init`)", err)
	}
	if !ca.InUse().IsCA {
		return nil, fmt.Errorf("connect: mitm: %s is not a CA certificate (make one with `payrails-mtls-proxy ca init`)", src.CertFile)
	}
	a.views = append(a.views, certstatus.View{Store: ca}) // watched with the others
	m := certs.NewMinter(ca.Certificate, mitmLeafValidity, mitmLeafCache)
	a.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "payrails_proxy_mitm_leaf_signatures_total",
		Help: "Certificates signed by the local CA for CONNECT tunnels (cached: about one per host per day).",
	}, func() float64 { return float64(m.Signatures()) }))
	return m, nil
}

// Interception leaves live a day and are cached for up to 256 hosts.
const (
	mitmLeafValidity = 24 * time.Hour
	mitmLeafCache    = 256
)

// tokenConfig turns on managed tokens when the upstream has a client ID.
// The secret is read at every fetch, so a rotated secret file is used
// without a restart; the environment variable is fixed for the process.
func tokenConfig(t config.Token) *upstream.TokenConfig {
	if t.ClientID == "" {
		return nil
	}
	secret := t.ClientSecret
	file := t.ClientSecretFile
	source := "token.client_secret_file " + file
	if file == "" {
		source = t.ClientSecretEnv
	}
	return &upstream.TokenConfig{ClientID: t.ClientID, SecretSource: source, Secret: func() ([]byte, error) {
		if file == "" {
			return []byte(secret.Value()), nil
		}
		data, _, err := safefile.Read(file, maxSecretFile)
		if err != nil {
			return nil, fmt.Errorf("reading token.client_secret_file: %w", err)
		}
		return firstLine(data), nil
	}}
}

func certSource(u config.Upstream) certs.Source {
	return certs.Source{
		Dir: u.CertDir, CertFile: u.CertFile, KeyFile: u.KeyFile,
		Passphrase: certs.Passphrase{File: u.KeyPassphraseFile, Value: []byte(u.KeyPassphrase.Value()),
			Env: u.KeyPassphraseEnv},
	}
}

// listenError is a listener that could not be opened.
type listenError struct {
	what, addr, flag string
	err              error
}

func (e *listenError) Error() string {
	hint := "check the address"
	if errors.Is(e.err, syscall.EADDRINUSE) {
		hint = "another process holds the port: stop it or choose another"
	} else if errors.Is(e.err, syscall.EACCES) {
		hint = "ports below 1024 need privileges: choose a port above 1024"
	}
	return fmt.Sprintf("cannot listen on %s for the %s: %v; %s (%s)", e.addr, e.what, e.err, hint, e.flag)
}

func (e *listenError) Unwrap() error { return e.err }

// listeners are the app's open ports.
type listeners struct {
	proxy, admin string // HOST:PORT
}

// run serves until ctx is cancelled. ready, if not nil, is called with the
// listeners' addresses once they accept connections. Every goroutine it
// starts has stopped when it returns.
func (a *app) run(ctx context.Context, ready func(listeners)) error {
	ln, err := proxy.Listen(ctx, a.cfg.Listen)
	if err != nil {
		a.watcher.Close()
		a.closeTokens()
		return &listenError{what: "proxy", addr: a.cfg.Listen, flag: "--listen, PAYRAILS_PROXY_LISTEN or listen:", err: err}
	}
	adminLn, err := net.Listen("tcp", a.cfg.AdminListen)
	if err != nil {
		ln.Close()
		a.watcher.Close()
		a.closeTokens()
		return &listenError{what: "admin endpoints", addr: a.cfg.AdminListen,
			flag: "--admin-listen, PAYRAILS_PROXY_ADMIN_LISTEN or admin_listen:", err: err}
	}
	a.log.Info("proxy listening", zap.String("listen", ln.Addr().String()), zap.String("admin_listen", adminLn.Addr().String()),
		zap.String("version", version), zap.Strings("upstreams", upstreamHosts(a.cfg)))
	if !isLoopback(ln.Addr()) && a.auth == nil {
		a.log.Warn("the proxy listens beyond loopback without proxy authentication: anyone allowed by "+
			"access.allow_cidrs can call Payrails as the merchant; set access.proxy_auth_file, or listen on 127.0.0.1",
			zap.String("listen", ln.Addr().String()), zap.Any("allow_cidrs", a.cfg.Access.AllowCIDRs))
	}

	bg, stopBackground := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// The upstream clients outlast the proxy's shutdown: a request in
	// flight may still need a token or a failover.
	for _, c := range a.clients {
		wg.Go(func() { _ = c.Run(bg) })
	}
	wg.Go(func() {
		if err := admin.Serve(bg, adminLn, a.admin, admin.Limits{}, a.log.Named("admin")); err != nil {
			a.log.Error("admin listener stopped", zap.Error(err))
		}
	})
	wg.Go(func() {
		if err := a.watcher.Run(bg); err != nil {
			a.log.Error("certificate watcher stopped; certificates are no longer reloaded", zap.Error(err))
		}
	})
	if !a.hupStops {
		wg.Go(func() { a.reloadOnSIGHUP(bg) })
	}

	if ready != nil {
		ready(listeners{proxy: ln.Addr().String(), admin: adminLn.Addr().String()})
	}
	err = a.proxy.Serve(ctx, ln, a.cfg.Timeouts.Shutdown)
	stopBackground()
	wg.Wait()
	a.closeTokens()
	a.log.Info("stopped")
	return err
}

// reloadOnSIGHUP forces a certificate reload on SIGHUP (systemd's
// ExecReload, `kill -HUP`) until ctx is done.
func (a *app) reloadOnSIGHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			a.log.Info("SIGHUP: reloading certificates and the proxy_auth_file")
			a.watcher.ReloadAll()
			if a.auth != nil {
				if err := a.auth.Reload(); err != nil {
					a.log.Error("proxy_auth_file not reloaded; the previous credentials stay", zap.Error(err))
				}
			}
		}
	}
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func upstreamHosts(cfg *config.Config) []string {
	var hs []string
	for _, u := range cfg.Upstreams {
		hs = append(hs, u.Name+"="+u.URL.String())
	}
	return hs
}

func errField(err error) zap.Field { return zap.Error(err) }

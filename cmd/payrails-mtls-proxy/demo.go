package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/template"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// Demo names. The .test top-level domain is reserved (RFC 6761), so the
// demo's host can never reach a real server.
const (
	demoHost         = "api.demo.payrails.test"
	demoClientID     = "demo-client"
	demoClientSecret = "demo-secret"
)

func init() {
	register(command{name: "demo", summary: "run everything locally: a throwaway PKI, a stand-in Payrails API and the proxy", order: 20, run: runDemo})
}

// demoFlags are demo's command line.
type demoFlags struct {
	listen, admin, api, keyType, logFormat string
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var f demoFlags
	fs.StringVar(&f.listen, "listen", config.DefaultListen, "proxy listen `HOST:PORT`")
	fs.StringVar(&f.admin, "admin-listen", config.DefaultAdminListen, "admin listen `HOST:PORT`")
	fs.StringVar(&f.api, "api-listen", "127.0.0.1:0", "the stand-in Payrails API's listen `HOST:PORT` (port 0: any free port)")
	fs.StringVar(&f.keyType, "key-type", "rsa4096", "client key: rsa4096 (what Payrails asks for) or ecdsa (faster)")
	fs.StringVar(&f.logFormat, "log-format", "console", "json or console")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: payrails-mtls-proxy demo [flags]")
		fmt.Fprintln(fs.Output(), "\nMakes a throwaway PKI, starts a local stand-in for the Payrails API that requires the")
		fmt.Fprintln(fs.Output(), "client certificate, and runs the proxy in front of it until Ctrl-C (or SIGTERM, SIGHUP);")
		fmt.Fprintln(fs.Output(), "then deletes its folder, which holds a private key. Under `go run`, only Ctrl-C reaches the")
		fmt.Fprintln(fs.Output(), "demo: build the binary (go build ./cmd/payrails-mtls-proxy) to stop it with kill.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	// The folder holds a private key: whatever stops the demo, kill
	// (SIGTERM) or a closed terminal (SIGHUP) as well as Ctrl-C, it is
	// deleted on the way out.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	dir, err := os.MkdirTemp("", "payrails-mtls-proxy-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFailure
	}
	defer os.RemoveAll(dir)
	code, err := demo(ctx, dir, f, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
	}
	return code
}

// demo runs the demo in dir until ctx ends and returns the exit code, with
// the error that made it fail.
func demo(ctx context.Context, dir string, f demoFlags, stdout, stderr io.Writer) (int, error) {
	fmt.Fprintf(stderr, "demo: making a throwaway PKI in %s (client key: %s)...\n", dir, f.keyType)
	d, err := newDemoPKI(dir, f.keyType)
	if err != nil {
		return exitFailure, err
	}
	// Like Payrails: the client certificate is required, and so is an access
	// token, which lives for five minutes.
	// A call without the certificate gets nginx's refusal page, which curl
	// shows as it is (RefusalPage).
	api, err := standin.Start(standin.Options{Addr: f.api, Certificate: d.server.TLS(), ClientCAs: d.ca.Pool(),
		ClientID: demoClientID, ClientSecret: demoClientSecret, RequireToken: true, TokenTTL: 5 * time.Minute, RefusalPage: true})
	if err != nil {
		return exitFailure, err
	}
	defer api.Close()

	// The same path as serve: a configuration file, then the app.
	cfgFile, err := writeDemoConfig(dir, api.Addr, d)
	if err != nil {
		return exitFailure, err
	}
	cfg, err := config.Load(cfgFile, nil, config.Overrides{Listen: f.listen, AdminListen: f.admin, LogFormat: f.logFormat})
	if err != nil {
		return exitUsage, err
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		return exitUsage, err
	}
	a, err := newApp(cfg, log)
	if err != nil {
		return exitFailure, err
	}
	a.hupStops = true // SIGHUP ends the demo (runDemo), it reloads nothing
	err = a.run(ctx, func(l listeners) {
		printDemo(stdout, demoInfo{Proxy: l.proxy, Admin: l.admin, Host: demoHost, API: api.Addr, Dir: dir, CertDir: d.certDir,
			CAFile: d.caFile, ClientID: demoClientID, Secret: demoClientSecret, Port: portOf(api.Addr), Config: cfgFile})
	})
	if err != nil {
		return exitFailure, err
	}
	return exitOK, nil
}

// demoPKI is the demo's throwaway CA and certificates, written to files.
type demoPKI struct {
	ca      *pki.CA
	server  *pki.Leaf
	certDir string
	caFile  string
}

func newDemoPKI(dir, keyType string) (*demoPKI, error) {
	kt := pki.KeyRSA4096
	if keyType == "ecdsa" {
		kt = pki.KeyECDSA
	} else if keyType != "rsa4096" {
		return nil, fmt.Errorf("--key-type %q: use rsa4096 or ecdsa", keyType)
	}
	ca, err := pki.NewCA("payrails-mtls-proxy demo CA")
	if err != nil {
		return nil, err
	}
	server, err := ca.Issue(pki.LeafOptions{CommonName: demoHost, DNSNames: []string{demoHost, "localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		return nil, err
	}
	// As in Payrails' guide: the client certificate's Common Name is the API host.
	client, err := ca.Issue(pki.LeafOptions{CommonName: demoHost, Organization: "Demo Merchant GmbH",
		KeyType: kt, Client: true})
	if err != nil {
		return nil, err
	}
	d := &demoPKI{ca: ca, server: server, certDir: filepath.Join(dir, "certs"), caFile: filepath.Join(dir, "ca.pem")}
	if err := os.Mkdir(d.certDir, 0o700); err != nil {
		return nil, err
	}
	if _, _, err := client.WriteFiles(d.certDir, "domain.pem", "domain.key"); err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.caFile, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return d, nil
}

type demoInfo struct {
	Proxy, Admin, Host, API, Dir, CertDir, CAFile, ClientID, Secret, Port, Config string
}

// writeDemoConfig writes the demo's configuration file: one upstream, the
// stand-in, with its certificate folder and managed tokens.
func writeDemoConfig(dir, apiAddr string, d *demoPKI) (string, error) {
	secret := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secret, []byte(demoClientSecret+"\n"), 0o600); err != nil {
		return "", err
	}
	y := fmt.Sprintf(`# written by payrails-mtls-proxy demo
upstreams:
  - name: demo
    url: https://%s
    address: %s          # the stand-in's loopback port
    cert_dir: %s
    ca_file: %s
    token: {client_id: %s, client_secret_file: %s}
reload: {debounce: 100ms}
`, demoHost, apiAddr, d.certDir, d.caFile, demoClientID, secret)
	path := filepath.Join(dir, "config.yaml")
	return path, os.WriteFile(path, []byte(y), 0o600)
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

var demoText = template.Must(template.New("demo").Parse(`
payrails-mtls-proxy demo is running.

  stand-in Payrails API  https://{{.Host}}  (listening on {{.API}}; requires a client certificate)
  proxy                  http://{{.Proxy}}   (plain HTTP in, mTLS out)
  client certificate     {{.CertDir}}/domain.pem + domain.key
  configuration          {{.Config}}
  admin                  http://{{.Admin}}/readyz  /metrics  /certs

Try, in another terminal. No command carries a certificate, a secret or an Authorization header:
the proxy presents the certificate and adds an access token it fetched and renews itself.

  # 1. Forward mode, as a legacy service with HTTP_PROXY calls it (curl reads the lower-case variable):
  http_proxy=http://{{.Proxy}} curl -s http://{{.Host}}/merchant/payments

  # 2. Base-URL mode: point the service's base URL at the proxy:
  curl -s http://{{.Proxy}}/merchant/payments

  # 3. Payrails' token call itself passes through untouched:
  curl -s -X POST -H 'x-api-key: {{.Secret}}' -H 'Accept: application/json' http://{{.Proxy}}/auth/token/{{.ClientID}}

Without the proxy the stand-in refuses the call, as Payrails' edge does (400 "No required SSL certificate was sent"):

  curl -sS --cacert {{.CAFile}} --connect-to {{.Host}}:443:127.0.0.1:{{.Port}} https://{{.Host}}/merchant/payments

Everything lives in {{.Dir}} and is deleted on exit. Ctrl-C stops the demo (so do SIGTERM and SIGHUP).
`))

func printDemo(w io.Writer, info demoInfo) {
	_ = demoText.Execute(w, info)
}

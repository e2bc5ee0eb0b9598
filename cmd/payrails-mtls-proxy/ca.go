package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

func init() {
	register(command{name: "ca", summary: "ca init: make the local CA for connect: mitm (HTTPS_PROXY support)", order: 60, run: runCA})
}

// hostList collects repeated --host flags.
type hostList []string

func (h *hostList) String() string     { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error { *h = append(*h, strings.ToLower(v)); return nil }

func runCA(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ca init", flag.ContinueOnError)
	var (
		outDir, cfgPath string
		hosts           hostList
		force           bool
	)
	fs.StringVar(&outDir, "out-dir", "", "`folder` to write ca.pem and ca.key (0600) into")
	fs.StringVar(&cfgPath, "config", "", "configuration `file` whose upstream hosts the CA is constrained to")
	fs.Var(&hosts, "host", "a `HOST` the CA may sign for (repeatable; added to the config's upstreams)")
	fs.BoolVar(&force, "force", false, "replace an existing ca.key and ca.pem (regular files only, never a symbolic link)")
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: payrails-mtls-proxy ca init --out-dir DIR [--config FILE] [--host HOST ...] [--force]")
		fmt.Fprintln(fs.Output(), "\nMakes the local CA that connect: mitm signs its interception certificates with. The CA is")
		fmt.Fprintln(fs.Output(), "name-constrained to the upstream hosts: even its stolen key cannot impersonate another site.")
		fs.PrintDefaults()
	}
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help"):
		fs.Usage()
		return exitOK
	case len(args) == 0 || args[0] != "init":
		fs.Usage()
		return exitUsage
	}
	if code, ok := parseFlags(fs, args[1:], stderr); !ok {
		return code
	}
	if outDir == "" {
		fmt.Fprintln(stderr, "ca init: --out-dir is required")
		return exitUsage
	}
	all, listen, err := caHosts(cfgPath, hosts)
	if err != nil {
		fmt.Fprintf(stderr, "ca init: %v\n", err)
		return exitUsage
	}
	certFile, keyFile, err := writeCA(outDir, all, force)
	if err != nil {
		fmt.Fprintf(stderr, "ca init: %v\n", err)
		return exitFailure
	}
	_ = caText.Execute(stdout, map[string]any{"Cert": certFile, "Key": keyFile, "Hosts": strings.Join(all, ", "),
		"Proxy": proxyAddressFor(listen)})
	return exitOK
}

// caHosts are the hosts the CA may sign for: the configuration's upstreams
// (read without checking that the CA files exist yet) and --host; and the
// proxy's listen address, the configuration's or the default.
func caHosts(cfgPath string, extra []string) ([]string, string, error) {
	seen := map[string]bool{}
	var hosts []string
	listen := config.DefaultListen
	add := func(h string) {
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	if cfgPath != "" {
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			return nil, "", fmt.Errorf("reading --config: %w", err)
		}
		cfg, err := config.Parse(data, cfgPath, os.LookupEnv, config.Overrides{}, false)
		if err != nil {
			return nil, "", err
		}
		for _, u := range cfg.Upstreams {
			add(u.Host)
		}
		listen = cfg.Listen
	}
	for _, h := range extra {
		add(h)
	}
	if len(hosts) == 0 {
		return nil, "", errors.New("no host: give --config with the upstreams, or --host api.acme.payrails.io")
	}
	return hosts, listen, nil
}

// proxyAddressFor is the address services use to reach a proxy listening
// on listen: listen itself, but a wildcard host (all interfaces) names no
// address a client can use, so it becomes a placeholder.
func proxyAddressFor(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("PROXY-HOST", port)
	}
	return listen
}

// writeCA makes the CA and writes ca.key (0600) and ca.pem (0644) into
// dir with certs.PlaceFile, as csr writes domain.key: created exclusively,
// never through or over a symbolic link, and with force only over regular
// files. Both names are checked before the CA is made, so that a refusal
// leaves the folder as it was and a key never lands next to another CA's
// certificate.
func writeCA(dir string, hosts []string, force bool) (string, string, error) {
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	for _, p := range []string{keyFile, certFile} {
		err := certs.CheckPlace(p, force)
		if errors.Is(err, certs.ErrExists) {
			return "", "", fmt.Errorf("%s exists: services may already trust the CA it belongs to; give --force to "+
				"replace ca.pem and ca.key (and make the services trust the new CA), or choose another --out-dir", p)
		}
		if err != nil {
			return "", "", err
		}
	}
	certPEM, keyPEM, err := certs.NewMITMCA(hosts, time.Now())
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("creating folder %q: %w", dir, err)
	}
	if err := certs.PlaceFile(keyFile, keyPEM, 0o600, force); err != nil {
		return "", "", err
	}
	if err := certs.PlaceFile(certFile, certPEM, 0o644, force); err != nil {
		if !force {
			_ = os.Remove(keyFile) // made just now: no certificate will ever match it
			return "", "", err
		}
		return "", "", fmt.Errorf("%w (%s was replaced, %s was not: run ca init --force again)", err, keyFile, certFile)
	}
	return certFile, keyFile, nil
}

var caText = template.Must(template.New("ca").Parse(`Wrote {{.Cert}} (the CA certificate, to be trusted by the services)
Wrote {{.Key}}  (its key, mode 0600: it stays with the proxy)

The CA may sign for: {{.Hosts}} (name constraints: these names only, not the names under them, no IP address).

Enable it in the proxy's configuration:
  connect: mitm
  mitm: {ca_cert_file: {{.Cert}}, ca_key_file: {{.Key}}}
and set HTTPS_PROXY=http://{{.Proxy}} and https_proxy=http://{{.Proxy}} for the service (for its http://
URLs HTTP_PROXY=http://{{.Proxy}} and http_proxy; Ruby's Net::HTTP reads only http_proxy, even for
https:// URLs). Every library's settings: docs/clients.md.

Make the service's runtime trust {{.Cert}}:
  Debian/Ubuntu:  cp {{.Cert}} /usr/local/share/ca-certificates/payrails-mtls-proxy.crt && update-ca-certificates
  Alpine:         cp {{.Cert}} /usr/local/share/ca-certificates/payrails-mtls-proxy.crt && update-ca-certificates
  OpenSSL, Go, Ruby, Python urllib:  SSL_CERT_FILE=<a bundle of the system roots plus {{.Cert}}>
                  (it replaces the system bundle: cat /etc/ssl/certs/ca-certificates.crt {{.Cert}} > bundle.pem)
  Python requests: REQUESTS_CA_BUNDLE=<that bundle>
  Node.js:        NODE_EXTRA_CA_CERTS={{.Cert}}   (added to the built-in roots)
  curl:           --cacert <that bundle>, or CURL_CA_BUNDLE
  Java:           keytool -importcert -noprompt -cacerts -storepass changeit -alias payrails-mtls-proxy -file {{.Cert}}
`))

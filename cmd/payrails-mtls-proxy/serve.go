package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

func init() {
	register(command{name: "serve", summary: "run the sidecar", order: 10, run: runServe})
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var (
		configPath string
		o          config.Overrides
	)
	fs.StringVar(&configPath, "config", "", "YAML configuration `file` (env PAYRAILS_PROXY_CONFIG)")
	fs.StringVar(&o.Listen, "listen", "", "proxy listen `HOST:PORT` (default "+config.DefaultListen+")")
	fs.StringVar(&o.AdminListen, "admin-listen", "", "admin listen `HOST:PORT` (default "+config.DefaultAdminListen+")")
	fs.StringVar(&o.Upstream, "upstream", "", "Payrails API base `URL`, https://HOST")
	fs.StringVar(&o.Address, "address", "", "dial `HOST:PORT` instead of resolving the upstream host (like curl --connect-to)")
	fs.StringVar(&o.CertDir, "cert-dir", "", "`folder` with the client certificate and key (watched for new files)")
	fs.StringVar(&o.CertFile, "cert", "", "client certificate `file` (domain.pem), with --key")
	fs.StringVar(&o.KeyFile, "key", "", "private key `file` (domain.key), with --cert")
	fs.StringVar(&o.KeyURI, "key-uri", "", "PKCS#11 `URI` of the key (with --cert) or token (with --cert-dir) instead of --key; "+
		"PIN from pin-source=file: or env PAYRAILS_PROXY_PKCS11_PIN (pkcs11 build)")
	fs.StringVar(&o.KeyPassphraseFile, "key-passphrase-file", "", "`file` holding the key passphrase (or env PAYRAILS_PROXY_KEY_PASSPHRASE)")
	fs.StringVar(&o.CAFile, "ca-file", "", "extra CA certificates `file` to verify the server (system roots otherwise)")
	fs.StringVar(&o.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&o.LogFormat, "log-format", "", "json or console (default json)")
	fs.StringVar(&o.Connect, "connect", "", "what CONNECT (HTTPS_PROXY) requests get: reject (default: 405) or mitm (intercept with the local CA of ca init, with mitm.ca_cert_file and ca_key_file in --config)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: payrails-mtls-proxy serve [--config FILE] [flags overriding the file]")
		fmt.Fprintln(fs.Output(), "\nFlags override PAYRAILS_PROXY_* environment variables, which override the file.")
		fmt.Fprintln(fs.Output(), "Secrets (passphrases, client secrets) come from files or the environment, never flags.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if configPath == "" {
		configPath = os.Getenv("PAYRAILS_PROXY_CONFIG")
	}
	cfg, err := config.Load(configPath, os.LookupEnv, o)
	if err != nil {
		fmt.Fprintf(stderr, "payrails-mtls-proxy: refusing to start, the configuration has problems:\n%v\n", err)
		return exitUsage
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "payrails-mtls-proxy: %v\n", err)
		return exitUsage
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush of stderr
	a, err := newApp(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "payrails-mtls-proxy: refusing to start: %v\n", err)
		return exitUsage
	}
	if err := a.run(ctx, nil); err != nil {
		var le *listenError
		if errors.As(err, &le) {
			fmt.Fprintf(stderr, "payrails-mtls-proxy: %v\n", err)
		}
		log.Error("stopped", errField(err))
		return exitFailure
	}
	return exitOK
}

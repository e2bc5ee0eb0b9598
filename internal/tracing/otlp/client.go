package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// newClient is the HTTP client of the exports to cfg's endpoint. It never
// goes through HTTP_PROXY (in a pod that often names this sidecar), never
// follows a redirect (the configured headers are credentials for the
// endpoint, not for wherever it points), and keeps one connection to the
// collector. For an https endpoint it verifies the collector against
// cfg.CAFile when set (read here, once), else the system's roots, and
// presents cfg.CertFile and KeyFile when set (read here, and again at
// each new connection, so that a renewed pair is used without a restart).
func newClient(cfg config.Tracing) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          1,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // the export's context bounds it
		ForceAttemptHTTP2:     true,
	}
	if cfg.Endpoint.Scheme == "https" {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

func tlsConfig(cfg config.Tracing) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f := cfg.CAFile; f.Path != "" {
		pem, err := os.ReadFile(f.Path)
		if err != nil {
			return nil, fmt.Errorf("reading %s %q: %w; fix the path or unset it", f.Var, f.Path, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %q holds no PEM certificate; point it at the collector's CA certificate (PEM)", f.Var, f.Path)
		}
	}
	if cfg.CertFile.Path != "" {
		p := &clientPair{cert: cfg.CertFile, key: cfg.KeyFile}
		if _, err := p.get(nil); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = p.get
	}
	return tc, nil
}

// clientPair is the client certificate presented to the collector, read
// from its files at each new connection; when they cannot be read then,
// the last pair read is presented.
type clientPair struct {
	cert, key config.TracingFile
	mu        sync.Mutex
	last      *tls.Certificate
}

func (p *clientPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.cert.Path, p.key.Path)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.last != nil {
			return p.last, nil
		}
		return nil, fmt.Errorf("loading the client certificate %s %q with its key %s %q: %w; point them at a PEM certificate "+
			"and its unencrypted PEM key", p.cert.Var, p.cert.Path, p.key.Var, p.key.Path, err)
	}
	p.last = &c
	return p.last, nil
}

// connectionTrouble reports whether err says the collector refused or
// dropped the connection: a collector restarting.
func connectionTrouble(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

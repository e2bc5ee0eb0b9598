//go:build pkcs11 && cgo

package main

import (
	"crypto"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/softhsm"
	"go.uber.org/zap"
)

// countingSigner counts the signatures a key makes.
type countingSigner struct {
	crypto.Signer
	n atomic.Int64
}

func (c *countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, d, o)
}

// rsa4096Token makes an RSA-4096 key in a fresh token and opens the token
// for serving; it returns the token and the key's certificate.
func rsa4096Token(b *testing.B, w *world) (*softhsm.Token, *certs.Token, tls.Certificate) {
	b.Helper()
	tk := softhsm.New(b, "payrails")
	wr, err := certs.OpenTokenForWriting(certs.PKCS11{URI: tk.URI(""), ModulePath: tk.Lib, Token: tk.Label,
		PIN: certs.Passphrase{File: tk.PINFile}}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	key, _, err := wr.GenerateRSA("client-1", 4096)
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := w.ca.Issue(pki.LeafOptions{CommonName: apiHost, Key: pubSigner{key.Public()}, Client: true})
	if err != nil {
		b.Fatal(err)
	}
	wr.Close()
	tok, err := certs.OpenToken(certs.PKCS11{URI: tk.URI("client-1"), ModulePath: tk.Lib, Token: tk.Label,
		Object: "client-1", PIN: certs.Passphrase{File: tk.PINFile}}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tok.Close() })
	snap := certs.Load(certs.Source{CertFile: writeTemp(b, leaf.CertPEM), Token: tok}, time.Now())
	if err := snap.Err(); err != nil {
		b.Fatal(err)
	}
	return tk, tok, *snap.Chosen.Certificate
}

func writeTemp(b testing.TB, data []byte) string {
	p := filepath.Join(b.TempDir(), "domain.pem")
	mustWrite(b, p, data, 0o644)
	return p
}

// BenchmarkPKCS11Handshake: full TLS 1.3 handshakes (no session cache)
// with client authentication against the stand-in, one after another,
// with an RSA-4096 key in a file and in a SoftHSM2 token. handshakes/s is
// the figure; sigs/op confirms one client signature per handshake.
func BenchmarkPKCS11Handshake(b *testing.B) {
	w := newWorld(b)
	fileLeaf, err := w.ca.Issue(pki.LeafOptions{CommonName: apiHost, KeyType: pki.KeyRSA4096, Client: true})
	if err != nil {
		b.Fatal(err)
	}
	_, _, tokenCert := rsa4096Token(b, w)
	for _, tc := range []struct {
		name string
		cert tls.Certificate
	}{{"file", fileLeaf.TLS()}, {"pkcs11", tokenCert}} {
		b.Run(tc.name, func(b *testing.B) {
			cs := &countingSigner{Signer: tc.cert.PrivateKey.(crypto.Signer)}
			cert := tc.cert
			cert.PrivateKey = cs
			cfg := &tls.Config{ServerName: apiHost, RootCAs: w.ca.Pool(), MinVersion: tls.VersionTLS13,
				Certificates: []tls.Certificate{cert}}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", w.api.Addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
			el := time.Since(start)
			b.ReportMetric(float64(b.N)/el.Seconds(), "handshakes/s")
			b.ReportMetric(float64(cs.n.Load())/float64(b.N), "sigs/op")
		})
	}
}

// BenchmarkPKCS11KeepAlive: 64 clients send requests through the sidecar
// (keep-alive on both legs, one warm connection, session tickets) with the
// RSA-4096 key in the token; the figure is the client signatures per 1,000
// requests once the pool is warm (the token's own count), beside the
// upstream handshakes the proxy counted (full and resumed).
func BenchmarkPKCS11KeepAlive(b *testing.B) {
	w := newWorld(b)
	tk, _, tokenCert := rsa4096Token(b, w)
	mustWrite(b, filepath.Join(w.certDir, "domain.pem"), certPEM(tokenCert), 0o644)
	r := startApp(b, withKeyURI(b, w.configFile(b, ""), tk.URI("")))
	tok := r.app.tokens[0]
	clients := r.clients(b, 64)
	warm := func(n int) {
		var wg sync.WaitGroup
		var next atomic.Int64
		for _, c := range clients {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if _, err := echoSerial(c); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	warm(640) // every client's connection to the proxy, and the proxy's pool, in place
	sig0, _ := tok.Signatures()
	full0 := metric(b, r, "payrails_proxy_upstream_tls_handshakes_total", withLabel("resumed", "false"))
	res0 := metric(b, r, "payrails_proxy_upstream_tls_handshakes_total", withLabel("resumed", "true"))
	b.ResetTimer()
	start := time.Now()
	warm(b.N)
	el := time.Since(start)
	b.StopTimer()
	sig1, failed := tok.Signatures()
	full1 := metric(b, r, "payrails_proxy_upstream_tls_handshakes_total", withLabel("resumed", "false"))
	res1 := metric(b, r, "payrails_proxy_upstream_tls_handshakes_total", withLabel("resumed", "true"))
	b.ReportMetric(float64(sig1-sig0)*1000/float64(b.N), "sigs/1000req")
	b.ReportMetric((full1-full0)*1000/float64(b.N), "full-handshakes/1000req")
	b.ReportMetric((res1-res0)*1000/float64(b.N), "resumed/1000req")
	b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
	if failed > 0 {
		b.Errorf("%d signatures failed", failed)
	}
}

func certPEM(c tls.Certificate) []byte { return pki.EncodeCert(c.Certificate[0]) }

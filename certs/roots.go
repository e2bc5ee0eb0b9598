package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
)

// Roots returns the pool that verifies an upstream server: the system roots,
// plus the CA certificates in caFile when it is not "". A caFile without a
// single certificate is an error (it is always a mistake: a key, a CSR, an
// empty file), never silently an empty addition.
func Roots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return rootsFrom("", nil)
	}
	data, _, err := safefile.Read(caFile, maxFileSize)
	if err != nil {
		return nil, fmt.Errorf("reading ca_file %q: %w", caFile, err)
	}
	return rootsFrom(caFile, data)
}

// rootsFrom is the system roots plus the certificates in data, read from
// caFile ("" for none).
func rootsFrom(caFile string, data []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool() // no system store (scratch image): caFile only
	}
	if caFile == "" {
		return pool, nil
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca_file %q: a CERTIFICATE block does not parse: %w", caFile, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("ca_file %q holds no PEM certificate: give the CA certificate that signed the "+
			"server's certificate", caFile)
	}
	return pool, nil
}

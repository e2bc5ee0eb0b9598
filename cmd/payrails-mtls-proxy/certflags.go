package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
)

// certFlags are the client-certificate flags of the operator commands:
// --cert-dir DIR, or --cert F with --key F, and --key-passphrase-file F
// (or PAYRAILS_PROXY_KEY_PASSPHRASE; never a flag value).
type certFlags struct {
	dir, cert, key, passFile string
}

func (c *certFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dir, "cert-dir", "", "`folder` with the client certificate and key")
	fs.StringVar(&c.cert, "cert", "", "client certificate `file` (domain.pem), with --key")
	fs.StringVar(&c.key, "key", "", "private key `file` (domain.key), with --cert")
	fs.StringVar(&c.passFile, "key-passphrase-file", "", "`file` holding the key passphrase (or env PAYRAILS_PROXY_KEY_PASSPHRASE)")
}

// source returns the certificate source the flags describe.
func (c *certFlags) source() (certs.Source, error) {
	var src certs.Source
	switch {
	case c.dir != "" && (c.cert != "" || c.key != ""):
		return src, errors.New("give either --cert-dir or --cert with --key, not both")
	case c.dir != "":
		src.Dir = abs(c.dir)
	case c.cert != "" && c.key != "":
		src.CertFile, src.KeyFile = abs(c.cert), abs(c.key)
	case c.cert != "" || c.key != "":
		return src, errors.New("--cert and --key go together: give both (domain.pem and domain.key)")
	default:
		return src, errors.New("no client certificate: give --cert-dir DIR, or --cert domain.pem --key domain.key")
	}
	if c.passFile != "" {
		src.Passphrase = certs.Passphrase{File: abs(c.passFile)}
	} else if v := os.Getenv("PAYRAILS_PROXY_KEY_PASSPHRASE"); v != "" {
		src.Passphrase = certs.Passphrase{Value: []byte(v), Env: "PAYRAILS_PROXY_KEY_PASSPHRASE"}
	}
	return src, nil
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// certFlags are the client-certificate flags of the operator commands:
// --cert-dir DIR, or --cert F with --key F, and --key-passphrase-file F
// (or PAYRAILS_PROXY_KEY_PASSPHRASE; never a flag value).
type certFlags struct {
	dir, cert, key, passFile, keyURI string
}

func (c *certFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dir, "cert-dir", "", "`folder` with the client certificate and key")
	fs.StringVar(&c.cert, "cert", "", "client certificate `file` (domain.pem), with --key")
	fs.StringVar(&c.key, "key", "", "private key `file` (domain.key), with --cert")
	fs.StringVar(&c.passFile, "key-passphrase-file", "", "`file` holding the key passphrase (or env PAYRAILS_PROXY_KEY_PASSPHRASE)")
	fs.StringVar(&c.keyURI, "key-uri", "", "PKCS#11 `URI` of the key (with --cert) or token (with --cert-dir) instead of --key; "+
		"PIN from pin-source=file: or env "+envPKCS11PIN+" (pkcs11 build)")
}

// open returns the certificate source the flags describe, with its token
// opened when --key-uri is given; close releases the token.
func (c *certFlags) open() (src certs.Source, closeFn func(), err error) {
	src, err = c.source()
	if err != nil || c.keyURI == "" {
		return src, func() {}, err
	}
	p, err := keyURIFlag(c.keyURI)
	if err != nil {
		return src, nil, err
	}
	tok, err := certs.OpenToken(p, nil)
	if err != nil {
		return src, nil, fmt.Errorf("--key-uri: %w", err)
	}
	src.Token = tok
	return src, func() { tok.Close() }, nil
}

// source returns the certificate source the flags describe.
func (c *certFlags) source() (certs.Source, error) {
	var src certs.Source
	if c.keyURI != "" {
		return c.tokenSource()
	}
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

// tokenSource checks the flags that go with --key-uri: --cert-dir (the URI
// names the token) or --cert (it names one key), never --key.
func (c *certFlags) tokenSource() (certs.Source, error) {
	var src certs.Source
	k, err := config.ParseKeyURI(c.keyURI)
	if err != nil {
		return src, fmt.Errorf("--key-uri: %w", err)
	}
	switch {
	case c.key != "":
		return src, errors.New("give either --key or --key-uri, not both: --key-uri is the key, in the token")
	case c.passFile != "":
		return src, errors.New("--key-passphrase-file is for key files; with --key-uri the PIN comes from pin-source=file: " +
			"or " + envPKCS11PIN)
	case c.dir != "" && c.cert != "":
		return src, errors.New("give either --cert-dir or --cert with --key-uri, not both")
	case c.dir != "" && k.NamesKey():
		return src, errors.New("with --cert-dir, --key-uri names the token only (no object= or id=): each certificate " +
			"in the folder is paired with the token's key of the same public key")
	case c.dir != "":
		src.Dir = abs(c.dir)
	case c.cert != "" && !k.NamesKey():
		return src, errors.New("with --cert, --key-uri names the certificate's key: add ;object=LABEL to the URI, " +
			"or give --cert-dir to pair a folder of certificates with the token's keys")
	case c.cert != "":
		src.CertFile = abs(c.cert)
	default:
		return src, errors.New("--key-uri holds the key; give the certificate too: --cert domain.pem, or --cert-dir DIR")
	}
	return src, nil
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
)

// apiHost is the stand-in API's name: the TLS server name every peer
// verifies and the Host of forward-mode requests.
const apiHost = "api.bench.test"

// pkiFiles is the throwaway PKI of one run, as files for the peers and as
// values for the Go clients of the wan scenario.
type pkiFiles struct {
	CA           string // CA certificate (PEM): clients verify the API with it, the API verifies clients
	ServerCert   string
	ServerKey    string
	ClientDir    string // holds only the client certificate and key: this proxy's cert_dir
	ClientCert   string
	ClientKey    string
	ClientBundle string // certificate and key in one file, as HAProxy's crt wants

	Client tls.Certificate // the RSA-4096 client certificate
	Roots  *x509.CertPool  // the CA
}

// makePKI writes a CA, a server certificate for apiHost (ECDSA P-256) and
// an RSA-4096 client certificate (what Payrails asks merchants for) under
// dir.
func makePKI(dir string) (*pkiFiles, error) {
	ca, err := pki.NewCA("payrails-mtls-proxy bench CA")
	if err != nil {
		return nil, err
	}
	server, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, DNSNames: []string{apiHost}, Server: true})
	if err != nil {
		return nil, err
	}
	client, err := ca.Issue(pki.LeafOptions{
		CommonName: apiHost, Organization: "Bench Merchant GmbH", KeyType: pki.KeyRSA4096, Client: true,
	})
	if err != nil {
		return nil, err
	}
	f := &pkiFiles{CA: filepath.Join(dir, "ca.pem"), ClientDir: filepath.Join(dir, "client"),
		Client: client.TLS(), Roots: ca.Pool()}
	if err := os.WriteFile(f.CA, ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing CA: %w", err)
	}
	if f.ServerCert, f.ServerKey, err = server.WriteFiles(dir, "server.pem", "server.key"); err != nil {
		return nil, err
	}
	if err := os.Mkdir(f.ClientDir, 0o700); err != nil {
		return nil, fmt.Errorf("making client folder: %w", err)
	}
	if f.ClientCert, f.ClientKey, err = client.WriteFiles(f.ClientDir, "domain.pem", "domain.key"); err != nil {
		return nil, err
	}
	f.ClientBundle = filepath.Join(dir, "client-bundle.pem")
	bundle := append(append([]byte{}, client.CertPEM...), client.KeyPEM...)
	if err := os.WriteFile(f.ClientBundle, bundle, 0o600); err != nil {
		return nil, fmt.Errorf("writing client bundle: %w", err)
	}
	return f, nil
}

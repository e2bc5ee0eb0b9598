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
// values for the Go clients of the wan scenario. The client paths are empty
// in the run's PKI and set in each peer's copy (forPeer).
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

	ca     *pki.CA   // issues the rotated scenario's certificates
	client *pki.Leaf // the client certificate and key, as issued
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
	f := &pkiFiles{CA: filepath.Join(dir, "ca.pem"),
		Client: client.TLS(), Roots: ca.Pool(), ca: ca, client: client}
	if err := os.WriteFile(f.CA, ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing CA: %w", err)
	}
	if f.ServerCert, f.ServerKey, err = server.WriteFiles(dir, "server.pem", "server.key"); err != nil {
		return nil, err
	}
	return f, nil
}

// forPeer gives one peer client certificate files of its own under dir
// (dir/client/domain.pem and domain.key, and HAProxy's dir/client-bundle.pem)
// and returns the PKI with those paths: the rotated scenario replaces one
// peer's files without touching the others'.
func (f *pkiFiles) forPeer(dir string) (*pkiFiles, error) {
	own := *f
	own.ClientDir = filepath.Join(dir, "client")
	own.ClientCert = filepath.Join(own.ClientDir, "domain.pem")
	own.ClientKey = filepath.Join(own.ClientDir, "domain.key")
	own.ClientBundle = filepath.Join(dir, "client-bundle.pem")
	if err := os.Mkdir(own.ClientDir, 0o700); err != nil {
		return nil, fmt.Errorf("making client folder: %w", err)
	}
	return &own, own.writeClient(f.client)
}

// writeClient replaces the client certificate, key and bundle files with
// leaf's, each through a rename from a temporary file beside the client
// folder, so that a reload never reads half a file.
func (f *pkiFiles) writeClient(leaf *pki.Leaf) error {
	bundle := append(append([]byte{}, leaf.CertPEM...), leaf.KeyPEM...)
	tmp := filepath.Dir(f.ClientBundle)
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.ClientKey, leaf.KeyPEM, 0o600}, {f.ClientCert, leaf.CertPEM, 0o644}, {f.ClientBundle, bundle, 0o600}} {
		if err := writeAtomic(tmp, w.path, w.data, w.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeAtomic writes data to a temporary file in tmpDir and renames it to
// path (both on one file system).
func writeAtomic(tmpDir, path string, data []byte, mode os.FileMode) error {
	t, err := os.CreateTemp(tmpDir, ".write-")
	if err != nil {
		return err
	}
	_, err = t.Write(data)
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(t.Name(), mode)
	}
	if err == nil {
		err = os.Rename(t.Name(), path)
	}
	if err != nil {
		os.Remove(t.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// envPKCS11PIN is where the operator commands (csr, check, token) take a
// token's PIN from when the URI has no pin-source; serve reads it through
// config, which also knows the per-upstream variable.
const envPKCS11PIN = "PAYRAILS_PROXY_PKCS11_PIN"

// pkcs11Source turns a validated key_uri and its PIN into what certs opens.
func pkcs11Source(k *config.KeyURI, pin config.Secret, pinEnv string) certs.PKCS11 {
	p := certs.PKCS11{URI: k.String(), ModulePath: k.ModulePath, Token: k.Token, Serial: k.Serial,
		Manufacturer: k.Manufacturer, Model: k.Model, SlotID: k.SlotID, Object: k.Object, ID: k.ID}
	if k.PINFile != "" {
		p.PIN = certs.Passphrase{File: k.PINFile}
	} else {
		p.PIN = certs.Passphrase{Value: []byte(pin.Value()), Env: pinEnv}
	}
	return p
}

// keyURIFlag parses --key-uri for the operator commands: the URI, and the
// PIN from its pin-source or PAYRAILS_PROXY_PKCS11_PIN. In the default
// build it fails at once, naming the pkcs11 flavour.
func keyURIFlag(s string) (certs.PKCS11, error) {
	k, err := config.ParseKeyURI(s)
	if err != nil {
		return certs.PKCS11{}, fmt.Errorf("--key-uri: %w", err)
	}
	if !certs.PKCS11Built {
		return certs.PKCS11{}, fmt.Errorf("--key-uri: %w", certs.ErrPKCS11Unavailable)
	}
	var pin config.Secret
	if k.PINFile == "" {
		v := os.Getenv(envPKCS11PIN)
		if v == "" {
			return certs.PKCS11{}, errors.New("--key-uri has no PIN: add pin-source=file:/PATH (a file holding the " +
				"token's user PIN) to the URI, or set " + envPKCS11PIN + "; a PIN is never taken from the command line")
		}
		pin = config.NewSecret(v)
	}
	return pkcs11Source(k, pin, envPKCS11PIN), nil
}

package main

import (
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
	"go.uber.org/zap"
)

// maxSecretFile bounds the files holding one secret (a client secret, an
// egress proxy's "user:password"): only their first line is used.
const maxSecretFile = 64 << 10

// warnExposedSecrets logs a warning for each file holding a secret that
// group or others can read: the client secret, proxy-auth and via-auth
// files, as certs does for keys and passphrase files (issue 22). Files
// that cannot be read are left to the code that reads them, which says so.
func warnExposedSecrets(cfg *config.Config, log *zap.Logger) {
	type secretFile struct{ what, key, path string }
	files := []secretFile{{"the proxy credentials file", "access.proxy_auth_file", cfg.Access.ProxyAuthFile}}
	for _, u := range cfg.Upstreams {
		files = append(files,
			secretFile{"the client secret file", "upstreams." + u.Name + ".token.client_secret_file", u.Token.ClientSecretFile},
			secretFile{"the egress proxy credentials file", "upstreams." + u.Name + ".via_auth_file", u.ViaAuthFile})
		if u.KeyURI != nil {
			files = append(files, secretFile{"the PKCS#11 PIN file", "upstreams." + u.Name + ".key_uri pin-source", u.KeyURI.PINFile})
		}
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if st, err := safefile.Info(f.path); err == nil {
			if w := safefile.Warning(f.what, f.path, st); w != "" {
				log.Warn(w, zap.String("key", f.key), zap.String("file", f.path))
			}
		}
	}
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
)

// viaFlags are --via http://HOST:PORT and --via-auth-file F of the
// commands that call the upstream themselves (check --remote, token):
// the same egress proxy as upstreams[].via and via_auth_file, the
// credentials only from a file, never a flag value.
type viaFlags struct {
	via, authFile string
}

func (v *viaFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&v.via, "via", "", "reach the server through this egress proxy, `http://HOST:PORT` (CONNECT; TLS stays end to end)")
	fs.StringVar(&v.authFile, "via-auth-file", "", "with --via: `file` holding \"user:password\" for the egress proxy")
}

// set reports whether either flag was given.
func (v *viaFlags) set() bool { return v.via != "" || v.authFile != "" }

// egress validates the flags as the configuration validates via and
// via_auth_file, and reads the credentials once, so that a bad file is a
// usage error before anything is dialled. nil without --via.
func (v *viaFlags) egress() (*egress.Proxy, error) {
	if v.via == "" {
		if v.authFile != "" {
			return nil, errors.New("--via-auth-file only applies with --via http://HOST:PORT")
		}
		return nil, nil
	}
	u, err := config.ParseVia(v.via)
	if err != nil {
		return nil, fmt.Errorf("--via: %w", err)
	}
	file := v.authFile
	if file != "" {
		file = abs(file)
	}
	e := viaProxy(u, file, "--via-auth-file")
	if e.Auth != nil {
		if _, _, err := e.Auth(); err != nil {
			return nil, fmt.Errorf("%s: %w", e.AuthSource, err)
		}
	}
	return e, nil
}

// viaProxy is the upstream client's egress proxy and its credentials
// file ("" for none); key names the file's setting in messages. The file
// is read at every dial, so that rotated credentials are used without a
// restart. nil when via is nil.
func viaProxy(via *url.URL, authFile, key string) *egress.Proxy {
	if via == nil {
		return nil
	}
	e := &egress.Proxy{URL: via}
	if authFile != "" {
		e.AuthSource = key + " " + authFile
		e.Auth = func() (string, string, error) { return readViaAuth(authFile) }
	}
	return e
}

// readViaAuth reads "user:password" from the first line of file (the
// password may hold colons: RFC 7617 user names cannot). Its errors never
// show the file's content.
func readViaAuth(file string) (user, password string, err error) {
	data, _, err := safefile.Read(file, maxSecretFile)
	if err != nil {
		return "", "", err
	}
	user, password, ok := strings.Cut(string(firstLine(data)), ":")
	if !ok || user == "" {
		return "", "", errors.New(`its first line is not "user:password" for the egress proxy`)
	}
	return user, password, nil
}

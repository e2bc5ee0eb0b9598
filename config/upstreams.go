package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// upstreams builds and validates every upstream, then the rules between
// them: unique names and hosts, at most one default.
func (b *builder) upstreams(r *raw) []Upstream {
	if len(r.upstreams) == 0 {
		if !r.upstreamsBroken {
			b.errs.add(noUpstream(r))
		}
		return nil
	}
	var out []Upstream
	var from []*rawUpstream
	for _, ru := range r.upstreams {
		if ru.broken {
			continue
		}
		out = append(out, b.upstream(ru, len(r.upstreams)))
		from = append(from, ru)
	}
	b.unique(out, from)
	return out
}

// noUpstream is the error for a configuration without any upstream.
func noUpstream(r *raw) *Error {
	e := &Error{Source: sourceDefaults, Key: "upstreams", Reason: "no upstream is configured; give --upstream https://HOST " +
		"and --cert-dir DIR (or --cert FILE --key FILE), or list upstreams in a config file (--config FILE)"}
	if r.file != "" {
		e.Source = r.file
		e.Reason = "no upstream is configured; add an upstreams list with at least one url and cert_dir, " +
			"or give --upstream https://HOST and --cert-dir DIR"
	}
	return e
}

// upstream builds one upstream; n is how many there are in total.
func (b *builder) upstream(ru *rawUpstream, n int) Upstream {
	u := Upstream{Name: b.upstreamName(ru, n)}
	u.URL, u.Host = b.upstreamURL(ru)
	u.Address = b.dialAddress(ru.address)
	u.Default = b.boolean(ru.isDefault, false) || n == 1
	b.certSource(ru, &u)
	u.CAFile = b.file(ru.caFile)
	u.KeyPassphraseFile = b.file(ru.keyPassphraseFile)
	if validName(u.Name) {
		u.KeyPassphrase, u.KeyPassphraseEnv = b.keyPassphrase(ru, u.Name)
		u.Token = b.token(ru, u.Name)
	}
	u.VerifyPath = b.verifyPath(ru.verifyPath)
	u.WarmConnections = b.integer(ru.warm, defaultWarm, 0, maxWarm)
	u.Via, u.ViaAuthFile = b.via(ru)
	return u
}

// verifyPath validates the path of the verification probe.
func (b *builder) verifyPath(s setting) string {
	if !s.set {
		return defaultVerifyPath
	}
	p := strings.TrimSpace(s.value)
	u, err := url.ParseRequestURI(p)
	if err != nil || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || u.Host != "" || strings.ContainsAny(p, " #") {
		b.add(s.at, "%q is not a request path; write a path starting with /, such as / or /health", s.value)
	}
	return p
}

// via validates the optional egress proxy and its credentials file.
func (b *builder) via(ru *rawUpstream) (*url.URL, string) {
	s, auth := ru.via, ru.viaAuthFile
	authFile := b.file(auth)
	if !s.set {
		if auth.set {
			b.add(auth.at, "via_auth_file is set but via is not; set via to the egress proxy, http://HOST:PORT, or remove via_auth_file")
		}
		return nil, authFile
	}
	u, err := ParseVia(s.value)
	if err != nil {
		b.add(s.at, "%s", err.Error())
		return nil, authFile
	}
	return u, authFile
}

// ParseVia validates an egress proxy (upstreams[].via, the --via flag of
// check and token): exactly http://HOST:PORT, no user or password (they
// belong in via_auth_file), no path, query or fragment. It returns the URL
// normalised to scheme and lower-case host:port; the error says what is
// wrong and what to write instead, without the key (the caller names it).
func ParseVia(s string) (*url.URL, error) {
	v := strings.TrimSpace(s)
	const userinfo = "the egress proxy URL must not carry a user or password; put \"user:password\" in a file and set via_auth_file (--via-auth-file)"
	if strings.Contains(v, "@") {
		// Checked before parsing, and the value never repeated: a password
		// with "/", "#" or "?" in it makes the URL unparseable, and the
		// error reaches stderr and the logs.
		return nil, errors.New(userinfo)
	}
	u, err := url.Parse(v)
	const want = "write the egress proxy as http://HOST:PORT, such as http://squid.internal:3128"
	switch {
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%q is not a URL (%v); %s", s, err, want)
	case u.Scheme != "http":
		return nil, fmt.Errorf("%q must use http:// (the proxy sends CONNECT in plain HTTP to the egress proxy, and TLS to the upstream "+
			"stays end to end inside the tunnel); %s", u.Redacted(), want)
	case u.Hostname() == "" || u.Port() == "":
		return nil, fmt.Errorf("%q has no HOST:PORT; %s", u.Redacted(), want)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%q must have no path, query or fragment; %s", u.Redacted(), want)
	}
	if _, ok := parsePort(u.Port(), 1); !ok {
		return nil, fmt.Errorf("%q has port %q; the port must be a number from 1 to 65535", u.Redacted(), u.Port())
	}
	return &url.URL{Scheme: "http", Host: strings.ToLower(u.Host)}, nil
}

// upstreamName validates the name; a lone upstream may leave it out.
func (b *builder) upstreamName(ru *rawUpstream, n int) string {
	if !ru.name.set {
		if n == 1 {
			return "default"
		}
		b.errs.add(&Error{Source: ru.at.source, Key: ru.at.key + ".name", Line: ru.at.line,
			Reason: "name is required when there are two or more upstreams; give each a short name such as live or staging"})
		return ""
	}
	if !validName(ru.name.value) {
		b.add(ru.name.at, "%q is not a valid name; use lowercase letters, digits, '-' and '_', starting with a letter or digit (e.g. live, staging-eu)", ru.name.value)
	}
	return ru.name.value
}

// validName reports whether name matches [a-z0-9][a-z0-9_-]*.
func validName(name string) bool {
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')
		if !ok {
			return false
		}
	}
	return name != ""
}

// upstreamURL validates the base URL and returns it normalised (scheme and
// lower-cased host only) with its host for matching forward requests.
func (b *builder) upstreamURL(ru *rawUpstream) (*url.URL, string) {
	s := ru.url
	if !s.set {
		reason := "url is required; write the Payrails API base URL, e.g. https://api.acme.payrails.io"
		if ru.fromOverrides {
			reason = "the upstream built from flags has no URL; give --upstream https://HOST (or PAYRAILS_PROXY_UPSTREAM)"
		}
		b.errs.add(&Error{Source: ru.at.source, Key: ru.at.key + ".url", Line: ru.at.line, Reason: reason})
		return nil, ""
	}
	u, err := url.Parse(strings.TrimSpace(s.value))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		b.addCause(s.at, err, "%q is not a valid URL (%v); write it like https://api.acme.payrails.io", s.value, err)
		return nil, ""
	}
	if reason := urlProblem(u, s.value); reason != "" {
		b.add(s.at, "%s", reason)
		return nil, ""
	}
	norm := &url.URL{Scheme: "https", Host: strings.ToLower(u.Host)}
	return norm, strings.ToLower(u.Hostname())
}

// urlProblem says what is wrong with an upstream URL, or "". The URL is
// shown redacted: it may carry a password.
func urlProblem(u *url.URL, typed string) string {
	shown := u.Redacted()
	switch {
	case u.Scheme == "http":
		return fmt.Sprintf("%q uses http://, but the proxy always speaks TLS to the upstream (that is where the client certificate is presented); the URL must be https://%s", shown, u.Host)
	case u.Scheme == "" && u.Host == "":
		return fmt.Sprintf("%q is not an absolute URL; write it with the scheme and host, e.g. https://%s", shown, strings.TrimPrefix(u.Path, "//"))
	case u.Scheme != "https" || u.Opaque != "":
		return fmt.Sprintf("%q must be an https:// URL such as https://api.acme.payrails.io", shown)
	case u.User != nil:
		return "the URL must not contain a user name or password; the upstream is authenticated with the client certificate (and token settings), so remove the user info"
	case u.Hostname() == "":
		return fmt.Sprintf("%q has no host; write it like https://api.acme.payrails.io", shown)
	case u.Path != "" && u.Path != "/":
		return fmt.Sprintf("%q has path %q; give only scheme and host (the client's request path is forwarded as-is)", shown, u.Path)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Sprintf("%q has a query; give only scheme and host", shown)
	case strings.Contains(typed, "#"):
		return fmt.Sprintf("%q has a fragment (#...); give only scheme and host", shown)
	}
	if p := u.Port(); p != "" {
		if _, ok := parsePort(p, 1); !ok {
			return fmt.Sprintf("%q has port %q; the port must be a number from 1 to 65535", shown, p)
		}
	}
	return ""
}

// dialAddress validates the optional dial override HOST:PORT.
func (b *builder) dialAddress(s setting) string {
	if !s.set {
		return ""
	}
	host, port, err := net.SplitHostPort(s.value)
	switch {
	case err != nil:
		b.add(s.at, "%q is not a HOST:PORT address (%s); write it like 10.0.0.5:443", s.value, addrErrText(err))
	case host == "":
		b.add(s.at, "%q has no host; write it like 10.0.0.5:443", s.value)
	default:
		if _, ok := parsePort(port, 1); !ok {
			b.add(s.at, "%q has port %q; the port must be a number from 1 to 65535", s.value, port)
		}
	}
	return s.value
}

// certSource checks that exactly one certificate source is given: a folder,
// or a certificate file and key file (or key_uri in place of key_file).
func (b *builder) certSource(ru *rawUpstream, u *Upstream) {
	if ru.keyURI.set {
		b.tokenSource(ru, u)
		return
	}
	dir, cert, key := ru.certDir, ru.certFile, ru.keyFile
	switch {
	case dir.set && (cert.set || key.set):
		other := cert
		if !cert.set {
			other = key
		}
		from := ""
		if other.at.source != dir.at.source {
			from = " (from " + other.at.source + ")"
		}
		b.add(dir.at, "both cert_dir and %s%s are set; use one form: cert_dir for a folder, or cert_file with key_file",
			strings.TrimPrefix(other.at.key, ru.at.key+"."), from)
	case dir.set:
		u.CertDir = b.dir(dir)
	case cert.set && key.set:
		u.CertFile, u.KeyFile = b.file(cert), b.file(key)
	case cert.set:
		b.add(cert.at, "cert_file is set but key_file is not; set key_file to the matching private key (domain.key), or use cert_dir")
	case key.set:
		b.add(key.at, "key_file is set but cert_file is not; set cert_file to the certificate downloaded from the Payrails dashboard (domain.pem), or use cert_dir")
	default:
		reason := "no client certificate is configured; set cert_dir to the folder holding domain.pem and domain.key, or set cert_file and key_file"
		if ru.fromOverrides {
			reason = "no client certificate is configured; give --cert-dir DIR, or --cert FILE and --key FILE"
		}
		b.errs.add(&Error{Source: ru.at.source, Key: ru.at.key, Line: ru.at.line, Reason: reason})
	}
}

// tokenSource validates key_uri and the certificates it goes with: a
// folder (the URI names the token) or one certificate file (the URI names
// one key object), never key_file as well.
func (b *builder) tokenSource(ru *rawUpstream, u *Upstream) {
	s := ru.keyURI
	k, err := ParseKeyURI(s.value)
	if err != nil {
		b.addCause(s.at, err, "%s", err.Error())
		return
	}
	switch dir, cert, key := ru.certDir, ru.certFile, ru.keyFile; {
	case key.set:
		b.add(s.at, "both key_file and key_uri are set; key_uri is used in place of key_file: keep one (with key_uri, "+
			"the key stays in the token and only the certificate is on disk)")
	case dir.set && cert.set:
		b.add(dir.at, "both cert_dir and cert_file are set; use one form: cert_dir for a folder, or cert_file with key_uri")
	case dir.set && k.NamesKey():
		b.add(s.at, "with cert_dir, key_uri names the token only (no object= or id=): each certificate in the folder is "+
			"paired with the token's key of the same public key; remove object=/id=, or use cert_file for one certificate")
	case dir.set:
		u.CertDir = b.dir(dir)
	case cert.set && !k.NamesKey():
		b.add(s.at, "with cert_file, key_uri names the one key of that certificate: add object=LABEL (or id=) to the URI, "+
			"or use cert_dir to pair a folder of certificates with the token's keys")
	case cert.set:
		u.CertFile = b.file(cert)
	default:
		b.add(s.at, "key_uri holds the private key, but no certificate is configured; set cert_dir to the folder of "+
			"certificates downloaded from the Payrails dashboard, or cert_file to the one certificate")
	}
	if ru.keyPassphraseFile.set {
		b.add(ru.keyPassphraseFile.at, "key_passphrase_file is for encrypted key files; with key_uri the token's PIN comes "+
			"from pin-source=file:PATH in the URI or PAYRAILS_PROXY_PKCS11_PIN: remove key_passphrase_file")
	}
	if k.PINFile != "" {
		at := s.at
		b.file(setting{value: k.PINFile, set: true, at: at})
	}
	if k.ModulePath != "" {
		b.module(setting{value: k.ModulePath, set: true, at: s.at})
	}
	u.KeyURI = k
	if validName(u.Name) {
		u.PKCS11PIN, u.PKCS11PINEnv = b.pkcs11PIN(ru, k, u.Name)
	}
}

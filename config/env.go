package config

import (
	"fmt"
	"strings"
)

// envPrefix starts every environment variable the proxy reads.
const envPrefix = "PAYRAILS_PROXY_"

// lookupFunc looks up an environment variable, like os.LookupEnv.
type lookupFunc func(string) (string, bool)

// get returns the variable's value; an empty value counts as not set.
func (l lookupFunc) get(name string) (string, bool) {
	if l == nil {
		return "", false
	}
	v, ok := l(name)
	return v, ok && v != ""
}

// override is one setting that has both a flag and an environment variable.
type override struct {
	flag string // "--listen"
	env  string // suffix after PAYRAILS_PROXY_
	key  string // config key, relative to upstreams[0] for upstream ones
	get  func(*Overrides) string
}

// globalOverrides set top-level keys.
var globalOverrides = []struct {
	override
	field func(*raw) *setting
}{
	{override{"--listen", "LISTEN", "listen", func(o *Overrides) string { return o.Listen }}, func(r *raw) *setting { return &r.listen }},
	{override{"--admin-listen", "ADMIN_LISTEN", "admin_listen", func(o *Overrides) string { return o.AdminListen }}, func(r *raw) *setting { return &r.adminListen }},
	{override{"--log-level", "LOG_LEVEL", "log.level", func(o *Overrides) string { return o.LogLevel }}, func(r *raw) *setting { return &r.logLevel }},
	{override{"--log-format", "LOG_FORMAT", "log.format", func(o *Overrides) string { return o.LogFormat }}, func(r *raw) *setting { return &r.logFormat }},
	{override{"--connect", "CONNECT", "connect", func(o *Overrides) string { return o.Connect }}, func(r *raw) *setting { return &r.connect }},
}

// upstreamOverrides describe the single upstream (see Overrides).
var upstreamOverrides = []struct {
	override
	field func(*rawUpstream) *setting
}{
	{override{"--upstream", "UPSTREAM", "url", func(o *Overrides) string { return o.Upstream }}, func(u *rawUpstream) *setting { return &u.url }},
	{override{"--address", "ADDRESS", "address", func(o *Overrides) string { return o.Address }}, func(u *rawUpstream) *setting { return &u.address }},
	{override{"--cert-dir", "CERT_DIR", "cert_dir", func(o *Overrides) string { return o.CertDir }}, func(u *rawUpstream) *setting { return &u.certDir }},
	{override{"--cert", "CERT", "cert_file", func(o *Overrides) string { return o.CertFile }}, func(u *rawUpstream) *setting { return &u.certFile }},
	{override{"--key", "KEY", "key_file", func(o *Overrides) string { return o.KeyFile }}, func(u *rawUpstream) *setting { return &u.keyFile }},
	{override{"--key-passphrase-file", "KEY_PASSPHRASE_FILE", "key_passphrase_file", func(o *Overrides) string { return o.KeyPassphraseFile }}, func(u *rawUpstream) *setting { return &u.keyPassphraseFile }},
	{override{"--key-uri", "KEY_URI", "key_uri", func(o *Overrides) string { return o.KeyURI }}, func(u *rawUpstream) *setting { return &u.keyURI }},
	{override{"--ca-file", "CA_FILE", "ca_file", func(o *Overrides) string { return o.CAFile }}, func(u *rawUpstream) *setting { return &u.caFile }},
}

// given is an override value that was actually supplied.
type given struct {
	value  string
	source string // "env PAYRAILS_PROXY_X" or "flag --x"
	name   string // how to refer to it in a message: the variable or the flag
}

// lookup returns the environment value (first) and the flag value (second)
// of o that were given, in order of increasing precedence.
func (o override) lookup(env lookupFunc, flags *Overrides) []given {
	var out []given
	if v, ok := env.get(envPrefix + o.env); ok {
		out = append(out, given{v, "env " + envPrefix + o.env, "the environment variable " + envPrefix + o.env})
	}
	if v := o.get(flags); v != "" {
		out = append(out, given{v, "flag " + o.flag, "the flag " + o.flag})
	}
	return out
}

// applyOverrides layers environment variables and then flags over the file.
func applyOverrides(r *raw, env lookupFunc, flags *Overrides, errs *collector) {
	for _, g := range globalOverrides {
		for _, v := range g.lookup(env, flags) {
			*g.field(r) = setting{value: v.value, set: true, at: origin{source: v.source, key: g.key}}
		}
	}
	if v, ok := env.get(envPrefix + "ALLOW_CIDRS"); ok {
		at := origin{source: "env " + envPrefix + "ALLOW_CIDRS", key: "access.allow_cidrs"}
		r.allowCIDRs = settingList{set: true, at: at}
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				r.allowCIDRs.items = append(r.allowCIDRs.items, setting{value: item, set: true, at: at})
			}
		}
	}
	applyUpstreamOverrides(r, env, flags, errs)
}

// applyUpstreamOverrides applies the single-upstream flags and variables:
// they build the upstream when the file has none, override the file's only
// one, and are refused when the file has several (which one would they
// mean?). A certificate folder replaces a file pair and vice versa.
func applyUpstreamOverrides(r *raw, env lookupFunc, flags *Overrides, errs *collector) {
	type change struct {
		given
		key   string
		field func(*rawUpstream) *setting
	}
	var changes []change
	for _, o := range upstreamOverrides {
		for _, v := range o.lookup(env, flags) {
			changes = append(changes, change{v, o.key, o.field})
		}
	}
	if len(changes) == 0 {
		return
	}
	switch n := len(r.upstreams); {
	case n == 0:
		at := origin{source: changes[0].source, key: "upstreams[0]"}
		r.upstreams = []*rawUpstream{{at: at, fromOverrides: true}}
	case n > 1:
		for _, c := range changes {
			errs.add(&Error{Source: c.source, Key: "upstreams", Reason: fmt.Sprintf(
				"%s describes a single upstream, but %s defines %d upstreams; edit upstreams in the file instead, or remove %s",
				c.name, r.file, n, c.name)})
		}
		return
	}
	u := r.upstreams[0]
	for _, c := range changes {
		switch c.key {
		case "cert_dir":
			u.certFile, u.keyFile = setting{}, setting{}
		case "cert_file", "key_file":
			u.certDir = setting{}
		}
		// key_uri is used in place of key_file: the later one of the two wins.
		switch c.key {
		case "key_file":
			u.keyURI = setting{}
		case "key_uri":
			u.keyFile = setting{}
		}
		*c.field(u) = setting{value: c.value, set: true, at: origin{source: c.source, key: "upstreams[0]." + c.key}}
	}
}

// envName turns an upstream name into the NAME part of
// PAYRAILS_PROXY_<NAME>_KEY_PASSPHRASE: upper case, '-' as '_'.
func envName(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

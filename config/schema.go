package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// topKeys is the schema of the file, following DESIGN.md's example. Each
// handler stores into r.
func topKeys(r *raw) keys {
	return keys{
		"listen":       scalar(&r.listen),
		"admin_listen": scalar(&r.adminListen),
		"log": section(keys{
			"level":  scalar(&r.logLevel),
			"format": scalar(&r.logFormat),
		}),
		"access": section(keys{
			"allow_cidrs":     list(&r.allowCIDRs, "[127.0.0.1/32, 10.0.0.0/8]"),
			"proxy_auth_file": scalar(&r.proxyAuthFile),
			"max_connections": scalar(&r.maxConnections),
		}),
		"upstreams": upstreams(r),
		"reload": section(keys{
			"debounce":      scalar(&r.debounce),
			"poll_interval": scalar(&r.pollInterval),
			"verify":        scalar(&r.verify),
		}),
		"timeouts": section(keys{
			"dial":            scalar(&r.dial),
			"tls_handshake":   scalar(&r.tlsHandshake),
			"response_header": scalar(&r.responseHeader),
			"idle_conn":       scalar(&r.idleConn),
			"shutdown":        scalar(&r.shutdown),
		}),
		"retry": section(keys{
			"attempts":            scalar(&r.retryAttempts),
			"backoff":             scalar(&r.retryBackoff),
			"max_backoff":         scalar(&r.retryMaxBackoff),
			"idempotency_headers": list(&r.retryHeaders, "[X-Idempotency-Key, Idempotency-Key]"),
			"add_idempotency_key": scalar(&r.retryAddKey),
			"max_body":            scalar(&r.retryMaxBody),
		}),
		"connect": scalar(&r.connect),
		"mitm": section(keys{
			"ca_cert_file": scalar(&r.mitmCert),
			"ca_key_file":  scalar(&r.mitmKey),
		}),
	}
}

// upstreamKeys is the schema of one upstreams item. There are deliberately
// no keys for the passphrase or client secret values: secrets come from the
// environment or a *_file only (see secretHint).
func upstreamKeys(u *rawUpstream) keys {
	return keys{
		"name":                scalar(&u.name),
		"url":                 scalar(&u.url),
		"address":             scalar(&u.address),
		"default":             scalar(&u.isDefault),
		"cert_dir":            scalar(&u.certDir),
		"cert_file":           scalar(&u.certFile),
		"key_file":            scalar(&u.keyFile),
		"key_passphrase_file": scalar(&u.keyPassphraseFile),
		"ca_file":             scalar(&u.caFile),
		"key_uri":             scalar(&u.keyURI),
		"token": section(keys{
			"client_id":          scalar(&u.clientID),
			"client_secret_file": scalar(&u.clientSecretFile),
		}),
		"verify_path":      scalar(&u.verifyPath),
		"warm_connections": scalar(&u.warm),
		"via":              scalar(&u.via),
		"via_auth_file":    scalar(&u.viaAuthFile),
	}
}

// section is a handler for a nested mapping.
func section(ks keys) handler {
	return func(d *decoder, n *yaml.Node, path string) { d.mapping(n, path, ks) }
}

// scalar is a handler for a single value. Null and "" leave dst unset, so
// `key: ""` means "use the default", as in DESIGN.md's example.
func scalar(dst *setting) handler {
	return func(d *decoder, n *yaml.Node, path string) {
		n = deref(n)
		if n == nil || isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode {
			d.problem(path, n.Line, "must be a single value, "+found(n))
			return
		}
		if n.Value == "" {
			return
		}
		*dst = setting{value: n.Value, set: true, at: d.at(path, n.Line)}
	}
}

// list is the handler for a list of scalars; example shows the shape in
// messages.
func list(dst *settingList, example string) handler {
	return func(d *decoder, n *yaml.Node, path string) {
		n = deref(n)
		if n == nil || isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.problem(path, n.Line, "must be a list such as "+example+", "+found(n))
			return
		}
		*dst = settingList{set: true, at: d.at(path, n.Line)}
		for i, item := range n.Content {
			var s setting
			scalar(&s)(d, item, fmt.Sprintf("%s[%d]", path, i))
			if s.set {
				dst.items = append(dst.items, s)
			}
		}
	}
}

// upstreams is the handler for the upstreams list.
func upstreams(r *raw) handler {
	return func(d *decoder, n *yaml.Node, path string) {
		n = deref(n)
		if n == nil || isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.problem(path, n.Line, "must be a list of upstreams (each item starts with '- name:'), "+found(n))
			r.upstreamsBroken = true
			return
		}
		for i, item := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			line := item.Line
			if it := deref(item); it != nil {
				line = it.Line
			}
			u := &rawUpstream{at: d.at(key, line)}
			d.upstreamName = peekName(item, len(n.Content))
			u.broken = !d.mapping(item, key, upstreamKeys(u))
			d.upstreamName = ""
			r.upstreams = append(r.upstreams, u)
		}
	}
}

package config

import (
	"fmt"
	"net"
	"strings"
)

// builder turns a raw into a Config, filling defaults and collecting every
// validation problem. Reading single values is its embedded values'.
type builder struct {
	values
	env lookupFunc
}

// values reads and validates single settings (values.go, paths.go),
// recording each problem where the setting came from.
type values struct {
	errs       *collector
	checkFiles bool
	baseDir    string
}

// build returns the Config; it is only meaningful when no errors were
// collected.
func (b *builder) build(r *raw) *Config {
	cfg := &Config{Source: r.name}
	cfg.Listen, cfg.AdminListen = b.listeners(r)
	cfg.Log = Log{
		Level:  b.oneOf(b.orDefault(r.logLevel, "log.level", defaultLogLevel), "debug", "info", "warn", "error"),
		Format: b.oneOf(b.orDefault(r.logFormat, "log.format", defaultLogFormat), "json", "console"),
	}
	cfg.Access = Access{
		AllowCIDRs:     b.allowCIDRs(r.allowCIDRs),
		ProxyAuthFile:  b.file(r.proxyAuthFile),
		MaxConnections: b.integer(r.maxConnections, DefaultMaxConnections, 1, 1<<16),
	}
	cfg.Upstreams = b.upstreams(r)
	cfg.Reload = Reload{
		Debounce:     b.duration(r.debounce, defaultDebounce, true),
		PollInterval: b.duration(r.pollInterval, defaultPollInterval, false),
		Verify:       b.boolean(r.verify, defaultVerify),
	}
	def := DefaultTimeouts()
	cfg.Timeouts = Timeouts{
		Dial:           b.duration(r.dial, def.Dial, false),
		TLSHandshake:   b.duration(r.tlsHandshake, def.TLSHandshake, false),
		ResponseHeader: b.duration(r.responseHeader, def.ResponseHeader, false),
		IdleConn:       b.duration(r.idleConn, def.IdleConn, false),
		Shutdown:       b.duration(r.shutdown, def.Shutdown, false),
	}
	cfg.Retry = b.retry(r)
	cfg.Connect, cfg.MITM = b.connect(r)
	return cfg
}

// retry validates the retry block.
func (b *builder) retry(r *raw) Retry {
	def := DefaultRetry()
	rt := Retry{
		Attempts:           b.integer(r.retryAttempts, def.Attempts, 1, maxRetryAttempts),
		Backoff:            b.duration(r.retryBackoff, def.Backoff, false),
		MaxBackoff:         b.duration(r.retryMaxBackoff, def.MaxBackoff, false),
		IdempotencyHeaders: b.headerNames(r.retryHeaders, def.IdempotencyHeaders),
		AddIdempotencyKey:  b.boolean(r.retryAddKey, def.AddIdempotencyKey),
		MaxBody:            b.size(r.retryMaxBody, def.MaxBody, maxRetryMaxBody),
	}
	if rt.Backoff > 0 && rt.MaxBackoff > 0 && rt.MaxBackoff < rt.Backoff {
		blame := r.retryMaxBackoff
		if !blame.set {
			blame = r.retryBackoff
		}
		b.add(blame.at, "retry.max_backoff (%s) is shorter than retry.backoff (%s); the cap must be at least the first pause",
			rt.MaxBackoff, rt.Backoff)
	}
	return rt
}

// add records a problem at o.
func (b *values) add(o origin, format string, args ...any) {
	b.errs.add(o.problem(fmt.Sprintf(format, args...)))
}

// addCause records a problem at o that wraps cause.
func (b *values) addCause(o origin, cause error, format string, args ...any) {
	e := o.problem(fmt.Sprintf(format, args...))
	e.err = cause
	b.errs.add(e)
}

// orDefault returns s, or the default value def attributed to "defaults".
func (b *builder) orDefault(s setting, key, def string) setting {
	if s.set {
		return s
	}
	return setting{value: def, set: true, at: origin{source: sourceDefaults, key: key}}
}

// oneOf checks that s is one of allowed and returns it.
func (b *builder) oneOf(s setting, allowed ...string) string {
	for _, a := range allowed {
		if s.value == a {
			return s.value
		}
	}
	b.add(s.at, "%q is not allowed; use one of %s", s.value, strings.Join(allowed, ", "))
	return s.value
}

// listeners validates listen and admin_listen, which must differ.
func (b *builder) listeners(r *raw) (string, string) {
	listen := b.orDefault(r.listen, "listen", DefaultListen)
	admin := b.orDefault(r.adminListen, "admin_listen", DefaultAdminListen)
	lok := b.listenAddr(listen)
	aok := b.listenAddr(admin)
	if lok && aok && sameListener(listen.value, admin.value) {
		blame, other := admin, listen
		if !admin.set || admin.at.source == sourceDefaults {
			blame, other = listen, admin
		}
		b.add(blame.at, "%q uses the same address as %s %q (from %s); give the proxy and admin listeners different ports",
			blame.value, other.at.key, other.value, other.at.source)
	}
	return listen.value, admin.value
}

// listenAddr checks a listener address: HOST:PORT with a numeric port
// 0..65535 (0 picks a free port; HOST may be empty for all interfaces).
func (b *builder) listenAddr(s setting) bool {
	_, port, err := net.SplitHostPort(s.value)
	if err != nil {
		b.add(s.at, "%q is not a HOST:PORT address (%s); write it like 127.0.0.1:8080, or :8080 for all interfaces",
			s.value, addrErrText(err))
		return false
	}
	if _, ok := parsePort(port, 0); !ok {
		b.add(s.at, "%q has port %q; the port must be a number from 0 to 65535", s.value, port)
		return false
	}
	return true
}

// sameListener reports whether two valid listener addresses would collide:
// the same non-zero port on the same host, or on any host when one of them
// listens on all interfaces.
func sameListener(a, b string) bool {
	ah, ap, _ := net.SplitHostPort(a)
	bh, bp, _ := net.SplitHostPort(b)
	pa, _ := parsePort(ap, 0)
	pb, _ := parsePort(bp, 0)
	if pa != pb || pa == 0 {
		return false
	}
	return strings.EqualFold(ah, bh) || isWildcardHost(ah) || isWildcardHost(bh)
}

func isWildcardHost(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }

// connect validates connect and the mitm CA it needs.
func (b *builder) connect(r *raw) (ConnectMode, MITM) {
	mode := b.orDefault(r.connect, "connect", string(ConnectReject))
	b.oneOf(mode, string(ConnectReject), string(ConnectMITM))
	m := MITM{CACertFile: b.file(r.mitmCert), CAKeyFile: b.file(r.mitmKey)}
	switch {
	case ConnectMode(mode.value) == ConnectMITM:
		for _, f := range []struct {
			s   setting
			key string
		}{{r.mitmCert, "mitm.ca_cert_file"}, {r.mitmKey, "mitm.ca_key_file"}} {
			if !f.s.set {
				b.errs.add(b.mitmMissing(r, mode, f.key))
			}
		}
	case r.mitmCert.set != r.mitmKey.set:
		set, missing := r.mitmCert, "mitm.ca_key_file"
		if r.mitmKey.set {
			set, missing = r.mitmKey, "mitm.ca_cert_file"
		}
		b.add(set.at, "%s is set but %s is not; set both (see `payrails-mtls-proxy ca init`) or neither", set.at.key, missing)
	}
	return ConnectMode(mode.value), m
}

// mitmMissing reports a missing mitm key. The key can only be set in the
// file, so the error points at the file when there is one.
func (b *builder) mitmMissing(r *raw, mode setting, key string) *Error {
	e := &Error{Source: mode.at.source, Key: key, Reason: fmt.Sprintf(
		"connect is mitm (from %s), which needs the local CA; create one with `payrails-mtls-proxy ca init --out-dir DIR` and set %s",
		mode.at.source, key)}
	if r.file != "" {
		e.Source = r.file
		if mode.at.fromFile {
			e.Line = mode.at.line
		}
	}
	return e
}

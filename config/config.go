package config

import (
	"net/netip"
	"net/url"
	"time"
)

// Defaults for the listeners, exported so the command line can show them in
// its help text. The flags themselves default to "" (not given).
const (
	DefaultListen      = "127.0.0.1:8080"
	DefaultAdminListen = "127.0.0.1:9090"
)

// Defaults for everything else, in one place so that defaults() and the
// documentation cannot drift apart.
const (
	defaultLogLevel       = "info"
	defaultLogFormat      = "json"
	defaultDebounce       = 250 * time.Millisecond
	defaultPollInterval   = 30 * time.Second
	defaultDial           = 5 * time.Second
	defaultTLSHandshake   = 10 * time.Second
	defaultResponseHeader = 60 * time.Second
	defaultIdleConn       = 90 * time.Second
	defaultShutdown       = 30 * time.Second
	defaultVerify         = true
	defaultVerifyPath     = "/"
	defaultWarm           = 1
	maxWarm               = 64
	defaultRetryAttempts  = 4
	maxRetryAttempts      = 10
	defaultRetryBackoff   = 200 * time.Millisecond
	defaultRetryMaxBack   = 2 * time.Second
	defaultRetryMaxBody   = 1 << 20
	maxRetryMaxBody       = 64 << 20
	defaultAddKey         = false
)

// defaultIdempotencyHeaders are the headers Payrails deduplicates by
// (x-idempotency-key, sent by its SDKs on every mutating call) and the IETF
// draft's name that Go's own Transport also treats as making a request
// replayable. A function so that every Config gets its own slice.
func defaultIdempotencyHeaders() []string { return []string{"X-Idempotency-Key", "Idempotency-Key"} }

// DefaultAllowCIDRs is the default of access.allow_cidrs: loopback, what a
// sidecar sharing its pod's or host's network namespace means: all of
// 127.0.0.0/8 (a service may bind or connect from any loopback address)
// and ::1. A function, not a variable, so that every caller gets its own
// slice and none can change another's defaults.
func DefaultAllowCIDRs() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
	}
}

// DefaultTimeouts are the defaults of the timeouts block, what Load fills
// in for keys that are not set; for tools that reach an upstream without a
// configuration (check --remote, token) and for the proxy's one
// zero-means-default rule.
func DefaultTimeouts() Timeouts {
	return Timeouts{Dial: defaultDial, TLSHandshake: defaultTLSHandshake, ResponseHeader: defaultResponseHeader,
		IdleConn: defaultIdleConn, Shutdown: defaultShutdown}
}

// WithDefaults returns t with each zero field set to its default: the one
// zero-means-default rule of the packages that take a Timeouts.
func (t Timeouts) WithDefaults() Timeouts {
	d := DefaultTimeouts()
	for _, f := range []struct{ v, def *time.Duration }{{&t.Dial, &d.Dial}, {&t.TLSHandshake, &d.TLSHandshake},
		{&t.ResponseHeader, &d.ResponseHeader}, {&t.IdleConn, &d.IdleConn}, {&t.Shutdown, &d.Shutdown}} {
		if *f.v > 0 {
			*f.def = *f.v
		}
	}
	return d
}

// DefaultRetry is the retry block's defaults, what Load fills in for keys
// that are not set; for the proxy's zero-means-default rule.
func DefaultRetry() Retry {
	return Retry{Attempts: defaultRetryAttempts, Backoff: defaultRetryBackoff, MaxBackoff: defaultRetryMaxBack,
		IdempotencyHeaders: defaultIdempotencyHeaders(), AddIdempotencyKey: defaultAddKey, MaxBody: defaultRetryMaxBody}
}

// Config is the validated configuration, as returned by Load and Parse.
//
// A *Config returned without error satisfies every rule in this package: it
// has at least one upstream, every duration is in range, and every path is
// absolute and clean. Callers must treat it as read-only (it shares no memory
// with other Configs, so reading it from many goroutines is safe). The zero
// value is not a valid configuration; obtain one from Load or Parse.
type Config struct {
	// Source is the path of the YAML file the configuration was read from,
	// as given to Load; "" when there was no file.
	Source string
	// Listen is the HOST:PORT of the proxy listener. Default "127.0.0.1:8080".
	Listen string
	// AdminListen is the HOST:PORT of the admin listener (/healthz, /readyz,
	// /metrics, /certs). Default "127.0.0.1:9090". Never equal to Listen.
	AdminListen string
	// Log configures the logger.
	Log Log
	// Access says who may use the proxy.
	Access Access
	// Upstreams are the Payrails environments the proxy forwards to, in file
	// order. Never empty; names and hosts are unique; at most one is Default.
	Upstreams []Upstream
	// Reload configures how certificate folders are watched.
	Reload Reload
	// Timeouts bound the upstream connection and shutdown.
	Timeouts Timeouts
	// Retry says when and how a request is sent again.
	Retry Retry
	// Connect is what a CONNECT request gets. Default ConnectReject.
	Connect ConnectMode
	// MITM is the local CA used when Connect is ConnectMITM; both files are
	// set in that mode, and may be empty otherwise.
	MITM MITM
}

// Log configures the logger.
type Log struct {
	// Level is one of "debug", "info", "warn", "error". Default "info".
	Level string
	// Format is "json" or "console". Default "json".
	Format string
}

// Access says who may use the proxy; it carries the merchant's identity, so
// it must not be an open relay.
type Access struct {
	// AllowCIDRs are the client networks allowed to use the proxy. Never
	// empty. Default [127.0.0.1/32, ::1/128]. A bare IP in the file becomes
	// a /32 or /128; prefixes are masked (10.1.2.3/8 becomes 10.0.0.0/8).
	AllowCIDRs []netip.Prefix
	// ProxyAuthFile is an optional absolute path to a file of "user:password"
	// lines for Proxy-Authorization; "" means no proxy authentication.
	ProxyAuthFile string
	// MaxConnections caps the client connections the proxy port serves at
	// once, tunnels included; at the cap the connection idle the longest is
	// closed to make room. 1 to 65536; default DefaultMaxConnections.
	MaxConnections int
}

// DefaultMaxConnections is access.max_connections' default: a sidecar
// serves one service, whose connection pool rarely holds more than a few
// dozen; 512 idle connections cost about 10 MiB.
const DefaultMaxConnections = 512

// Upstream is one Payrails API environment and the client certificate used
// to reach it.
type Upstream struct {
	// Name is unique and matches [a-z0-9][a-z0-9_-]*. It names the upstream
	// in logs and metrics and in environment variables
	// (PAYRAILS_PROXY_<NAME>_..., upper-cased, '-' as '_'). When there is
	// exactly one upstream and it has no name, it is "default".
	Name string
	// URL is the base URL: scheme "https", a host and optional port, nothing
	// else (Path, query, fragment and user info are empty). Never nil.
	URL *url.URL
	// Host is URL.Hostname() lower-cased, without port: what forward-mode
	// (absolute-form) requests are matched against.
	Host string
	// Address is an optional HOST:PORT to dial instead of resolving Host;
	// the TLS server name and Host header stay Host. "" means resolve Host.
	Address string
	// Default marks the upstream that origin-form (base-URL) requests go to.
	// At most one upstream is Default; a lone upstream always is. With two
	// or more upstreams and none marked, origin-form requests have no target.
	Default bool
	// CertDir is the absolute path of a folder of PEM/PKCS#12 files. Exactly
	// one of CertDir and the pair CertFile+KeyFile is set.
	CertDir string
	// CertFile and KeyFile are absolute paths of the client certificate and
	// its private key; both set or both empty (then CertDir is set).
	CertFile, KeyFile string
	// KeyPassphraseFile is an optional absolute path of a file holding the
	// key passphrase. When set, KeyPassphrase is empty.
	KeyPassphraseFile string
	// KeyPassphrase comes from PAYRAILS_PROXY_<NAME>_KEY_PASSPHRASE, or else
	// PAYRAILS_PROXY_KEY_PASSPHRASE when KeyPassphraseFile is empty. It is
	// never read from the file or argv. Empty means no passphrase given.
	KeyPassphrase Secret
	// KeyPassphraseEnv names the environment variable KeyPassphrase came
	// from, for messages; "" when KeyPassphrase is empty.
	KeyPassphraseEnv string
	// KeyURI, when not nil, says that the private keys are in a PKCS#11
	// token (key_uri, an RFC 7512 URI) instead of files: with CertFile it
	// names one key object (KeyFile is then ""), with CertDir it names the
	// token and each certificate in the folder is paired with the token's
	// key of the same public key. nil means keys on disk.
	KeyURI *KeyURI
	// PKCS11PIN is the token's PIN from PAYRAILS_PROXY_<NAME>_PKCS11_PIN,
	// else PAYRAILS_PROXY_PKCS11_PIN, when KeyURI has no pin-source file.
	// Never from the file, the URI or argv. Empty otherwise.
	PKCS11PIN Secret
	// PKCS11PINEnv names the variable PKCS11PIN came from; "" when empty.
	PKCS11PINEnv string
	// CAFile is an optional absolute path of PEM roots used, in addition to
	// the system roots, to verify the upstream server.
	CAFile string
	// Token configures managed access tokens; its zero value means none.
	Token Token
	// VerifyPath is the path of the HEAD request that verifies a newly
	// chosen certificate against this upstream before it takes traffic
	// (Reload.Verify). Starts with "/". Default "/".
	VerifyPath string
	// WarmConnections is how many idle, verified TLS connections with the
	// current certificate are kept open to this upstream; 0 means none.
	// 0..64. Default 1.
	WarmConnections int
	// Via is an optional egress proxy, http://HOST:PORT, through which
	// every connection to this upstream is tunnelled with CONNECT (TLS
	// stays end to end). nil means direct connections.
	Via *url.URL
	// ViaAuthFile is an optional absolute path of a file holding
	// "user:password" for Via (Proxy-Authorization: Basic). Only set
	// together with Via.
	ViaAuthFile string
}

// Token configures managed Payrails access tokens for an upstream. Either all
// of it is empty (no managed tokens), or ClientID is set together with
// exactly one of ClientSecretFile and ClientSecret.
type Token struct {
	// ClientID is the Client ID from the Payrails dashboard.
	ClientID string
	// ClientSecretFile is an absolute path of a file holding the client
	// secret.
	ClientSecretFile string
	// ClientSecret comes from PAYRAILS_PROXY_<NAME>_CLIENT_SECRET; never from
	// the file or argv.
	ClientSecret Secret
	// ClientSecretEnv names the environment variable ClientSecret came from,
	// for messages; "" when ClientSecret is empty.
	ClientSecretEnv string
}

// Reload configures how certificate folders are watched.
type Reload struct {
	// Debounce is how long file events must be quiet before a reload; >= 0.
	// Default 250ms.
	Debounce time.Duration
	// PollInterval is the fallback re-read period; > 0. Default 30s.
	PollInterval time.Duration
	// Verify makes a newly chosen certificate take traffic only after a
	// TLS connection and a HEAD VerifyPath request to the upstream have
	// shown that the upstream accepts it. Default true.
	Verify bool
}

// Timeouts bound the upstream connection and shutdown. All are > 0.
type Timeouts struct {
	// Dial bounds the TCP connect. Default 5s.
	Dial time.Duration
	// TLSHandshake bounds the TLS handshake. Default 10s.
	TLSHandshake time.Duration
	// ResponseHeader bounds the wait for response headers. Default 60s.
	ResponseHeader time.Duration
	// IdleConn is how long an idle upstream connection is kept. Default 90s.
	IdleConn time.Duration
	// Shutdown bounds the wait for in-flight requests on SIGTERM. Default 30s.
	Shutdown time.Duration
}

// Retry says when a request may be sent again: only where a second send
// cannot double a payment (DESIGN.md § Retries).
type Retry struct {
	// Attempts is the total number of sends of one request, the first
	// included; 1 means never retry. 1..10. Default 4.
	Attempts int
	// Backoff is the pause before the second send, doubled (with jitter)
	// for each further one; > 0. Default 200ms.
	Backoff time.Duration
	// MaxBackoff caps the pause; >= Backoff. Default 2s.
	MaxBackoff time.Duration
	// IdempotencyHeaders are the request headers (canonical form) whose
	// presence makes a request safe to send again: the upstream
	// deduplicates by their value. May be empty. Default
	// [X-Idempotency-Key, Idempotency-Key].
	IdempotencyHeaders []string
	// AddIdempotencyKey gives POST and PATCH requests without one of
	// IdempotencyHeaders a fresh random X-Idempotency-Key. Default false.
	AddIdempotencyKey bool
	// MaxBody is the largest request body, in bytes, kept in memory so
	// that the request can be sent again; larger bodies are streamed and
	// never retried. 0..64 MiB; 0 means bodies are never kept. Default 1 MiB.
	MaxBody int64
}

// ConnectMode is what a CONNECT (HTTPS_PROXY) request gets.
type ConnectMode string

// The valid ConnectModes. A validated Config holds one of these.
const (
	// ConnectReject answers CONNECT with 405 and advice (a tunnel cannot
	// carry a client certificate). The default.
	ConnectReject ConnectMode = "reject"
	// ConnectMITM terminates TLS for allowed hosts with the local CA in
	// Config.MITM and forwards over mTLS.
	ConnectMITM ConnectMode = "mitm"
)

// MITM names the local CA used for ConnectMITM.
type MITM struct {
	// CACertFile and CAKeyFile are absolute paths of the CA certificate and
	// key (see `payrails-mtls-proxy ca init`). Both set or both empty.
	CACertFile, CAKeyFile string
}

// Overrides are the command-line flags of `serve`. An empty string means
// "not given". The zero value overrides nothing.
//
// Upstream, Address, CertDir, CertFile, KeyFile, KeyURI, KeyPassphraseFile and CAFile
// describe a single upstream: they build one when the file has none, override
// the file's only upstream, and are an error when the file has two or more.
// Relative paths are resolved against the working directory.
type Overrides struct {
	Listen            string // --listen
	AdminListen       string // --admin-listen
	Upstream          string // --upstream (the upstream URL)
	Address           string // --address
	CertDir           string // --cert-dir
	CertFile          string // --cert
	KeyFile           string // --key
	KeyPassphraseFile string // --key-passphrase-file
	CAFile            string // --ca-file
	KeyURI            string // --key-uri
	LogLevel          string // --log-level
	LogFormat         string // --log-format
	Connect           string // --connect
}

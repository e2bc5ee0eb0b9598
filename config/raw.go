package config

// This file holds the intermediate, unvalidated form of the configuration:
// every value is a string that remembers where it came from, so that the
// validation in build.go can name the file and line, flag or environment
// variable of each problem.

// origin says where a setting's value came from.
type origin struct {
	source   string // Error.Source: "file x.yaml", "flag --listen", "env ...", "defaults"
	key      string // Error.Key: "upstreams[0].url"
	line     int    // line in the YAML file, 0 otherwise
	fromFile bool   // relative paths resolve against the file's directory
}

// problem builds an Error located at o.
func (o origin) problem(reason string) *Error {
	return &Error{Source: o.source, Key: o.key, Line: o.line, Reason: reason}
}

// setting is one scalar value. An unset setting has set == false; empty
// strings and YAML nulls are treated as unset.
type setting struct {
	value string
	set   bool
	at    origin
}

// settingList is a list of scalars (access.allow_cidrs,
// retry.idempotency_headers): set (even to an empty list) or not.
type settingList struct {
	items []setting
	set   bool
	at    origin
}

// raw is the configuration after reading the file and applying environment
// variables and flags, before defaults and validation.
type raw struct {
	name    string // Config.Source
	file    string // Error.Source for the file: "file x.yaml"; "" when none
	baseDir string // directory relative file paths resolve against

	listen, adminListen setting
	logLevel, logFormat setting
	allowCIDRs          settingList
	proxyAuthFile       setting
	maxConnections      setting

	upstreams []*rawUpstream
	// upstreamsBroken is set when the upstreams key was present but not a
	// list; "no upstream configured" would then only add noise.
	upstreamsBroken bool

	debounce, pollInterval, verify                         setting
	dial, tlsHandshake, responseHeader, idleConn, shutdown setting

	retryAttempts, retryBackoff, retryMaxBackoff setting
	retryAddKey, retryMaxBody                    setting
	retryHeaders                                 settingList

	connect           setting
	mitmCert, mitmKey setting
}

// rawUpstream is one item of upstreams, or the upstream built from flags.
type rawUpstream struct {
	at            origin // the item itself: key "upstreams[i]"
	broken        bool   // the item was not a mapping; already reported
	fromOverrides bool   // built from flags/environment, not the file

	name, url, address, isDefault                         setting
	certDir, certFile, keyFile, keyPassphraseFile, caFile setting
	keyURI                                                setting
	clientID, clientSecretFile                            setting
	verifyPath, warm, via, viaAuthFile                    setting
}

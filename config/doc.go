// Package config owns the configuration of payrails-mtls-proxy: the schema of
// the YAML file, the PAYRAILS_PROXY_* environment variables and the flags of
// `serve`, their precedence (flags > environment > file > defaults), the
// defaults, and validation.
//
// The result is an immutable *Config. The package does no network I/O and no
// logging; the only file system access is reading the YAML file and, when
// asked to, checking that the files and folders it names exist.
//
// Every problem is reported as an *Error naming where the value came from
// (file and line, flag, or environment variable), the key as the user typed
// it, and what to do about it; an unknown key names the closest known one
// ("did you mean"), ranked by the edit distance of internal/levenshtein,
// which certs' country suggestions share. Validation does not stop at the
// first problem: Load and Parse return all of them at once as Errors.
//
// Secrets (the key passphrase, the token client secret and the PKCS#11 PIN)
// are only ever read from the environment (or, for the PIN, a file named by
// key_uri's pin-source), never from the file or argv, and are held in a
// Secret, which prints as "[redacted]". key_uri is an RFC 7512 PKCS#11 URI,
// parsed by ParseKeyURI, which refuses a pin-value.
package config

package certs

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Severity orders findings. The zero value is Info.
type Severity int

// Severities, from least to most serious.
const (
	Info    Severity = iota // worth knowing, nothing to do
	Warning                 // works today, needs attention
	Error                   // this file cannot be used as it is
)

// String returns "info", "warning" or "error".
func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Error:
		return "error"
	default:
		return "info"
	}
}

// Code names the kind of a finding; tests, `check` and metrics match on it.
type Code string

// Finding codes.
const (
	CodeEmptyDir          Code = "empty_dir"          // the folder holds no candidate files
	CodeUnreadable        Code = "unreadable"         // the file could not be read
	CodeTooLarge          Code = "too_large"          // larger than any certificate file could be
	CodeEmptyFile         Code = "empty_file"         // zero bytes (often a copy in progress)
	CodeTruncated         Code = "truncated"          // a PEM block without its END line: half-written
	CodeUnrecognised      Code = "unrecognised"       // neither PEM, DER certificate nor PKCS#12
	CodeBadBlock          Code = "bad_block"          // a PEM block whose contents do not parse
	CodeIgnoredBlock      Code = "ignored_block"      // a PEM block of a type that plays no part (PUBLIC KEY...)
	CodeCSR               Code = "csr"                // a certificate signing request (domain.csr)
	CodeCABundle          Code = "ca_bundle"          // CA certificates with no key: not a client certificate
	CodePassphraseMissing Code = "passphrase_missing" // encrypted key or PKCS#12 and no passphrase configured
	CodePassphraseWrong   Code = "passphrase_wrong"   // the passphrase does not decrypt it
	CodePassphraseRead    Code = "passphrase_read"    // the passphrase file could not be read
	CodeKeyUnsupported    Code = "key_unsupported"    // a key type or encryption we cannot use
	CodeKeyUnmatched      Code = "key_unmatched"      // a key that belongs to no certificate here
	CodeCertUnmatched     Code = "certificate_unmatched"
	CodeExpired           Code = "expired"
	CodeNotYetValid       Code = "not_yet_valid"
	CodeExpiresSoon       Code = "expires_soon"       // the chosen certificate expires within ExpiryWarning
	CodeKeyPermissions    Code = "key_permissions"    // key readable by group or others
	CodeSecretPermissions Code = "secret_permissions" // passphrase file readable by group or others
	CodeNotRegular        Code = "not_regular"        // a FIFO, socket or device in the folder: never opened
	CodeSwapped           Code = "swapped"            // --cert holds the key or --key holds the certificate

	CodeKeyOnDisk         Code = "key_on_disk"         // a key file next to certificates whose keys are in a token
	CodePKCS11Unavailable Code = "pkcs11_unavailable"  // key_uri in a binary built without PKCS#11
	CodeTokenNotFound     Code = "token_not_found"     // the library has no token matching key_uri
	CodePINWrong          Code = "pin_wrong"           // the token refused the PIN (or locked it)
	CodeTokenKeyNotFound  Code = "token_key_not_found" // no private key in the token matches key_uri
	CodeTokenUnavailable  Code = "token_unavailable"   // the library or token failed; retried with back-off
	CodeTokenKeyUnmatched Code = "token_key_unmatched" // a token key that no certificate here belongs to
	CodeChain             Code = "chain"               // an intermediate sent after the leaf it issued
)

// Finding is one thing worth telling the operator about one file (or the
// whole source, when Path is the folder).
type Finding struct {
	Severity Severity
	Code     Code
	Path     string
	Message  string // lowercase, says what to do next
}

// String renders the finding as "<file>: <message>".
func (f Finding) String() string {
	return fmt.Sprintf("%s: %s", f.Path, f.Message)
}

// csrMessage is the explanation Payrails' own guide lists as the most common
// mistake: the CSR from Step 1 used where the downloaded certificate belongs.
func csrMessage(path string, inPlaceOfCert bool) string {
	base := filepath.Base(path)
	if !inPlaceOfCert {
		return fmt.Sprintf("is a certificate signing request (CSR), ignored: %s is the request you upload in "+
			"the Payrails dashboard (Step 1), not the certificate; keep it or delete it", base)
	}
	made := base + " is the file made in Step 1 (the guide's domain.csr)"
	if base == "domain.csr" {
		made = "domain.csr is the file made in Step 1"
	}
	return fmt.Sprintf("is a certificate signing request (CSR), not a certificate: %s and uploaded to the "+
		"Payrails dashboard; the certificate is the domain.pem you download from the dashboard's mTLS "+
		"Certificates page after the upload. Used as a certificate, this file is what makes OpenSSL and curl "+
		"fail with \"PEM routines ... NO_START_LINE\"; put the downloaded domain.pem here instead", made)
}

func joinFindings(fs []Finding, min Severity) string {
	var parts []string
	for _, f := range fs {
		if f.Severity >= min {
			parts = append(parts, f.String())
		}
	}
	return strings.Join(parts, "; ")
}

package answer

import (
	"errors"
	"net"
	"reflect"
)

// CertificateAlert is a TLS alert that a server sends about the client's
// certificate (RFC 8446 §6.2, RFC 5246 §7.2.2), with what it means for a
// Payrails merchant.
type CertificateAlert struct {
	Code   uint8
	Name   string // as crypto/tls prints it
	Advice string // what to do, for the operator
}

// AdviceUnknown is what most refusals mean for Payrails.
const AdviceUnknown = "The server does not recognise this certificate. For Payrails this means: a certificate of " +
	"the other environment (staging and live have their own; the Common Name says which), a certificate not " +
	"issued by Payrails (not the domain.pem downloaded after uploading the CSR), or one that was never uploaded " +
	"or is no longer active. Download the certificate for this environment from the dashboard's mTLS " +
	"Certificates page."

// certificateAlerts is the one table of the alerts about the client's
// certificate. handshake_failure (40) is not one of them: it also means no
// common cipher or version.
var certificateAlerts = map[uint8]CertificateAlert{
	42: {42, "bad certificate", AdviceUnknown},
	43: {43, "unsupported certificate", "The server cannot use this kind of certificate or key: Payrails asks for " +
		"an RSA-4096 key (payrails-mtls-proxy csr makes one)."},
	44: {44, "revoked certificate", "The certificate was revoked: download an active certificate from the " +
		"dashboard's mTLS Certificates page, or make a new CSR (payrails-mtls-proxy csr) and upload it."},
	45: {45, "expired certificate", "The server considers the certificate expired: check this machine's clock " +
		"and the certificate's dates, and download a current certificate from the Payrails dashboard."},
	46: {46, "unknown certificate", AdviceUnknown},
	48: {48, "unknown certificate authority", AdviceUnknown},
	49: {49, "access denied", "The server knows the certificate but refuses access: it may be inactive or " +
		"revoked in the Payrails dashboard, or belong to another merchant account."},
	116: {116, "certificate required", "The server received no certificate; the certificate and key should have " +
		"been sent: check the key type is one the server accepts."},
}

// LookupCertificateAlert returns the table's entry for a TLS alert code,
// and whether the alert is about the client's certificate at all.
func LookupCertificateAlert(code uint8) (CertificateAlert, bool) {
	a, ok := certificateAlerts[code]
	return a, ok
}

// ServerAlert reports a TLS alert received from the server. crypto/tls
// returns it as a *net.OpError with Op "remote error" whose Err is the
// unexported alert type, a uint8; reflection reads the code without
// depending on the message text.
func ServerAlert(err error) (code uint8, text string, ok bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, "", false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 {
		return 0, "", false
	}
	return uint8(v.Uint()), op.Err.Error(), true
}

// CertificateAlertOf returns the alert about the client's certificate that
// err carries, if it carries one.
func CertificateAlertOf(err error) (CertificateAlert, bool) {
	code, _, ok := ServerAlert(err)
	if !ok {
		return CertificateAlert{}, false
	}
	return LookupCertificateAlert(code)
}

// Package certs owns the merchant's client certificates: reading PEM, DER and
// PKCS#12 files, decrypting keys, pairing certificates with keys by public
// key, choosing the pair to present, explaining in the operator's language
// what is wrong with a file, and publishing the result as one immutable
// Snapshot that a Store swaps atomically on reload.
//
// The package never imports net/http: the proxy consumes a Store through the
// small interface it declares itself.
//
// Failure rule: loading never panics and never returns a half-built result.
// A load that finds no usable pair yields a Snapshot whose Err explains why;
// a Store keeps serving its previous Snapshot in that case.
package certs

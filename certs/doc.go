// Package certs owns the merchant's client certificates: reading PEM, DER and
// PKCS#12 files, decrypting keys, pairing certificates with keys by public
// key, choosing the pair to present, explaining in the operator's language
// what is wrong with a file, and publishing the result as one immutable
// Snapshot that a Store swaps atomically on reload. A Watcher reloads the
// stores when their folders change (fsnotify on the directory, a periodic
// poll as a fallback).
//
// It also makes what the operator needs before and around serving: a CSR
// with the subject Payrails asks for (NewCSR, with ISO 3166-1 country codes
// and Payrails API host names checked), the local CA of `connect: mitm` and
// the short-lived leaves signed by it (NewMITMCA, Minter), and the roots
// that verify an upstream (Roots). The sub-package pki makes throwaway CAs
// and certificates for the demo and the tests.
//
// The private keys may be in a PKCS#11 token instead of files (Source.Token,
// config's key_uri): a Token loads the library, logs in, lists the keys the
// URI selects and signs through the token, re-opening it with back-off when
// it fails; Load pairs the token's keys with the folder's certificates by
// public key, as with files. The Token is built only with the pkcs11 build
// tag and cgo (token_pkcs11.go); without them a stub refuses with
// ErrPKCS11Unavailable. ca_file's roots are a RootStore, reloaded by the
// Watcher like the certificate stores, with the same failure rule.
//
// Every view of a loaded certificate (the /certs JSON in Report, `check`'s
// Inspection, and the certificate metrics that cmd exports from the Report)
// uses one Description, built from the snapshot, so the views cannot
// disagree; none of them holds key material.
//
// The package never imports net/http: the proxy consumes a Store through the
// small interface it declares itself, and certs and proxy do not import
// each other.
//
// Failure rule: loading never panics and never returns a half-built result.
// A load that finds no usable pair yields a Snapshot whose Err explains why;
// a Store keeps serving its previous Snapshot in that case.
package certs

module github.com/mtlsproxy/payrails-mtls-proxy/bench/compare

go 1.27.0

toolchain go1.27.3

require github.com/mtlsproxy/payrails-mtls-proxy v0.0.0

require (
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	github.com/miekg/pkcs11 v1.1.2 // indirect
	github.com/youmark/pkcs8 v0.0.0-20240726163527-a2c0da244d78 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	software.sslmate.com/src/go-pkcs12 v0.7.4 // indirect
)

// The sidecar's own packages (including internal/, which Go allows to any
// module under its path), always from this checkout.
replace github.com/mtlsproxy/payrails-mtls-proxy => ../..

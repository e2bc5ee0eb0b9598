// Package clientmatrix holds no code of the program: its tests run real
// HTTP client libraries (curl, wget, Python, Java, Node.js, Go, PHP, Ruby),
// each configured the way its users configure it, against the built
// binary run as `serve`, in every mode a legacy service uses the proxy:
// forward (HTTP_PROXY), base URL, HTTPS_PROXY with connect: mitm, and with
// proxy credentials. The upstream is a stand-in that requires the client
// certificate and records what arrived, so every case proves its request
// went out over mTLS. docs/clients.md's table is generated from the cases
// (PAYRAILS_PROXY_UPDATE_CLIENTS_DOC=1 rewrites it; the test fails when the
// two differ).
package clientmatrix

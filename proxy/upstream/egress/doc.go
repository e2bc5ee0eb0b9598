// Package egress opens the upstream client's connections through a
// corporate egress proxy (upstreams[].via): a CONNECT tunnel (RFC 9110
// §9.3.6) to the upstream's dial address, TLS end to end inside it, so that
// the egress proxy sees only the target's HOST:PORT and ciphertext. Dialer
// is a context dialer, like *net.Dialer, so the upstream client's TLS dial
// runs over either. Its failures (Error) say which step failed and what to
// do; Final tells the refusals a retry would only repeat.
package egress

//go:build !unix

package proxy

// alive cannot peek at the socket here; a dead connection shows up as a
// failed request instead, which roundTripRetry repeats when that is safe.
// Bytes crypto/tls already decrypted are still checked.
func (c *h1Conn) alive() bool { return !c.plaintextPending() }

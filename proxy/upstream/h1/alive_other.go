//go:build !unix

package h1

// alive cannot peek at the socket here; a dead connection shows up as a
// failed request instead, which roundTripRetry repeats when that is safe.
// Bytes crypto/tls already decrypted are still checked.
func (c *Conn) Alive() bool { return !c.plaintextPending() }

//go:build !unix

package proxy

// alive cannot peek at the socket here; a dead connection shows up as a
// failed request instead, which roundTripRetry repeats when that is safe.
func (c *h1Conn) alive() bool { return true }

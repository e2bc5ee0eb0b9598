//go:build unix

package h1

import (
	"syscall"
	"time"
)

// alive reports whether an idle connection can carry another request: the
// socket is open and holds nothing but what crypto/tls consumes itself. A
// server that closed the connection while it sat idle (a restart, its own
// idle timeout) has sent FIN or RST; one that sent anything else unasked
// (a TLS close_notify, an error response) has left the connection in a
// state no request should start from. net/http's Transport learns the
// same from the read it keeps pending on every idle connection; a pool
// without a reader goroutine asks the socket, with one non-blocking
// MSG_PEEK. Records waiting in the socket are read by crypto/tls (settle):
// TLS 1.3 servers send session tickets after the handshake, which a
// connection that never carried a request (a warm one) has not read yet.
func (c *Conn) Alive() bool {
	if c.raw == nil {
		return !c.plaintextPending()
	}
	if c.peekFn == nil {
		c.peekFn = c.peekOnce // one method value per connection, not a closure per check
	}
	if rerr := c.raw.Read(c.peekFn); rerr != nil {
		return false
	}
	switch {
	case c.peekErr == syscall.EAGAIN: // nothing in the socket
		return !c.plaintextPending()
	case c.peekN > 0: // records waiting: tickets are fine, anything else is not
		return c.Settle(time.Millisecond)
	default: // FIN or RST
		return false
	}
}

// peekOnce is alive's callback for RawConn.Read: one non-blocking peek,
// its result left in peekN and peekErr.
func (c *Conn) peekOnce(fd uintptr) bool {
	c.peekN, _, c.peekErr = syscall.Recvfrom(int(fd), c.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return true // never wait for readiness
}

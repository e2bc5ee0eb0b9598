//go:build unix

package proxy

import "syscall"

// alive reports whether an idle connection can carry another request: the
// socket is open and holds nothing to read. A server that closed the
// connection while it sat idle (a restart, its own idle timeout) has sent
// FIN or RST; one that sent anything else unasked (a TLS close_notify, an
// error response) has left the connection in a state no request should
// start from. net/http's Transport learns the same from the read it keeps
// pending on every idle connection; a pool without a reader goroutine asks
// the socket, with one non-blocking MSG_PEEK.
func (c *h1Conn) alive() bool {
	if c.raw == nil {
		return true
	}
	var err error
	var n int
	rerr := c.raw.Read(func(fd uintptr) bool {
		n, _, err = syscall.Recvfrom(int(fd), c.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness
	})
	return rerr == nil && n <= 0 && err == syscall.EAGAIN
}

package h1

import (
	"bufio"
	"crypto/tls"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn is one HTTP/1.1 connection of the fast path. It is used by one
// request at a time: the pool hands it out and takes it back.
type Conn struct {
	conn   *tls.Conn
	raw    syscall.RawConn // the TCP socket under conn, for the liveness check; nil if unavailable
	br     *bufio.Reader   // reads from the conn through headerLimit
	bw     *bufio.Writer
	idleAt time.Time // when it went back to the pool
	used   bool      // has carried a request (servers time out such connections differently)
	open   *atomic.Int32
	closed atomic.Bool

	// headerBudget is how many more bytes may be read while response
	// headers are being parsed; negative means no limit (reading a body).
	headerBudget int64

	// The liveness check's state (alive_unix.go).
	peek    [1]byte
	peekFn  func(fd uintptr) bool
	peekN   int
	peekErr error
}

// NewConn wraps conn; open, if not nil, counts the client's open
// connections: it is incremented here and decremented once, on close.
func NewConn(conn *tls.Conn, open *atomic.Int32) *Conn {
	c := &Conn{conn: conn, raw: rawConnOf(conn), headerBudget: -1, open: open}
	if open != nil {
		open.Add(1)
	}
	c.br = bufio.NewReaderSize(headerLimit{c}, 4<<10)
	c.bw = bufio.NewWriterSize(conn, 4<<10)
	return c
}

// headerLimit reads the connection, counting bytes against headerBudget.
type headerLimit struct{ c *Conn }

func (l headerLimit) Read(p []byte) (int, error) {
	c := l.c
	if c.headerBudget < 0 {
		return c.conn.Read(p)
	}
	if c.headerBudget == 0 {
		return 0, errResponseHeaderTooLarge
	}
	if int64(len(p)) > c.headerBudget {
		p = p[:c.headerBudget]
	}
	n, err := c.conn.Read(p)
	c.headerBudget -= int64(n)
	return n, err
}

func (c *Conn) Close() {
	c.conn.Close()
	if c.open != nil && c.closed.CompareAndSwap(false, true) {
		c.open.Add(-1)
	}
}

// plaintextPending reports whether crypto/tls holds decrypted bytes that
// nobody asked for: the rest of a record whose start ended a response. The
// socket peek cannot see them, and they would be read as the answer to the
// next request. A read with a deadline in the past returns what crypto/tls
// has buffered without touching the socket (its timeout error is not
// sticky: the connection stays usable).
func (c *Conn) plaintextPending() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	c.conn.SetReadDeadline(aLongTimeAgo)
	n, _ := c.conn.Read(c.peek[:])
	c.conn.SetReadDeadline(time.Time{})
	return n > 0
}

// settle lets crypto/tls read what the server sent after the handshake,
// waiting at most wait for more: post-handshake messages (TLS 1.3 session
// tickets) are consumed on the way, so that the connection does not look
// as though the server had sent something unasked. It reports whether the
// connection is still usable: nothing but such messages came, no data, no
// close.
func (c *Conn) Settle(wait time.Duration) bool {
	if c.br.Buffered() > 0 {
		return false
	}
	c.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := c.conn.Read(c.peek[:])
	c.conn.SetReadDeadline(time.Time{})
	return n == 0 && isTimeout(err)
}

// rawConnOf finds the TCP socket under a TLS connection, through any
// wrapper that passes syscall.Conn on (an egress tunnel whose first bytes
// were read with the proxy's answer does not: the liveness check then
// asks crypto/tls instead).
func rawConnOf(conn *tls.Conn) syscall.RawConn {
	sc, ok := conn.NetConn().(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

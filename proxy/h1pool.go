package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"sync"
	"syscall"
	"time"
)

// h1Conn is one pooled HTTP/1.1 connection to an upstream. It is used by one
// request at a time: the pool hands it out and takes it back.
type h1Conn struct {
	conn   *tls.Conn
	raw    syscall.RawConn // the TCP socket under conn, for the liveness check; nil if unavailable
	br     *bufio.Reader   // reads from the conn through headerLimit
	bw     *bufio.Writer
	idleAt time.Time // when it went back to the pool

	// headerBudget is how many more bytes may be read while response
	// headers are being parsed; negative means no limit (reading a body).
	headerBudget int64

	// The liveness check's state (h1alive_unix.go).
	peek    [1]byte
	peekFn  func(fd uintptr) bool
	peekN   int
	peekErr error
}

// maxResponseHeaderBytes bounds an upstream's response headers, as
// http.Transport's MaxResponseHeaderBytes does by default: a misbehaving
// server must not make the sidecar buffer without end.
const maxResponseHeaderBytes = 1 << 20

var errResponseHeaderTooLarge = errors.New("the response headers exceed 1 MiB")

func newH1Conn(conn *tls.Conn) *h1Conn {
	c := &h1Conn{conn: conn, raw: rawConnOf(conn), headerBudget: -1}
	c.br = bufio.NewReaderSize(headerLimit{c}, 4<<10)
	c.bw = bufio.NewWriterSize(conn, 4<<10)
	return c
}

// headerLimit reads the connection, counting bytes against headerBudget.
type headerLimit struct{ c *h1Conn }

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

func (c *h1Conn) close() { c.conn.Close() }

// plaintextPending reports whether crypto/tls holds decrypted bytes that
// nobody asked for: the rest of a record whose start ended a response. The
// socket peek cannot see them, and they would be read as the answer to the
// next request. A read with a deadline in the past returns what crypto/tls
// has buffered without touching the socket (its timeout error is not
// sticky: the connection stays usable).
func (c *h1Conn) plaintextPending() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	c.conn.SetReadDeadline(aLongTimeAgo)
	n, _ := c.conn.Read(c.peek[:])
	c.conn.SetReadDeadline(time.Time{})
	return n > 0
}

// rawConnOf finds the TCP socket under a TLS connection made by dialTLS.
func rawConnOf(conn *tls.Conn) syscall.RawConn {
	nc := conn.NetConn()
	if cn, ok := nc.(*closeNotifier); ok {
		nc = cn.Conn
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// h1Pool keeps one generation's idle HTTP/1.1 connections, most recently
// used last, so that a busy proxy reuses its warmest connections and the
// ones at the bottom age out. A connection idle for longer than the idle
// timeout is closed by a sweep; one the server has closed (or sent
// anything to while idle) is found by a liveness check when taken, and
// closed. The zero value is not usable; see newH1Pool. Safe for concurrent
// use.
type h1Pool struct {
	idleTimeout time.Duration
	max         int

	mu     sync.Mutex
	idle   []*h1Conn
	closed bool        // retired: connections coming back are closed
	timer  *time.Timer // runs sweep; nil until the first put
	armed  bool
}

func newH1Pool(idleTimeout time.Duration, max int) *h1Pool {
	return &h1Pool{idleTimeout: idleTimeout, max: max}
}

// get returns a live idle connection, or nil when there is none.
func (p *h1Pool) get() *h1Conn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if time.Since(c.idleAt) < p.idleTimeout && c.alive() {
			return c
		}
		c.close()
	}
}

// put gives a connection back after a complete exchange. It is closed
// instead when the pool is retired or full.
func (p *h1Pool) put(c *h1Conn) {
	c.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.idleTimeout, p.sweep)
		} else {
			p.timer.Reset(p.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// sweep closes the connections idle for longer than the idle timeout (the
// oldest are at the bottom of the stack) and schedules itself for the next.
func (p *h1Pool) sweep() {
	now := time.Now()
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].idleAt) >= p.idleTimeout {
		i++
	}
	expired := make([]*h1Conn, i)
	copy(expired, p.idle[:i])
	n := copy(p.idle, p.idle[i:])
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	if n > 0 && !p.closed {
		p.timer.Reset(p.idle[0].idleAt.Add(p.idleTimeout).Sub(now))
	} else {
		p.armed = false
	}
	p.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// closeIdle closes the idle connections. With retire, connections that
// come back later are closed too.
func (p *h1Pool) closeIdle(retire bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if retire {
		p.closed = true
	}
	if p.timer != nil {
		p.timer.Stop()
		p.armed = false
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

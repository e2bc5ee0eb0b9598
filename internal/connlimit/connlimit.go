// Package connlimit caps the connections an http.Server holds open, and
// at the cap closes the connection that has been idle the longest to make
// room for a new one. golang.org/x/net/netutil.LimitListener only waits for
// a connection to close: with the cap reached by idle keep-alive
// connections (a scraper's pool, clients that went quiet), a new client,
// a kubelet probe above all, waits until the idle timeout closes one,
// and a liveness probe that times out restarts a sidecar with payments in
// flight (issue 22). Busy connections are never closed: when every
// connection is busy, new ones wait in the listen backlog, as with
// LimitListener.
package connlimit

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Listener is a net.Listener that serves at most Max connections at once.
// Its ConnState method must be the server's http.Server.ConnState hook (or
// be called from it): that is how it learns which connections are idle.
// Safe for concurrent use; close it (or the server) to stop Accept.
type Listener struct {
	net.Listener
	max    int
	onShed func() // called once per idle connection closed to make room; may be nil

	mu     sync.Mutex
	open   int                 // connections accepted and not yet closed
	idle   map[*conn]time.Time // idle keep-alive connections, by when they went idle
	wake   chan struct{}       // signalled when a slot frees or a connection goes idle
	done   chan struct{}       // closed by Close
	closed bool
}

// New caps ln at max connections (max >= 1). onShed, if not nil, is called
// each time an idle connection is closed to make room, for a metric.
func New(ln net.Listener, max int, onShed func()) *Listener {
	return &Listener{Listener: ln, max: max, onShed: onShed, idle: map[*conn]time.Time{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Accept waits for a connection, then for room for it: at the cap it
// closes the connection idle the longest, and when none is idle it waits
// until one is, or until one closes.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := l.acquire(); err != nil {
		c.Close()
		return nil, err
	}
	return &conn{Conn: c, l: l}, nil
}

// acquire takes a slot, making room if it must.
func (l *Listener) acquire() error {
	l.mu.Lock()
	for l.open >= l.max {
		if victim := l.oldestIdleLocked(); victim != nil {
			delete(l.idle, victim)
			if !victim.state.CompareAndSwap(stateIdle, stateShed) {
				continue // its next request's bytes came in: busy (see conn.Read)
			}
			l.mu.Unlock()
			victim.Close() // frees its slot (release)
			if l.onShed != nil {
				l.onShed()
			}
			l.mu.Lock()
			continue
		}
		l.mu.Unlock()
		select {
		case <-l.wake:
		case <-l.done:
			return net.ErrClosed
		}
		l.mu.Lock()
	}
	l.open++
	l.mu.Unlock()
	return nil
}

// oldestIdleLocked is the idle connection that has waited longest for its
// next request and is waiting for it now, in a Read. An idle connection
// that is not reading may have its next request in the server's buffer
// already (a pipelining client: net/http says StateIdle, then finds the
// request there without reading), so it is not chosen.
func (l *Listener) oldestIdleLocked() *conn {
	var oldest *conn
	var at time.Time
	for c, since := range l.idle {
		if c.reading.Load() && (oldest == nil || since.Before(at)) {
			oldest, at = c, since
		}
	}
	return oldest
}

// release frees the slot of a closed connection.
func (l *Listener) release(c *conn) {
	l.mu.Lock()
	l.open--
	delete(l.idle, c)
	l.mu.Unlock()
	l.signal()
}

func (l *Listener) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// ConnState records whether a connection is idle; it must be called with
// every state change of the server's connections. Only an idle keep-alive
// connection (http.StateIdle) may be closed to make room, and only while it
// waits in a Read for its next request (oldestIdleLocked): a new one may be
// a probe whose request is on its way, and an active one carries a
// request. net/http says StateActive only after reading the next request's
// first bytes; the connection's own Read marks it busy as those bytes
// arrive, and a connection is closed only by winning that race (state), so
// one whose next request the server has read is never chosen.
func (l *Listener) ConnState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	l.mu.Lock()
	if st == http.StateIdle && !c.closed.Load() {
		l.idle[c] = time.Now()
		c.state.CompareAndSwap(stateBusy, stateIdle)
	} else {
		delete(l.idle, c)
		c.state.CompareAndSwap(stateIdle, stateBusy)
	}
	l.mu.Unlock()
	if st == http.StateIdle {
		l.signal()
	}
}

// Close closes the listener and wakes an Accept waiting for room.
func (l *Listener) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// conn is an accepted connection; closing it frees its slot, once.
type conn struct {
	net.Conn
	l       *Listener
	closed  atomic.Bool  // set before the slot is freed (see ConnState)
	state   atomic.Int32 // stateBusy, stateIdle or stateShed
	reading atomic.Bool  // a Read is waiting: only then is an idle connection empty-handed
}

// A connection's state: busy (new, or carrying a request), idle between
// requests, or chosen to be closed to make room. Only idle → shed closes.
const (
	stateBusy int32 = iota
	stateIdle
	stateShed
)

// Read marks an idle connection busy as its next request's bytes arrive,
// before the server sees them. When acquire has already chosen it, the
// bytes are dropped unread, as the close it is being given would have
// dropped them: the server never handles a request on a connection it is
// closing. While it waits, an idle connection may be chosen (an Accept
// waiting for room is told).
func (c *conn) Read(p []byte) (int, error) {
	c.reading.Store(true)
	if c.state.Load() == stateIdle {
		c.l.signal()
	}
	n, err := c.Conn.Read(p)
	c.reading.Store(false)
	if n > 0 && c.state.Load() != stateBusy && !c.state.CompareAndSwap(stateIdle, stateBusy) {
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c)
	}
	return err
}

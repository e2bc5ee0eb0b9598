package proxy

import (
	"sync"
	"time"
)

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

package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// h1Pool keeps one generation's idle HTTP/1.1 connections, most recently
// used last, so that a busy proxy reuses its warmest connections and the
// ones at the bottom age out. A connection idle for longer than the pool's
// maximum idle age is closed by a sweep, and never handed out; one the
// server has closed (or sent anything to while idle) is found by a
// liveness check when taken (get) or by the warm-connection tending
// (reap), and closed. The zero value is not usable; see newH1Pool. Safe
// for concurrent use.
type h1Pool struct {
	maxAge atomic.Int64 // nanoseconds; see setMaxAge
	max    int

	// onDead, if not nil, is told the idle age of each connection found
	// closed by the server while it sat idle (warm.go learns the server's
	// idle timeout from it). Called without the pool's lock.
	onDead func(idle time.Duration)

	mu     sync.Mutex
	idle   []*h1Conn
	closed bool        // retired: connections coming back are closed
	timer  *time.Timer // runs sweep; nil until the first put
	armed  bool
}

func newH1Pool(idleTimeout time.Duration, max int) *h1Pool {
	p := &h1Pool{max: max}
	p.maxAge.Store(int64(idleTimeout))
	return p
}

// setMaxAge changes how long a connection may sit idle: the configured
// timeouts.idle_conn, or less, to retire connections before the server's
// own idle timeout closes them under a request (warm.go).
func (p *h1Pool) setMaxAge(d time.Duration) { p.maxAge.Store(int64(d)) }

func (p *h1Pool) age() time.Duration { return time.Duration(p.maxAge.Load()) }

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
		idle := time.Since(c.idleAt)
		if idle < p.age() {
			if c.alive() {
				return c
			}
			p.dead(idle)
		}
		c.close()
	}
}

func (p *h1Pool) dead(idle time.Duration) {
	if p.onDead != nil {
		p.onDead(idle)
	}
}

// put gives a connection back after a complete exchange (or a new warm
// one). It is closed instead when the pool is retired or full.
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
			p.timer = time.AfterFunc(p.age(), p.sweep)
		} else {
			p.timer.Reset(p.age())
		}
	}
	p.mu.Unlock()
}

// sweep closes the connections idle for longer than the maximum age (the
// oldest are at the bottom of the stack) and schedules itself for the next.
func (p *h1Pool) sweep() {
	now := time.Now()
	maxAge := p.age()
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].idleAt) >= maxAge {
		i++
	}
	expired := make([]*h1Conn, i)
	copy(expired, p.idle[:i])
	n := copy(p.idle, p.idle[i:])
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	if n > 0 && !p.closed {
		p.timer.Reset(p.idle[0].idleAt.Add(maxAge).Sub(now))
	} else {
		p.armed = false
	}
	p.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// reap checks every idle connection with the liveness check and closes
// those the server closed; it returns how many idle ones are left and the
// idle age of the oldest. Each check is one non-blocking system call, made
// under the lock so that no request can take a connection being checked.
func (p *h1Pool) reap() (left int, oldest time.Duration) {
	now := time.Now()
	var deadAges []time.Duration
	var dead []*h1Conn
	p.mu.Lock()
	kept := p.idle[:0]
	for _, c := range p.idle {
		if c.alive() {
			kept = append(kept, c)
			continue
		}
		dead = append(dead, c)
		deadAges = append(deadAges, now.Sub(c.idleAt))
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	left = len(kept)
	if left > 0 {
		oldest = now.Sub(kept[0].idleAt)
	}
	p.mu.Unlock()
	for i, c := range dead {
		c.close()
		p.dead(deadAges[i])
	}
	return left, oldest
}

// takeOldest removes and returns the connection that has been idle the
// longest, or nil (warm.go replaces it before the server would close it).
func (p *h1Pool) takeOldest() *h1Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 {
		return nil
	}
	c := p.idle[0]
	n := copy(p.idle, p.idle[1:])
	p.idle[n] = nil
	p.idle = p.idle[:n]
	return c
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

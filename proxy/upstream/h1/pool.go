package h1

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pool keeps one generation's idle HTTP/1.1 connections, most recently
// used last, so that a busy proxy reuses its warmest connections and the
// ones at the bottom age out. A connection idle for longer than its
// maximum idle age is closed by a sweep, and never handed out; one the
// server has closed (or sent anything to while idle) is found by a
// liveness check when taken (get) or by the warm-connection tending
// (reap), and closed. The maximum idle age depends on whether the
// connection has carried a request: servers time out a connection waiting
// for its first request (nginx: client_header_timeout) and one waiting for
// its next (keepalive_timeout) differently. The zero value is not usable;
// see NewPool. Safe for concurrent use.
type Pool struct {
	maxAge [2]atomic.Int64 // nanoseconds, by used (index 1) or not; see setMaxAge
	max    int

	// OnDead, if not nil, is told the idle age of each connection found
	// closed by the server while it sat idle, and whether it had carried a
	// request (warm.go learns the server's idle timeouts from it). Called
	// without the pool's lock.
	OnDead func(idle time.Duration, used bool)

	mu     sync.Mutex
	idle   []*Conn
	closed bool        // retired: connections coming back are closed
	timer  *time.Timer // runs sweep; nil until the first put
	armed  bool
}

func NewPool(idleTimeout time.Duration, max int) *Pool {
	p := &Pool{max: max}
	p.SetMaxAge(false, idleTimeout)
	p.SetMaxAge(true, idleTimeout)
	return p
}

func index(used bool) int {
	if used {
		return 1
	}
	return 0
}

// setMaxAge changes how long a connection may sit idle, for connections
// that have carried a request (used) or not: the configured
// timeouts.idle_conn, or less, to retire connections before the server's
// own idle timeout closes them under a request (warm.go).
func (p *Pool) SetMaxAge(used bool, d time.Duration) { p.maxAge[index(used)].Store(int64(d)) }

func (p *Pool) age(used bool) time.Duration { return time.Duration(p.maxAge[index(used)].Load()) }

// expiry is when c reaches its maximum idle age.
func (p *Pool) expiry(c *Conn) time.Time { return c.idleAt.Add(p.age(c.used)) }

// Len is how many idle connections the pool holds now.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Get returns a live idle connection, or nil when there is none.
func (p *Pool) Get() *Conn {
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
		if time.Now().Before(p.expiry(c)) {
			if c.Alive() {
				return c
			}
			p.dead(time.Since(c.idleAt), c.used)
		}
		c.Close()
	}
}

func (p *Pool) dead(idle time.Duration, used bool) {
	if p.OnDead != nil {
		p.OnDead(idle, used)
	}
}

// put gives a connection back after a complete exchange (or a new warm
// one). It is closed instead when the pool is retired or full.
func (p *Pool) Put(c *Conn) {
	c.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(time.Until(p.expiry(c)), p.sweep)
		} else {
			p.timer.Reset(time.Until(p.expiry(c)))
		}
	}
	p.mu.Unlock()
}

// sweep closes the connections past their maximum idle age and schedules
// itself for the next one to expire.
func (p *Pool) sweep() {
	now := time.Now()
	var expired []*Conn
	var next time.Time
	p.mu.Lock()
	kept := p.idle[:0]
	for _, c := range p.idle {
		if e := p.expiry(c); !now.Before(e) {
			expired = append(expired, c)
		} else {
			kept = append(kept, c)
			if next.IsZero() || e.Before(next) {
				next = e
			}
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	if len(kept) > 0 && !p.closed {
		p.timer.Reset(next.Sub(now))
	} else {
		p.armed = false
	}
	p.mu.Unlock()
	for _, c := range expired {
		c.Close()
	}
}

// reap checks every idle connection with the liveness check and closes
// those the server closed; it returns how many idle ones are left and when
// the first of them reaches its maximum idle age (zero when none). Each
// check is one non-blocking system call, made under the lock so that no
// request can take a connection being checked.
func (p *Pool) Reap() (left int, firstExpiry time.Time) {
	type death struct {
		idle time.Duration
		used bool
	}
	now := time.Now()
	var deaths []death
	var dead []*Conn
	p.mu.Lock()
	kept := p.idle[:0]
	for _, c := range p.idle {
		if !c.Alive() {
			dead = append(dead, c)
			deaths = append(deaths, death{now.Sub(c.idleAt), c.used})
			continue
		}
		kept = append(kept, c)
		if e := p.expiry(c); firstExpiry.IsZero() || e.Before(firstExpiry) {
			firstExpiry = e
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	left = len(kept)
	p.mu.Unlock()
	for i, c := range dead {
		c.Close()
		p.dead(deaths[i].idle, deaths[i].used)
	}
	return left, firstExpiry
}

// takeExpiring removes and returns the idle connection that reaches its
// maximum idle age first, if that is before by, or nil (warm.go replaces
// it before the server would close it).
func (p *Pool) TakeExpiring(by time.Time) *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := -1
	for i, c := range p.idle {
		if e := p.expiry(c); e.Before(by) && (at < 0 || e.Before(p.expiry(p.idle[at]))) {
			at = i
		}
	}
	if at < 0 {
		return nil
	}
	c := p.idle[at]
	n := copy(p.idle[at:], p.idle[at+1:])
	p.idle[at+n] = nil
	p.idle = p.idle[:at+n]
	return c
}

// closeIdle closes the idle connections. With retire, connections that
// come back later are closed too.
func (p *Pool) CloseIdle(retire bool) {
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
		c.Close()
	}
}

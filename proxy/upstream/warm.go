package upstream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/h1"

	"go.uber.org/zap"
)

// Warm connections (DESIGN.md § Verification, failover and warm
// connections). Each upstream keeps warm_connections idle TLS connections
// with the certificate in use, so that no request pays a TCP and TLS
// handshake (with an RSA-4096 key, three round trips instead of one) after
// idle, rotation or the server's keep-alive timeout. The verification
// connection of a new certificate is the first of them.
//
// A server closes an idle connection after its keep-alive timeout; a
// request written onto it at that moment is lost (the keep-alive race:
// the server's FIN and the request cross on the wire). The proxy learns
// the server's idle timeouts from the closes it observes while connections
// sit idle, and retires idle connections shortly before them, opening
// their replacements first. Servers time out a connection waiting for its
// first request (nginx: client_header_timeout) and one waiting for its
// next (keepalive_timeout) separately, so each is learnt on its own.
// Learning needs two closes that agree: a restart closes every connection
// at once, at whatever age, and must not teach a timeout that was never
// there.
//
// All of this runs in the client's loop (Run), one dial at a time, with
// back-off after a failed dial. It applies to HTTP/1.1
// upstreams; over HTTP/2 the Transport keeps its one multiplexed
// connection, and the server announces its closes with GOAWAY.

// Dial back-off of the warm-connection tending.
const (
	warmMinBackoff = time.Second
	warmMaxBackoff = time.Minute
)

// warmer keeps a client's warm connections and learns the server's idle
// timeouts. Its methods are safe for concurrent use: the fast path's pools
// report closes (observeClose) from request goroutines.
type warmer struct {
	name     string
	target   int           // warm_connections
	idleConn time.Duration // timeouts.idle_conn: the longest a connection waits idle
	log      *zap.Logger
	m        *Metrics
	current  func() *generation // the generation in use; nil when none

	mu        sync.Mutex
	learnt    [2]idleLearner // by whether the connection had carried a request (index 1)
	dialTime  time.Duration  // how long a dial takes (moving average)
	backoff   time.Duration
	notBefore time.Time // no warm dial before this (after a failure)
}

// idleLearner learns one of the server's idle timeouts.
type idleLearner struct {
	timeout   time.Duration // as learnt; 0 until two closes agree
	lastClose time.Duration // the idle age of the last close observed
}

// observeClose is told the idle age of a connection the server closed,
// and whether it had carried a request.
func (w *warmer) observeClose(idle time.Duration, used bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := &w.learnt[h1Index(used)]
	prev := l.lastClose
	l.lastClose = idle
	tolerance := max(2*peekInterval(l.timeout), idle/10)
	if prev == 0 || absDuration(idle-prev) > tolerance {
		return
	}
	learnt := min(idle, prev)
	if l.timeout == 0 || learnt < l.timeout {
		l.timeout = learnt
		if g := w.current(); g != nil {
			// At once: the tending sets it too, but does not run without
			// warm connections, and the retirement is for every idle one.
			g.h1.Pool.SetMaxAge(used, w.retireAgeLocked(used))
		}
		what := "a new connection's first request"
		if used {
			what = "the next request (keep-alive)"
		}
		w.log.Info("learnt how long the upstream keeps an idle connection open; idle connections are retired before it",
			zap.String(fieldUpstream, w.name), zap.String("waiting_for", what), zap.Duration("server_idle_timeout", learnt),
			zap.Duration("retire_after", w.retireAgeLocked(used)))
	}
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// peekInterval is how often idle connections are checked for the server's
// closes: often while the server's idle timeout is unknown (the precision
// with which it is learnt), then a twentieth of it.
func peekInterval(serverIdle time.Duration) time.Duration {
	if serverIdle == 0 {
		return 100 * time.Millisecond
	}
	return min(max(serverIdle/20, 100*time.Millisecond), 5*time.Second)
}

// retireAgeLocked is how long a connection may sit idle: timeouts.idle_conn,
// or less than the server's idle timeout by a margin for the check's
// precision, a round trip and a tenth.
func (w *warmer) retireAgeLocked(used bool) time.Duration {
	age := w.idleConn
	if t := w.learnt[h1Index(used)].timeout; t > 0 {
		margin := max(100*time.Millisecond, t/10, 2*w.dialTime)
		age = min(age, max(t-peekInterval(t)-margin, 50*time.Millisecond))
	}
	return age
}

// maxAge is retireAgeLocked for a new generation's pool (genHooks).
func (w *warmer) maxAge(used bool) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.retireAgeLocked(used)
}

// peekLocked is how often tend checks: the finer of the two learners.
func (w *warmer) peekLocked() time.Duration {
	return min(peekInterval(w.learnt[0].timeout), peekInterval(w.learnt[1].timeout))
}

// noteDial feeds the dial-time average.
func (w *warmer) noteDial(d time.Duration) {
	w.mu.Lock()
	if w.dialTime == 0 {
		w.dialTime = d
	} else {
		w.dialTime = (3*w.dialTime + d) / 4
	}
	w.mu.Unlock()
}

// tend checks the idle connections of the generation in use for the
// server's closes, replaces the one about to be retired, and opens
// connections up to warm_connections. It returns when it wants to run
// again (0: nothing to tend).
func (w *warmer) tend(ctx context.Context) time.Duration {
	g := w.current()
	if g == nil || g.h2.Load() {
		return 0
	}
	pool := g.h1.Pool
	left, firstExpiry := pool.Reap()
	w.mu.Lock()
	pool.SetMaxAge(false, w.retireAgeLocked(false))
	pool.SetMaxAge(true, w.retireAgeLocked(true))
	peek := w.peekLocked()
	lead := max(2*w.dialTime, peek)
	mayDial := !time.Now().Before(w.notBefore)
	w.mu.Unlock()
	w.m.warmConnections(w.name, left)
	if left == 0 && w.target == 0 {
		return 0
	}
	replaceBy := time.Now().Add(lead)
	if mayDial && left > 0 && firstExpiry.Before(replaceBy) && int(g.h1.Open.Load()) <= w.target {
		// Make before break: the replacement first, then the old one goes.
		if w.dial(ctx, g) {
			if c := pool.TakeExpiring(replaceBy); c != nil {
				c.Close()
			}
		}
	}
	for mayDial && int(g.h1.Open.Load()) < w.target && ctx.Err() == nil {
		if !w.dial(ctx, g) {
			break
		}
	}
	wait := peek
	if left > 0 {
		if until := time.Until(firstExpiry) - lead; until > 0 && until < wait {
			wait = until
		}
	}
	return max(wait, 10*time.Millisecond)
}

// dial opens one connection for g's pool; a failure starts (or doubles)
// the back-off, so that a down upstream is not hammered.
func (w *warmer) dial(ctx context.Context, g *generation) bool {
	c, err := g.dialFastPath(ctx)
	if err != nil {
		w.mu.Lock()
		if !errors.Is(err, h1.ErrNegotiatedH2) {
			w.backoff = min(max(2*w.backoff, warmMinBackoff), warmMaxBackoff)
			w.notBefore = time.Now().Add(w.backoff)
			w.log.Debug("warm connection not opened; backing off", zap.String(fieldUpstream, w.name),
				zap.Error(err), zap.Duration("backoff", w.backoff))
		}
		w.mu.Unlock()
		return false
	}
	w.mu.Lock()
	w.backoff = 0
	settle := min(max(w.dialTime, 10*time.Millisecond), 200*time.Millisecond)
	w.mu.Unlock()
	// A connection that never carried a request has not read what the
	// server sends after the handshake (TLS 1.3 session tickets, about a
	// round trip later): read it now, in the background, not when the
	// first request takes the connection.
	if !c.Settle(settle) {
		c.Close()
		return false
	}
	g.h1.Pool.Put(c)
	return true
}

// h1Index is the learner of connections that have carried a request (1)
// or not (0), as h1.Pool keeps their idle ages apart.
func h1Index(used bool) int {
	if used {
		return 1
	}
	return 0
}

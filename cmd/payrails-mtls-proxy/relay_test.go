package main

import (
	"net"
	"sync"
	"testing"
	"time"
)

// delayRelay is a loopback TCP relay that puts distance between the proxy
// and a local upstream: every chunk read from one side is written to the
// other oneWay later, in order, in both directions, and so is the end of a
// direction (a FIN). Across it, a server's close of an idle connection
// reaches the proxy oneWay after the server made it, as on the internet,
// and a request written meanwhile reaches a server that has closed: the
// keep-alive race (issue 17). At most relayQueue chunks wait in each
// direction (then reading stops, as a full TCP window would); Close, which
// the test's cleanup calls, ends every connection and goroutine.
type delayRelay struct {
	addr   string
	ln     net.Listener
	target string
	oneWay time.Duration

	wg     sync.WaitGroup // the accept loop and every connection's goroutines
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

const relayQueue = 64

// startDelayRelay listens on a free loopback port and relays to target.
func startDelayRelay(t testing.TB, target string, oneWay time.Duration) *delayRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &delayRelay{addr: ln.Addr().String(), ln: ln, target: target, oneWay: oneWay, conns: map[net.Conn]struct{}{}}
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Go(func() { r.relay(c) })
		}
	})
	t.Cleanup(r.Close)
	return r
}

// Close stops accepting, cuts every relayed connection and waits for the
// relay's goroutines.
func (r *delayRelay) Close() {
	r.ln.Close()
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// track registers c for Close; false (c closed) when the relay is closing.
func (r *delayRelay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *delayRelay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

// relay connects client to the target and pipes both ways until both
// directions have ended.
func (r *delayRelay) relay(client net.Conn) {
	if !r.track(client) {
		return
	}
	defer r.untrack(client)
	upstream, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil || !r.track(upstream) {
		return // the client sees its connection closed, as after a refused connect
	}
	defer r.untrack(upstream)
	var both sync.WaitGroup
	both.Go(func() { r.pipe(upstream, client) })
	both.Go(func() { r.pipe(client, upstream) })
	both.Wait()
}

// chunk is what was read from one side, or its end (end), and when it may
// be passed on.
type chunk struct {
	data []byte
	end  bool
	due  time.Time
}

// pipe copies src to dst, each chunk and the end oneWay after they were
// read. The end of src becomes a half-close of dst, so that the other
// direction can still finish; a failed write cuts src.
func (r *delayRelay) pipe(dst, src net.Conn) {
	q := make(chan chunk, relayQueue)
	go func() { // ends when src does (Close or a failed write closes it)
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{data: buf[:n], due: time.Now().Add(r.oneWay)}
			}
			if err != nil {
				q <- chunk{end: true, due: time.Now().Add(r.oneWay)}
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due)) // the distance, not a wait for anything
		if c.end {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			continue
		}
		if _, err := dst.Write(c.data); err != nil {
			src.Close()
			for range q { // let the reader finish
			}
			return
		}
	}
}

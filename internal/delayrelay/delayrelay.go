// Package delayrelay is a loopback TCP relay that puts distance between a
// client and a local server, for the side-by-side benchmark's WAN
// scenarios (bench/compare) and for the tests of what distance does to
// idle connections (cmd's keep-alive race). Not part of the binary.
//
// Everything read from one side is written to the other oneWay later, in
// order, in both directions, and so is the end of a direction (a FIN):
// across the relay, a server's close of an idle connection reaches the
// client oneWay after the server made it, as on the internet, and a request
// written meanwhile reaches a server that has already closed. A new
// connection costs one round trip (2×oneWay) before its first byte is
// passed on, as a TCP handshake over that distance would. Bandwidth is not
// limited.
package delayrelay

import (
	"net"
	"sync"
	"time"
)

// queue bounds the chunks in flight in one direction; a full queue stops
// reading, as a full TCP window would.
const queue = 256

// Relay is a running relay; Close ends it.
type Relay struct {
	ln     net.Listener
	target string
	oneWay time.Duration
	done   chan struct{} // closed by Close

	wg    sync.WaitGroup // the accept loop and every connection's goroutines
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Start listens on a free loopback port and relays each connection to
// target, oneWay each way.
func Start(target string, oneWay time.Duration) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, target: target, oneWay: oneWay, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.serve)
	return r, nil
}

// Addr is the relay's listening address.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Close stops accepting, cuts every relayed connection and waits for all of
// the relay's goroutines.
func (r *Relay) Close() {
	r.mu.Lock()
	select {
	case <-r.done: // closed already
	default:
		close(r.done)
	}
	r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *Relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() { r.relay(c) })
	}
}

// track registers c for Close; it reports false (and closes c) when the
// relay is already closing.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.done:
		c.Close()
		return false
	default:
		r.conns[c] = struct{}{}
		return true
	}
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

// relay connects client to the target, after the simulated handshake, and
// pipes both ways until both directions have ended.
func (r *Relay) relay(client net.Conn) {
	if !r.track(client) {
		return
	}
	defer r.untrack(client)
	select {
	case <-time.After(2 * r.oneWay): // the distance, not a wait for anything
	case <-r.done:
		return
	}
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
// direction can still finish (an HTTP response after the client's FIN); a
// failed write cuts src.
func (r *Relay) pipe(dst, src net.Conn) {
	q := make(chan chunk, queue)
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

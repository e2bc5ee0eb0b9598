package main

import (
	"net"
	"sync"
	"time"
)

// relayQueue bounds the chunks in flight in one direction; a full queue
// stops reading, as a full TCP window would.
const relayQueue = 256

// delayRelay is a loopback TCP relay that makes a local upstream look far
// away: each chunk read from one side is written to the other oneWay later,
// in order, in both directions, and a new connection costs one round trip
// (2×oneWay) before its first byte is forwarded, as a TCP handshake over
// that distance would. Bandwidth is not limited.
type delayRelay struct {
	ln     net.Listener
	target string
	oneWay time.Duration
	done   chan struct{} // closed by Close

	wg    sync.WaitGroup // the accept loop and every connection
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startRelay listens on a free loopback port and relays to target.
func startRelay(target string, oneWay time.Duration) (*delayRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &delayRelay{ln: ln, target: target, oneWay: oneWay, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// Addr is the relay's listening address.
func (r *delayRelay) Addr() string { return r.ln.Addr().String() }

// Close stops accepting, cuts every relayed connection and waits for all of
// the relay's goroutines.
func (r *delayRelay) Close() {
	close(r.done)
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *delayRelay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.handle(c)
	}
}

// track registers c for Close; it reports false (and closes c) when the
// relay is already closing.
func (r *delayRelay) track(c net.Conn) bool {
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

func (r *delayRelay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

// handle relays one client connection after the simulated handshake.
func (r *delayRelay) handle(client net.Conn) {
	defer r.wg.Done()
	if !r.track(client) {
		return
	}
	defer r.untrack(client)
	select {
	case <-time.After(2 * r.oneWay):
	case <-r.done:
		return
	}
	upstream, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil || !r.track(upstream) {
		return
	}
	defer r.untrack(upstream)
	var both sync.WaitGroup
	both.Add(2)
	go func() { defer both.Done(); r.pipe(upstream, client) }()
	go func() { defer both.Done(); r.pipe(client, upstream) }()
	both.Wait()
}

// chunk is bytes read from one side and the time they may be written to
// the other.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, each chunk oneWay after it was read. At EOF it
// half-closes dst, so the other direction can still finish (an HTTP
// response after the client's FIN).
func (r *delayRelay) pipe(dst, src net.Conn) {
	q := make(chan chunk, relayQueue)
	go func() { // reader; ends at EOF or when src is closed, and then closes q
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{data: buf[:n], due: time.Now().Add(r.oneWay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.data); err != nil {
			src.Close() // unblocks the reader
			for range q {
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

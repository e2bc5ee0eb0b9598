// Package loopback runs the small servers tests put on loopback listeners:
// fake upstreams, egress proxies, echo servers. Test support only: nothing
// in the binary imports it.
package loopback

import (
	"net"
	"sync"
	"testing"
)

// Serve accepts connections on ln until the test ends, and runs handle on
// each one on a goroutine of its own, closing the connection when handle
// returns. When the test ends it closes ln and every connection still
// open (which ends a handle blocked on one) and waits for every handle.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		done  bool
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if done {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		done = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

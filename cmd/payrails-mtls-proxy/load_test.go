package main

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// load is client traffic that runs while a test changes things under it:
// a fixed number of workers, each sending one request after another, until
// stop is called, maxRequests have been started in all, or maxDuration has
// passed, whichever comes first. It keeps what each request's do returned,
// in the order they completed. What a request is and what is kept about it
// is the test's (O).
type load[O any] struct {
	maxRequests int64
	deadline    time.Time
	started     atomic.Int64 // requests begun, the one past the bound included
	served      atomic.Int64 // requests whose outcome was kept
	stopped     atomic.Bool
	ended       chan struct{} // closed when every worker has returned
	wg          sync.WaitGroup

	mu       sync.Mutex
	outcomes []O
}

// startLoad starts workers goroutines; the n-th request of worker w (both
// counted from 0) is do(w, n), on that worker's goroutine, so do must be
// safe to run concurrently with itself for different workers, and must not
// call t.Fatal (record the failure in O instead). The load is stopped when
// the test ends, if the test has not stopped it before.
func startLoad[O any](t testing.TB, workers, maxRequests int, maxDuration time.Duration, do func(worker, n int) O) *load[O] {
	l := &load[O]{maxRequests: int64(maxRequests), deadline: time.Now().Add(maxDuration), ended: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			for n := 0; l.more(); n++ {
				o := do(w, n)
				l.mu.Lock()
				l.outcomes = append(l.outcomes, o)
				l.mu.Unlock()
				l.served.Add(1)
			}
		})
	}
	go func() { l.wg.Wait(); close(l.ended) }()
	t.Cleanup(func() { l.stop() })
	return l
}

// more reports whether a worker may begin another request.
func (l *load[O]) more() bool {
	return !l.stopped.Load() && l.started.Add(1) <= l.maxRequests && time.Now().Before(l.deadline)
}

// waitServed lets the load run until n more requests have been served
// (their outcomes kept), or until it has ended on one of its bounds.
func (l *load[O]) waitServed(n int) {
	target := l.served.Load() + int64(n)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for l.served.Load() < target {
		select {
		case <-l.ended:
			return
		case <-tick.C:
		}
	}
}

// stop tells the workers to finish the request they are in, waits for
// them, and returns every outcome kept. It may be called again: later calls
// return the same outcomes.
func (l *load[O]) stop() []O {
	l.stopped.Store(true)
	<-l.ended
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outcomes
}

// TestLoadBounds: the harness stops on each of its bounds and keeps every
// outcome once, so that a test built on it can neither run away nor lose
// what it measured.
func TestLoadBounds(t *testing.T) {
	type req struct{ w, n int }
	t.Run("count", func(t *testing.T) {
		ld := startLoad(t, 4, 50, time.Minute, func(w, n int) req { return req{w, n} })
		ld.waitServed(1000) // returns when the load ends, not after a minute
		got := ld.stop()
		if len(got) != 50 {
			t.Fatalf("%d outcomes, want 50", len(got))
		}
		seen := map[req]bool{}
		for _, r := range got {
			if seen[r] || r.w < 0 || r.w >= 4 {
				t.Errorf("outcome %+v twice or from no worker", r)
			}
			seen[r] = true
		}
	})
	t.Run("time", func(t *testing.T) {
		start := time.Now()
		slow := func(w, n int) req { time.Sleep(time.Millisecond); return req{w, n} } // a request takes 1ms or more
		ld := startLoad(t, 2, 1<<30, 50*time.Millisecond, slow)
		ld.waitServed(1 << 30)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("a 50ms load ran for %s", took)
		}
		// Each worker begins requests for 50ms, the last one just before the end.
		if n := len(ld.stop()); n == 0 || n > 2*(50+1) {
			t.Errorf("%d outcomes from 2 workers in 50ms of requests of 1ms or more", n)
		}
	})
	t.Run("stop", func(t *testing.T) {
		ld := startLoad(t, 3, 1<<30, time.Minute, func(w, n int) req { return req{w, n} })
		ld.waitServed(100)
		first := ld.stop()
		if len(first) < 100 {
			t.Errorf("%d outcomes after waiting for 100", len(first))
		}
		if again := ld.stop(); len(again) != len(first) {
			t.Errorf("second stop: %d outcomes, want the same %d", len(again), len(first))
		}
	})
}

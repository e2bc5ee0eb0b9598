package upstream

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBudgetNeverOverspends: requests and retries race across the turns
// of the seconds (a clock of the test's, turned while they run); however
// they interleave, the retries allowed within one window never exceed a
// fifth of the requests counted before them (or the floor). A count lost
// when a second's bucket is reset would allow more.
func TestBudgetNeverOverspends(t *testing.T) {
	for round := range 50 {
		var sec atomic.Int64
		sec.Store(1_000_000)
		b := &retryBudget{now: sec.Load}
		var requests, allowed atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					b.request()
					requests.Add(1)
					if b.allow() {
						allowed.Add(1)
					}
				}
			})
		}
		// Five turns of the second, all within one window of ten, each
		// once the workers have made this second's share of requests.
		deadline := time.Now().Add(30 * time.Second)
		for range 5 {
			for requests.Load() < 2000*(sec.Load()-999_999) {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the workers made only %d requests in 30 s", round, requests.Load())
				}
			}
			sec.Add(1)
		}
		close(stop)
		wg.Wait()
		limit := max(budgetFloor, int64(math.Ceil(budgetRatio*float64(requests.Load())))) // a retry is allowed while fewer than a fifth were made
		if a := allowed.Load(); a > limit {
			t.Fatalf("round %d: %d retries allowed for %d requests within one window; the budget is %d", round, a, requests.Load(), limit)
		}
	}
}

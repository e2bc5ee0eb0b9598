package upstream

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// retryBudget bounds retries to a fifth of the requests of the last ten
// seconds (and at least budgetFloor in that time, so that a quiet upstream
// can still retry), so that an upstream that is down does not get its load
// multiplied by the retries. Counting a request is lock-free (every
// request does it). Each count carries the second it counts, so a bucket
// of an older second is restarted by the add that finds it stale, in the
// same compare-and-swap: no count is ever lost at the turn of a second (a
// lost retry would let the budget be overspent). The zero value is ready;
// safe for concurrent use.
type retryBudget struct {
	mu      sync.Mutex // serialises allow
	buckets [budgetWindow]budgetBucket
	now     func() int64 // the Unix second; nil: the clock's (tests turn their own)
}

// budgetBucket holds one second's counts, each a secondCount.
type budgetBucket struct{ requests, retries atomic.Uint64 }

// A secondCount packs a Unix second (high 32 bits) and a count (low 32).
const countBits = 32

// add counts one in c for second sec.
func add(c *atomic.Uint64, sec int64) {
	for {
		v := c.Load()
		next := uint64(sec)<<countBits | 1
		if int64(v>>countBits) == sec {
			next = v + 1
		}
		if c.CompareAndSwap(v, next) {
			return
		}
	}
}

// countAt returns c's count when it is of one of the budgetWindow seconds
// up to now, else 0.
func countAt(c *atomic.Uint64, now int64) int64 {
	v := c.Load()
	if age := now - int64(v>>countBits); age < 0 || age >= budgetWindow {
		return 0
	}
	return int64(v & (1<<countBits - 1))
}

const (
	budgetWindow = 10 // seconds
	budgetRatio  = 0.2
	budgetFloor  = 10
)

// errBudget explains a retry the budget refused.
var errBudget = errors.New("not retried: the retry budget (a fifth of the requests of the last 10 s) is spent: the upstream is failing")

func (b *retryBudget) second() int64 {
	if b.now != nil {
		return b.now()
	}
	return time.Now().Unix()
}

// request counts one request.
func (b *retryBudget) request() {
	sec := b.second()
	add(&b.buckets[sec%budgetWindow].requests, sec)
}

// allow takes one retry from the budget, and reports whether there was one.
// The second is read under the lock, so that the retries are counted in
// the order they were allowed.
func (b *retryBudget) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.second()
	var requests, retries int64
	for i := range b.buckets {
		requests += countAt(&b.buckets[i].requests, now)
		retries += countAt(&b.buckets[i].retries, now)
	}
	if float64(retries) >= max(budgetFloor, budgetRatio*float64(requests)) {
		return false
	}
	add(&b.buckets[now%budgetWindow].retries, now)
	return true
}

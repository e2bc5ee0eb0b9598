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
// request does it); a second's bucket is reset by the first to see it
// stale, so a count or two may be lost at the turn of a second, which a
// budget can afford. The zero value is ready; safe for concurrent use.
type retryBudget struct {
	mu      sync.Mutex // serialises allow
	buckets [budgetWindow]budgetBucket
}

type budgetBucket struct {
	sec, requests, retries atomic.Int64
}

const (
	budgetWindow = 10 // seconds
	budgetRatio  = 0.2
	budgetFloor  = 10
)

// errBudget explains a retry the budget refused.
var errBudget = errors.New("not retried: the retry budget (a fifth of the requests of the last 10 s) is spent: the upstream is failing")

// bucket returns the bucket of second sec, reset if it held an older one.
func (b *retryBudget) bucket(sec int64) *budgetBucket {
	bk := &b.buckets[sec%budgetWindow]
	if old := bk.sec.Load(); old != sec && bk.sec.CompareAndSwap(old, sec) {
		bk.requests.Store(0)
		bk.retries.Store(0)
	}
	return bk
}

// request counts one request.
func (b *retryBudget) request() { b.bucket(time.Now().Unix()).requests.Add(1) }

// allow takes one retry from the budget, and reports whether there was one.
func (b *retryBudget) allow() bool {
	now := time.Now().Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.bucket(now)
	var requests, retries int64
	for i := range b.buckets {
		bk := &b.buckets[i]
		if now-bk.sec.Load() < budgetWindow {
			requests += bk.requests.Load()
			retries += bk.retries.Load()
		}
	}
	if float64(retries) >= max(budgetFloor, budgetRatio*float64(requests)) {
		return false
	}
	cur.retries.Add(1)
	return true
}

package poll

import (
	"testing"
	"time"
)

// The first re-check comes after minInterval; the interval doubles up to
// maxInterval, so a quick condition is seen at once and a slow one does not
// spin on a shared machine.
const (
	minInterval = time.Millisecond
	maxInterval = 10 * time.Millisecond
)

// Until calls cond until it returns true, and fails the test with
// "timed out after <timeout> waiting for <what>" if that has not happened
// within timeout. cond is always called at least once, and once more at the
// deadline, from the calling goroutine, which must be the test's (Until
// calls t.Fatalf).
func Until(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for interval := minInterval; !cond(); interval = min(2*interval, maxInterval) {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(min(interval, left))
	}
}

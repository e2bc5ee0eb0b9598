package growstack

import (
	"runtime"
	"sync"
	"testing"
)

// TestGrow: goroutines that called Grow hold stacks of 16 KiB each, as
// the runtime counts its stack memory; goroutines that did not, the
// smaller stacks they started with. (The count is approximate: stacks the
// runtime keeps for reuse are not counted again. Grow's goroutines are
// measured first, while no stack of their size is kept yet.)
func TestGrow(t *testing.T) {
	const n = 500
	with := stackPerGoroutine(t, n, Grow)
	without := stackPerGoroutine(t, n, func() {})
	if with < 12<<10 || with < 2*without {
		t.Errorf("with Grow: %d bytes of stack a goroutine (without: %d), want about %d", with, without, 16<<10)
	}
	t.Logf("stack a goroutine: %d bytes without Grow, %d with", without, with)
}

// stackPerGoroutine starts n goroutines that call f and then wait, and
// returns the growth of the runtime's stack memory divided by n.
func stackPerGoroutine(t *testing.T, n int, f func()) uint64 {
	t.Helper()
	var ready, release sync.WaitGroup
	ready.Add(n)
	release.Add(1)
	var done sync.WaitGroup
	done.Add(n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		go func() {
			defer done.Done()
			f()
			ready.Done()
			release.Wait()
		}()
	}
	ready.Wait()
	runtime.ReadMemStats(&after)
	release.Done()
	done.Wait()
	if after.StackInuse < before.StackInuse {
		return 0
	}
	return (after.StackInuse - before.StackInuse) / uint64(n)
}

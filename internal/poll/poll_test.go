package poll

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls Until with a recorder on its own goroutine and returns the
// failure message ("" when Until returned) and how long it took.
func run(timeout time.Duration, cond func() bool) (string, time.Duration) {
	r := &fatalRecorder{}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Until(r, "the thing", timeout, cond)
	}()
	<-done
	return r.msg, time.Since(start)
}

func TestUntilReturnsOnceTrue(t *testing.T) {
	var calls atomic.Int32
	msg, took := run(10*time.Second, func() bool { return calls.Add(1) >= 5 })
	if msg != "" {
		t.Fatalf("failed: %s", msg)
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("cond called %d times, want 5 (no call after it returned true)", n)
	}
	if took > 5*time.Second {
		t.Errorf("took %s for a condition true on the fifth call", took)
	}
}

func TestUntilTrueAtOnceDoesNotWait(t *testing.T) {
	msg, took := run(10*time.Second, func() bool { return true })
	if msg != "" || took > time.Second {
		t.Errorf("got %q after %s, want an immediate return", msg, took)
	}
}

func TestUntilFailsAtTheDeadline(t *testing.T) {
	var calls atomic.Int32
	msg, took := run(100*time.Millisecond, func() bool { calls.Add(1); return false })
	if want := "timed out after 100ms waiting for the thing"; msg != want {
		t.Errorf("message %q, want %q", msg, want)
	}
	if took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("failed after %s, want just after the 100ms deadline", took)
	}
	if n := calls.Load(); n < 3 {
		t.Errorf("cond called %d times in 100ms, want it polled repeatedly", n)
	}
}

func TestUntilChecksOnceMoreAtTheDeadline(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	msg, _ := run(50*time.Millisecond, func() bool { return !time.Now().Before(deadline) })
	if msg != "" {
		t.Errorf("a condition that turns true at the deadline failed: %s", msg)
	}
}

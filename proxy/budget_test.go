package proxy_test

import (
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
	"github.com/prometheus/client_golang/prometheus"
)

// closingListener is an upstream that is down but reachable: it accepts
// every connection and closes it at once, so that each attempt of the
// proxy (one TCP connection, a TLS handshake that fails) is counted.
type closingListener struct {
	addr     string
	accepted atomic.Int64
}

func startClosingListener(t testing.TB) *closingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &closingListener{addr: ln.Addr().String()}
	loopback.Serve(t, ln, func(net.Conn) { l.accepted.Add(1) })
	return l
}

// openLoad makes n calls of do, one every interval, each on a goroutine
// of its own, and returns when all are done: clients that arrive whatever
// the proxy makes of the earlier ones, so that a proxy that retries (and
// makes its clients wait for it) and one that does not are offered the
// same requests at the same moments.
func openLoad(n int, interval time.Duration, do func(i int)) {
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval))) // load shaping, not synchronisation
		wg.Go(func() { do(i) })
	}
	wg.Wait()
}

// TestRetryBudget: an upstream that is down for 5 s under load gets at most
// 1.2 times the requests it would get from a proxy that never retries
// (issue 17: retries at most a fifth of the requests of the last 10 s);
// the rest fail fast, counted in the budget's metric and said in the
// client's error.
func TestRetryBudget(t *testing.T) {
	const (
		requests = 1000
		interval = 5 * time.Second / requests
	)
	type run struct {
		name      string
		rt        config.Retry
		down      *closingListener
		failed    atomic.Int64 // answers other than 200
		budgetWhy atomic.Int64 // answers whose detail names the budget
	}
	noRetries := config.DefaultRetry()
	noRetries.Attempts = 1
	runs := []*run{{name: "retry.attempts 1", rt: noRetries}, {name: "the default retry block", rt: config.DefaultRetry()}}
	regs := make([]*prometheus.Registry, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs { // both at once: the same machine, the same moment
		r.down = startClosingListener(t)
		var e *env
		e, regs[i] = retryEnvAt(t, r.rt, newPKI(t), r.down.addr)
		c := e.forwardClient(t)
		wg.Go(func() {
			openLoad(requests, interval, func(i int) {
				req := request{method: "GET", path: fmt.Sprintf("/v1/payments/%d", i)}
				if i%2 == 1 { // as many keyed payments: both may be retried
					req = request{method: "POST", path: "/v1/payments", key: fmt.Sprint("pay-", i), body: payment}
				}
				got := sendVia(t, c, req)
				if got.status != 200 {
					r.failed.Add(1)
				}
				if strings.Contains(got.body, "not retried: the retry budget") {
					r.budgetWhy.Add(1)
				}
			})
		})
	}
	start := time.Now()
	wg.Wait()
	took := time.Since(start)
	without, with := runs[0].down.accepted.Load(), runs[1].down.accepted.Load()
	live := map[string]string{"upstream": "live"}
	retries := counter(t, regs[1], "payrails_proxy_upstream_retries_total", map[string]string{"upstream": "live", "reason": "tls"})
	refused := counter(t, regs[1], "payrails_proxy_upstream_retry_budget_exhausted_total", live)
	t.Logf("upstream down, %d requests in %s, one every %s: without retries it got %d connections; with the default "+
		"retry block %d (%.2fx): %v retries made, %v refused by the budget, %d answers naming the budget; failed: %d and %d",
		requests, took.Round(100*time.Millisecond), interval, without, with, float64(with)/float64(without), retries, refused,
		runs[1].budgetWhy.Load(), runs[0].failed.Load(), runs[1].failed.Load())
	if without != requests {
		t.Errorf("without retries the upstream got %d connections for %d requests", without, requests)
	}
	// The budget is a fifth of the requests of the last 10 s: within one
	// window, 1.2x in all. A loaded machine can stretch the run past it,
	// and the requests that leave the window take their share of retries
	// with them (two failures of 1,201 seen in runs of 11.2 and 12.5 s); then
	// each window started has a fifth.
	windows := max(1, math.Ceil(took.Seconds()/10))
	if limit := float64(without) + windows*math.Ceil(0.2*float64(without)); float64(with) > limit {
		t.Errorf("with retries the upstream got %d connections in %s, more than the %.0f a fifth of the %d without "+
			"allows in %.0f windows of 10 s", with, took.Round(100*time.Millisecond), limit, without, windows)
	}
	if with <= without || refused == 0 || runs[1].budgetWhy.Load() == 0 {
		t.Errorf("with retries: %d connections (without: %d), %v budget refusals, %d answers naming the budget: "+
			"want some retries, and the budget refusing the rest", with, without, refused, runs[1].budgetWhy.Load())
	}
	if f := runs[0].failed.Load() + runs[1].failed.Load(); f != 2*requests {
		t.Errorf("%d of %d requests to a down upstream failed", f, 2*requests)
	}
	if n := counter(t, regs[0], "payrails_proxy_upstream_retry_budget_exhausted_total", live); n != 0 {
		t.Errorf("retry.attempts 1: %v budget refusals, want 0 (no retry is ever asked for)", n)
	}
}

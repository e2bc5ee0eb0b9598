package main

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/delayrelay"
	"go.uber.org/zap/zaptest/observer"
)

// keepAliveRun is one proxy in front of its own nginx with
// keepalive_timeout 1s, across a relay that delays each direction by 15 ms,
// and a client sending one request about every second.
type keepAliveRun struct {
	name     string
	upstream string // YAML for the upstream
	ng       *nginxServer
	app      *running
	outcomes []sentRequest
}

// TestKeepAliveRace: issue 17, point 6. nginx closes a connection idle for
// 1 s; a client sends one request every 0.95 to 1.05 s, keyed and un-keyed
// payments in turn, for 60 s. Across 15 ms each way, a request the proxy
// writes on a connection nginx is closing reaches nginx after its close,
// and nginx's close reaches the proxy after the request was written: the
// request is lost before any answer began. A keyed payment is then sent
// again and never fails. An un-keyed one cannot be, and need not be: once
// the proxy has learnt the server's idle timeout from two of its closes,
// it retires idle connections before it (warm.go), so that no request is
// written on a connection the server is closing. Before that, an un-keyed
// payment may still meet the race: those failures are counted and
// reported, not failed on. Both with a warm connection (the default) and
// without (warm_connections: 0).
//
// Without the retirement (checked once with the proxy patched not to
// retire) the race goes on all along, about a third of the sends meeting
// it: 6 of 29 and 7 of 28 keyed payments were sent again, 9 of 28 un-keyed
// ones failed in each run, 8 and 7 of them after the timeout was learnt,
// and the test failed.
func TestKeepAliveRace(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s test")
	}
	const (
		duration = 60 * time.Second
		maxSends = 80
	)
	p := newTokenPKI(t)
	runs := []*keepAliveRun{
		{name: "warm_connections: 1 (the default)"},
		{name: "warm_connections: 0", upstream: ", warm_connections: 0"},
	}
	for _, run := range runs {
		run.ng = paymentsNginx(t, p, "keepalive_timeout 1s;")
		relay, err := delayrelay.Start(run.ng.addr, 15*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(relay.Close)
		run.app = paymentsApp(t, p, relay.Addr(), run.upstream)
	}
	var wg sync.WaitGroup
	for i, run := range runs {
		c := run.app.client(t)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 17)) // the same intervals every run
			start := time.Now()
			for n := 0; n < maxSends && time.Since(start) < duration; n++ {
				time.Sleep(950*time.Millisecond + time.Duration(rng.Int64N(int64(100*time.Millisecond)))) // load shaping: about one a second
				kind := keyedPayment
				if n%2 == 1 {
					kind = unkeyedPayment
				}
				run.outcomes = append(run.outcomes, sendPayment(c, kind, fmt.Sprintf("ka-%d-%d", i, n)))
			}
		})
	}
	wg.Wait()
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) { checkKeepAliveRun(t, run) })
	}
}

// checkKeepAliveRun logs a run's figures and checks them: no keyed
// payment failed, the proxy learnt nginx's 1 s idle timeout, and no
// un-keyed payment sent after that failed.
func checkKeepAliveRun(t *testing.T, run *keepAliveRun) {
	start := run.outcomes[0].at
	figs := tally(t, run.outcomes, nginxLog(t, run.ng, "arrivals.log"))
	logFigures(t, figs)
	if f := figs[keyedPayment]; f == nil || f.succeeded != f.sent {
		t.Errorf("keyed payments failed: %+v", f)
	}
	var learnt []observer.LoggedEntry // of connections that carried a request: nginx's keepalive_timeout
	for _, l := range run.app.logs.FilterMessageSnippet("learnt how long the upstream keeps an idle connection open").All() {
		f := l.ContextMap()
		t.Logf("learnt %v waiting for %v (retired after %v) %s after the first send", f["server_idle_timeout"],
			f["waiting_for"], f["retire_after"], l.Time.Sub(start).Round(time.Millisecond))
		if f["waiting_for"] == "the next request (keep-alive)" {
			learnt = append(learnt, l)
		}
	}
	if len(learnt) == 0 {
		t.Fatal("the proxy never learnt nginx's keep-alive timeout")
	}
	if d, _ := learnt[0].ContextMap()["server_idle_timeout"].(time.Duration); d < 900*time.Millisecond || d > 1300*time.Millisecond {
		t.Errorf("learnt an idle timeout of %v; nginx's is 1 s", d)
	}
	var before, after int
	for i, o := range run.outcomes {
		if o.ok() && o.attempts == 1 {
			continue
		}
		t.Logf("send %d (%s, %s after the first): %d attempts, %s", i, o.kind, o.at.Sub(start).Round(time.Millisecond), o.attempts, o.reason())
		switch {
		case o.ok():
		case o.at.Before(learnt[0].Time):
			before++
		default:
			after++
			t.Errorf("send %d, %s, failed after the proxy had learnt the idle timeout: %s", i, o.kind, o.reason())
		}
	}
	t.Logf("un-keyed payments failed: %d before the idle timeout was learnt, %d after; "+
		"payrails_proxy_upstream_retries_total by reason: %v", before, after, retriesMetric(t, run.app))
}

package main

import (
	"fmt"
	"testing"
	"time"
)

// TestNothingLostNginxRestarts: TestNothingLost's successor against a
// server no one here wrote (issue 17). Six clients send keyed payments
// (each with its own key), un-keyed payments (each to a path of its own)
// and GETs through the proxy while a real nginx is killed and started
// again on the same port six times, each time about 0.3 s down and then
// 1.5 s up. nginx counts what arrives (paymentsNginx says what "processed"
// means).
//
// No keyed payment fails: whatever the restart cut is sent again with its
// key (arriving twice is what Payrails deduplicates, counted, not a
// failure). No payment is doubled: no un-keyed path arrives twice. Every
// success reached nginx. Un-keyed payments may fail (one that was cut
// cannot be sent again without risk), each with its reason, which the
// proxy says in the error's detail; the figures are logged.
func TestNothingLostNginxRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts nginx under load")
	}
	p := newTokenPKI(t)
	ng := paymentsNginx(t, p, "")
	r := paymentsApp(t, p, ng.addr, "")

	const workers, restarts = 6, 6
	kinds := []string{keyedPayment, unkeyedPayment, plainGet}
	clients := r.clients(t, workers)
	ld := startLoad(t, workers, 60000, time.Minute, func(w, n int) sentRequest {
		kind := kinds[(w+n)%len(kinds)]
		return sendPayment(clients[w], kind, fmt.Sprintf("%s-%d-%d", kind[:1], w, n))
	})
	// Between restarts nginx stays up for 1.5 s, longer than the default
	// retry block's pauses add up to (at most 0.2 + 0.4 + 0.8 s): restarts
	// closer together would make one outage longer than the retries, which
	// no retry policy bridges.
	const up = 1500 * time.Millisecond
	var outages []time.Duration
	upSince := time.Now()
	for range restarts {
		ld.waitServed(300)
		time.Sleep(time.Until(upSince.Add(up))) // load shaping: the spacing of the restarts
		outages = append(outages, ng.restart(t, 300*time.Millisecond).Round(time.Millisecond))
		upSince = time.Now()
	}
	ld.waitServed(300)
	outcomes := ld.stop()

	arrivals := nginxLog(t, ng, "arrivals.log")
	figs := tally(t, outcomes, arrivals)
	logFigures(t, figs)
	t.Logf("nginx logged %d arrivals and %d answers (the difference: requests killed between the two)",
		sumCounts(arrivals), sumCounts(nginxLog(t, ng, "answers.log")))
	t.Logf("%d nginx restarts, the port closed for %v; payrails_proxy_upstream_retries_total by reason: %v",
		restarts, outages, retriesMetric(t, r))
	if f := figs[keyedPayment]; f == nil || f.succeeded != f.sent {
		t.Errorf("keyed payments failed: %+v", f)
	}
	for _, kind := range kinds {
		if f := figs[kind]; f == nil || f.succeeded < f.sent/2 {
			t.Errorf("%s: too few succeeded to mean anything: %+v", kind, f)
		}
	}
}

func sumCounts(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

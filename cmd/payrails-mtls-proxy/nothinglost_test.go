package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
)

// outcome of one request as its client saw it.
type outcome struct {
	key    string
	status int
	kind   string // X-Payrails-Proxy-Error, when the proxy made the answer
	err    error  // a transport error the client saw
}

// TestNothingLost: clients send payments (each with its own idempotency
// key) continuously while the upstream restarts and the certificate
// rotates. Every request either succeeds or gets an error its client sees;
// no payment reaches the upstream twice; every success reached it once.
func TestNothingLost(t *testing.T) {
	w := newWorld(t)
	base := time.Now().Add(-50 * time.Hour)
	gen := 0
	next := func() {
		gen++
		l := w.clientCert(t, fmt.Sprint("gen-", gen), base.Add(time.Duration(gen)*time.Minute))
		l.WriteFiles(w.certDir, "domain.pem", "domain.key")
	}
	next()
	r := startApp(t, w.configFile(t, "reload: {debounce: 20ms, poll_interval: 1h}\n"))

	const workers, maxRequests = 6, 20000
	var (
		count    atomic.Int64
		stop     atomic.Bool
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
		deadline = time.Now().Add(time.Minute)
	)
	for i := range workers {
		c := r.client(t)
		wg.Go(func() {
			for n := 0; !stop.Load() && count.Add(1) <= maxRequests && time.Now().Before(deadline); n++ {
				o := outcome{key: fmt.Sprintf("pay-%d-%d", i, n)}
				req, _ := http.NewRequest(http.MethodPost, "http://"+apiHost+"/v1/payments",
					strings.NewReader(`{"amount":100,"currency":"EUR"}`))
				req.Header.Set("Content-Type", "application/json")
				// Not the canonical spelling: Go's client treats a request with
				// X-Idempotency-Key as replayable and would itself resend it when
				// the proxy cuts a response the upstream broke off. The test is
				// about what the proxy sends, so the client must not retry.
				req.Header["x-idempotency-key"] = []string{o.key}
				resp, err := c.Do(req)
				if err != nil {
					o.err = err
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					o.status, o.kind = resp.StatusCode, resp.Header.Get(proxy.HeaderError)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		})
	}
	served := func(n int64) { // let the load run between events
		target := count.Load() + n
		for count.Load() < target && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 12 {
		served(150)
		if i%2 == 0 {
			w.restartAPI(t)
		} else {
			next()
		}
	}
	served(150)
	stop.Store(true)
	wg.Wait()

	arrivals := w.apiOpts.Keys.Snapshot()
	var ok, proxyErrs, clientErrs int
	for _, o := range outcomes {
		n := arrivals[o.key]
		switch {
		case n > 1:
			t.Errorf("payment %s reached the upstream %d times", o.key, n)
		case o.err == nil && o.status == http.StatusOK:
			ok++
			if n != 1 {
				t.Errorf("payment %s succeeded but reached the upstream %d times", o.key, n)
			}
		case o.err == nil && o.kind != "":
			proxyErrs++
		case o.err != nil:
			clientErrs++ // the client saw it fail
		default:
			t.Errorf("payment %s: status %d without a proxy error kind", o.key, o.status)
		}
	}
	t.Logf("%d payments: %d succeeded, %d got a proxy error, %d a connection error; 6 upstream restarts, 6 rotations; none duplicated",
		len(outcomes), ok, proxyErrs, clientErrs)
	if ok < len(outcomes)/2 {
		t.Errorf("only %d of %d payments succeeded", ok, len(outcomes))
	}
}

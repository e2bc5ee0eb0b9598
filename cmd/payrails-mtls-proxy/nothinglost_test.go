package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
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
// every success reached the upstream; a payment sent again reaches it with
// the same key, which the API deduplicates.
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

	const workers = 6
	clients := r.clients(t, workers)
	ld := startLoad(t, workers, 20000, time.Minute, func(w, n int) outcome {
		return pay(clients[w], fmt.Sprintf("pay-%d-%d", w, n))
	})
	for i := range 12 { // let the load run between events
		ld.waitServed(150)
		if i%2 == 0 {
			w.restartAPI(t)
		} else {
			next()
		}
	}
	ld.waitServed(150)
	checkNothingLost(t, ld.stop(), w.apiOpts.Keys.Snapshot())
}

// pay sends one payment with its own idempotency key.
func pay(c *http.Client, key string) outcome {
	o := outcome{key: key}
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
		return o
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	o.status, o.kind = resp.StatusCode, resp.Header.Get(failure.HeaderError)
	return o
}

// checkNothingLost checks the payments' outcomes against how often each
// key reached the upstream (arrivals).
func checkNothingLost(t *testing.T, outcomes []outcome, arrivals map[string]int) {
	t.Helper()
	var ok, proxyErrs, clientErrs, resent int
	for _, o := range outcomes {
		n := arrivals[o.key]
		if n > 1 {
			resent++ // sent again with its key: Payrails processes a key once
		}
		switch {
		case o.err == nil && o.status == http.StatusOK:
			ok++
			if n == 0 {
				t.Errorf("payment %s succeeded but never reached the upstream", o.key)
			}
		case o.err == nil && o.kind != "":
			proxyErrs++
		case o.err != nil:
			clientErrs++ // the client saw it fail
		default:
			t.Errorf("payment %s: status %d without a proxy error kind", o.key, o.status)
		}
	}
	t.Logf("%d keyed payments: %d succeeded, %d got a proxy error, %d a connection error, %d reached the upstream again "+
		"with their key after a restart cut the first send; 6 upstream restarts, 6 rotations", len(outcomes), ok, proxyErrs, clientErrs, resent)
	if ok < len(outcomes)/2 {
		t.Errorf("only %d of %d payments succeeded", ok, len(outcomes))
	}
}

package proxy_test

import (
	"crypto/x509"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// TestReadinessFollowsTheOnlyCertificate: the only certificate, presented
// at start and verified in the background, is refused: the upstream is not
// ready from that verdict on, before any request meets the refusal. When
// the upstream later accepts it (a staging certificate whose issuance
// completed), the next re-verification makes it ready again and requests
// pass. (Both failed before: readiness followed the verdict only after a
// request's failover or the re-verification 5 s later, and once refused,
// the certificate in use stayed "stuck" after it was accepted.)
func TestReadinessFollowsTheOnlyCertificate(t *testing.T) {
	ps := newPKI(t)
	var refusing atomic.Bool
	refusing.Store(true)
	up := startStandin(t, ps, func(o *standin.Options) {
		o.DisableHTTP2 = true
		o.Refuse = func(*x509.Certificate) bool { return refusing.Load() }
	})
	only := newClientCert(t, ps.ca, "only")
	uc := upstreamConfig("live", hostA, up.Addr, ps, newCandidates(only))
	uc.Verify = true
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{uc}})
	u := e.proxy.Upstreams()[0]

	waitFor(t, "the certificate in use to be verified", func() bool { return statusOf(e, only).Result == upstream.VerifyRefused })
	err := u.Ready()
	if err == nil || !strings.Contains(err.Error(), serialOfLeaf(only)) {
		t.Fatalf("Ready() = %v right after the only certificate was refused, want an error naming serial %s", err, serialOfLeaf(only))
	}

	refusing.Store(false)
	poll.Until(t, "the re-verification to accept the certificate", 10*time.Second, func() bool { return u.Ready() == nil })
	if st := statusOf(e, only); st.Result != upstream.VerifyAccepted || !st.InUse {
		t.Errorf("status %+v once ready again, want accepted and in use", st)
	}
	if got := echoVia(t, e.forwardClient(t)).Client.Serial; got != serialOfLeaf(only) {
		t.Errorf("serial %s after acceptance, want %s", got, serialOfLeaf(only))
	}
}

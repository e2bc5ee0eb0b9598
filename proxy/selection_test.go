package proxy_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// candidates is a CertificateSource with several candidates a test can
// change, signalling each change as a store does.
type candidates struct {
	mu      sync.Mutex
	list    []*tls.Certificate
	changed chan struct{}
}

func newCandidates(ls ...*pki.Leaf) *candidates {
	c := &candidates{changed: make(chan struct{})}
	c.set(ls...)
	return c
}

// set makes ls the candidates, best first.
func (c *candidates) set(ls ...*pki.Leaf) {
	var list []*tls.Certificate
	for _, l := range ls {
		tc := l.TLS()
		list = append(list, &tc)
	}
	c.mu.Lock()
	c.list = list
	old := c.changed
	c.changed = make(chan struct{})
	c.mu.Unlock()
	close(old)
}

func (c *candidates) Certificate() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.list) == 0 {
		return nil
	}
	return c.list[0]
}

func (c *candidates) Candidates() []*tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tls.Certificate(nil), c.list...)
}

func (c *candidates) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// refusals is a revocation list for the stand-in's Refuse option.
type refusals struct {
	mu      sync.Mutex
	serials map[string]bool
}

func (r *refusals) revoke(l *pki.Leaf) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.serials == nil {
		r.serials = map[string]bool{}
	}
	r.serials[l.Cert.SerialNumber.String()] = true
}

func (r *refusals) refuse(c *x509.Certificate) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serials[c.SerialNumber.String()]
}

// verifyEnvWith is a proxy with verification on or off, in front of a
// stand-in that trusts ps.ca, refuses what rev lists, and speaks HTTP/2
// (Go's server) when h2, else HTTP/1.1 only.
func verifyEnvWith(t *testing.T, src *candidates, warm int, verify, h2 bool) (*env, *pkiSet, *standin.Server, *refusals) {
	t.Helper()
	ps := newPKI(t)
	rev := &refusals{}
	up := startStandin(t, ps, func(o *standin.Options) { o.DisableHTTP2 = !h2; o.Refuse = rev.refuse })
	uc := upstreamConfig("live", hostA, up.Addr, ps, src)
	uc.Verify, uc.WarmConnections = verify, warm
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{uc}})
	return e, ps, up, rev
}

func serialOfLeaf(l *pki.Leaf) string { return serialHex(l.Cert.SerialNumber.Bytes()) }

// statusOf returns what the proxy knows of l.
func statusOf(e *env, l *pki.Leaf) upstream.CertificateStatus {
	for _, st := range e.proxy.Upstreams()[0].CertificateStatuses() {
		if st.Serial == serialOfLeaf(l) {
			return st
		}
	}
	return upstream.CertificateStatus{}
}

// TestVerifyBeforeUse: a new certificate the upstream refuses never takes
// traffic (the one in use keeps serving and the verdict is visible); one
// it accepts replaces it, and the first request after the swap goes out
// on the verification's connection.
func TestVerifyBeforeUse(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) { testVerifyBeforeUse(t, h2) })
	}
}

func testVerifyBeforeUse(t *testing.T, h2 bool) {
	ps0 := newPKI(t) // only for a CA the stand-in does not trust
	src := &candidates{changed: make(chan struct{})}
	e, ps, _, _ := verifyEnvWith(t, src, 0, true, h2)
	first := newClientCert(t, ps.ca, "first")
	src.set(first)
	c := e.forwardClient(t)
	if got := echoVia(t, c).Client.Serial; got != serialOfLeaf(first) {
		t.Fatalf("serial %s, want %s", got, serialOfLeaf(first))
	}
	waitFor(t, "the certificate in use to be verified", func() bool { return statusOf(e, first).Result == upstream.VerifyAccepted })

	stranger := newClientCert(t, ps0.ca, "stranger")
	src.set(stranger, first)
	waitFor(t, "the stranger to be refused", func() bool { return statusOf(e, stranger).Result == upstream.VerifyRefused })
	st := statusOf(e, stranger)
	if st.Reason == "" || st.Next.IsZero() || st.InUse {
		t.Errorf("refused candidate's status %+v: want a reason, a next verification, not in use", st)
	}
	for range 5 {
		if got := echoVia(t, c).Client.Serial; got != serialOfLeaf(first) {
			t.Fatalf("a refused certificate took traffic: serial %s", got)
		}
	}
	if err := e.proxy.Upstreams()[0].Ready(); err != nil {
		t.Errorf("not ready while a refused candidate waits: %v", err)
	}

	next := newClientCert(t, ps.ca, "next")
	src.set(next, stranger, first)
	waitFor(t, "the accepted certificate to take over", func() bool { return statusOf(e, next).InUse })
	if got := echoVia(t, c).Client.Serial; got != serialOfLeaf(next) {
		t.Errorf("after the swap serial %s, want %s", got, serialOfLeaf(next))
	}
	lines := e.waitLogLines(t, "request", 7) // 1 + 5 + the one after the swap; a line is written after its response
	if last := lines[len(lines)-1].ContextMap(); last["upstream_conn"] != "reused" {
		t.Errorf("the first request after the swap paid a handshake (upstream_conn %v): the verification's connection was not kept", last["upstream_conn"])
	}
}

// TestFailoverReplaysRefused: when the upstream starts refusing the
// certificate in use (revoked) while another valid one is a candidate, the
// refused request is replayed on the other one, even a POST without a key
// (it never reached the API), and the upstream is never without a
// certificate it accepts.
func TestFailoverReplaysRefused(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		for _, verify := range []bool{true, false} {
			t.Run(fmt.Sprintf("h2=%v/verify=%v", h2, verify), func(t *testing.T) { testFailover(t, verify, h2) })
		}
	}
}

func testFailover(t *testing.T, verify, h2 bool) {
	src := &candidates{changed: make(chan struct{})}
	e, ps, up, rev := verifyEnvWith(t, src, 0, verify, h2)
	older := newClientCert(t, ps.ca, "older")
	inUse := newClientCert(t, ps.ca, "in-use")
	src.set(inUse, older)
	c := e.forwardClient(t)
	echoVia(t, c)
	if verify {
		waitFor(t, "verification", func() bool { return statusOf(e, inUse).Result == upstream.VerifyAccepted })
	}

	rev.revoke(inUse)
	e.proxy.Upstreams()[0].CloseIdleConnections() // the revocation applies to new connections
	before := up.Requests()
	req, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/payments", strings.NewReader(`{"amount":1}`))
	resp, body := do(t, c, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST after revocation: %d %s", resp.StatusCode, body)
	}
	if got := decodeEcho(t, body); got.Client.Serial != serialOfLeaf(older) || got.BodyBytes != 12 {
		t.Errorf("replayed on serial %s with %d body bytes, want %s and 12", got.Client.Serial, got.BodyBytes, serialOfLeaf(older))
	}
	if got := resp.Header.Get(upstream.HeaderAttempts); got != "2" {
		t.Errorf("%s = %q, want 2", upstream.HeaderAttempts, got)
	}
	if n := up.Requests() - before; n > 2 { // the replay, and at most the failover's verification
		t.Errorf("%d requests reached the upstream for one POST", n)
	}
	if st := statusOf(e, inUse); st.Result != upstream.VerifyRefused {
		t.Errorf("the revoked certificate's status %+v, want refused", st)
	}
	if !verify {
		return // without verification nothing tells the proxy that no other is accepted
	}

	rev.revoke(older) // now nothing is accepted
	e.proxy.Upstreams()[0].CloseIdleConnections()
	resp, body = get(t, c, "http://"+hostA+"/v1/x")
	wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindCertificateRefused)
	if err := e.proxy.Upstreams()[0].Ready(); err == nil || !strings.Contains(err.Error(), "refuses") {
		t.Errorf("Ready() = %v, want the refusal", err)
	}
}

// TestEdgeRefusalPage: an edge that ends TLS and refuses the certificate
// with an HTML page gets 502 client_certificate_refused naming the page's
// title; a JSON 400 of the API passes untouched.
func TestEdgeRefusalPage(t *testing.T) {
	const page = "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>nginx</body></html>\r\n"
	e, _ := scriptedEnv(t, proxy.ClientLimits{}, func(_ int32, c *tls.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if strings.HasPrefix(req.URL.Path, "/json") {
				io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
				continue
			}
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: "+
				strconv.Itoa(len(page))+"\r\n\r\n"+page)
		}
	})
	c := e.forwardClient(t)
	resp, body := get(t, c, "http://"+hostA+"/v1/x")
	detail := wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindCertificateRefused)
	if !strings.Contains(detail, "No required SSL certificate was sent") || !strings.Contains(detail, "serial") {
		t.Errorf("detail %q does not name the page's title and the serial", detail)
	}
	resp, body = get(t, c, "http://"+hostA+"/json")
	if resp.StatusCode != http.StatusBadRequest || string(body) != "{}" || resp.Header.Get(failure.HeaderError) != "" {
		t.Errorf("the API's JSON 400 was reinterpreted: %d %s %q", resp.StatusCode, resp.Header.Get(failure.HeaderError), body)
	}
}

// TestWarmConnectionsLearnIdleTimeout: with a server that closes
// connections idle after a request for 600 ms, every request after an idle
// period longer than that goes out on a connection that was open before it
// (warm), and the proxy learns the server's keep-alive timeout from its
// closes.
func TestWarmConnectionsLearnIdleTimeout(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, func(o *standin.Options) { o.DisableHTTP2 = true; o.IdleTimeout = 600 * time.Millisecond })
	src := newCandidates(ps.client)
	uc := upstreamConfig("live", hostA, up.Addr, ps, src)
	uc.Verify, uc.WarmConnections = true, 1
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{uc}})
	c := e.forwardClient(t)
	for i := range 5 {
		pause := time.Now().Add(900 * time.Millisecond) // idle longer than the server's timeout
		for time.Now().Before(pause) {
			time.Sleep(50 * time.Millisecond) // pacing the client, not synchronising
		}
		resp, body := get(t, c, "http://"+hostA+"/v1/x")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d after idle: %d %s", i, resp.StatusCode, body)
		}
		lines := e.waitLogLines(t, "request", i+1) // a line is written after its response
		if got := lines[i].ContextMap()["upstream_conn"]; got != "reused" {
			t.Errorf("request %d after 900ms idle paid a handshake (upstream_conn %v)", i, got)
		}
	}
	learnt := e.logs.FilterMessage("learnt how long the upstream keeps an idle connection open; idle connections are retired before it").All()
	if len(learnt) == 0 {
		t.Fatal("the proxy did not learn the server's keep-alive timeout from its closes")
	}
	f := learnt[0].ContextMap()
	got, _ := time.ParseDuration(fmt.Sprint(f["server_idle_timeout"]))
	if f["waiting_for"] != "the next request (keep-alive)" || got < 600*time.Millisecond || got > 800*time.Millisecond {
		t.Errorf("learnt %v waiting for %v, want about 600ms for the next request", f["server_idle_timeout"], f["waiting_for"])
	}
}

package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"go.uber.org/zap"
)

// Issue 16's tests (DESIGN.md § Verification, failover and warm
// connections), against nginx with ssl_verify_client on (edge_test.go).
// Each logs what it measured.

// verificationUA is the User-Agent of the proxy's verification requests,
// which tells them apart from the clients' in nginx's access log.
const verificationUA = "payrails-mtls-proxy (certificate verification)"

// TestNginxRotationUnderLoad: clients send requests continuously while
//
//	a. a certificate of a CA nginx does not trust, with a later NotBefore,
//	   is dropped: no request fails, the old certificate stays in use (no
//	   client request ever reaches nginx with the new one), and the
//	   verdict shows in /certs and the metrics;
//	b. a certificate nginx trusts is dropped: the proxy swaps within the
//	   debounce plus one verification;
//	c. nginx revokes the certificate in use (ssl_crl, reload) while the
//	   first one is still in the folder: no request fails, the refused
//	   ones are replayed on the other certificate (2 attempts), which is in
//	   use within a second; one failover.
//
// Over HTTP/1.1 and, as API edges commonly offer, HTTP/2 (issue 22).
func TestNginxRotationUnderLoad(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) { testNginxRotationUnderLoad(t, h2) })
	}
}

func testNginxRotationUnderLoad(t *testing.T, h2 bool) {
	e := newEdgeProto(t, "", h2)
	stranger, err := pki.NewCA("a CA nginx does not trust")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first := clientLeaf(t, e.ca, "first", now.Add(-3*time.Hour))
	untrusted := clientLeaf(t, stranger, "untrusted", now.Add(-2*time.Hour))
	second := clientLeaf(t, e.ca, "second", now.Add(-time.Hour))
	e.drop(t, first, "first")
	r := startApp(t, e.configFile(t, "", ""))

	const workers = 6
	clients := r.clients(t, workers)
	ld := startLoad(t, workers, 200000, time.Minute, func(w, n int) edgeSample {
		return edgeGet(clients[w], fmt.Sprintf("/v1/load/%d/%d", w, n))
	})
	ld.waitServed(200)

	// a. A certificate nginx refuses.
	dropA := time.Now()
	e.drop(t, untrusted, "untrusted")
	poll.Until(t, "the proxy to verify the untrusted certificate", 10*time.Second, func() bool {
		return status(r, untrusted).Result == upstream.VerifyRefused
	})
	refusedAt := time.Now()
	ld.waitServed(400)
	rep := certsReport(t, r)
	v := candidate(t, rep, untrusted).Verification
	if v == nil || v.Result != "refused" || !strings.Contains(v.Reason, "The SSL certificate error") || v.Next.IsZero() {
		t.Errorf("/certs verification of the untrusted certificate: %+v, want refused with nginx's page title and a next time", v)
	}
	if d := candidate(t, rep, untrusted); d.InUse {
		t.Errorf("/certs marks the refused certificate in use")
	}
	if d := candidate(t, rep, first); !d.InUse || rep.InUse == nil || rep.InUse.Serial != serialOf(first) {
		t.Errorf("/certs: in_use %+v, want the first certificate (%s) after a refusal", rep.InUse, serialOf(first))
	}
	if got := metric(t, r, "payrails_proxy_certificate_verifications_total", withLabel("result", "refused")); got < 1 {
		t.Errorf("verifications_total{result=refused} = %v, want at least 1", got)
	}
	refusals := r.logs.FilterMessage("the upstream refuses the client certificate; it takes no traffic").All()
	if len(refusals) != 1 || refusals[0].ContextMap()["serial"] != serialOf(untrusted) ||
		refusals[0].ContextMap()["fingerprint"] == "" || !strings.Contains(fmt.Sprint(refusals[0].ContextMap()["advice"]), "CSR") {
		t.Errorf("refusal log lines %v, want one naming serial %s, its fingerprint and advice", refusals, serialOf(untrusted))
	}

	// b. A certificate nginx trusts.
	dropB := time.Now()
	e.drop(t, second, "second")
	poll.Until(t, "the proxy to present the second certificate", 10*time.Second, func() bool {
		return status(r, second).InUse
	})
	ld.waitServed(400)

	// c. nginx revokes the certificate in use.
	crl := filepath.Join(e.dir, "edge-ca.crl")
	writeCRL(t, crl, e.ca, second)
	revoke := time.Now()
	e.reconfigure(t, "ssl_crl "+crl+";")
	reloaded := time.Now()
	poll.Until(t, "the proxy to fail over to the first certificate", 10*time.Second, func() bool {
		return status(r, first).InUse
	})
	ld.waitServed(400)
	samples := ld.stop()

	if failed := countFailed(t, samples); failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, len(samples))
	}
	checkRefusedUnused(t, e, samples, untrusted, first, dropA, dropB)
	checkProtocol(t, e, h2)
	swapB := checkSwap(t, samples, second, dropB, revoke)
	if limit := edgeDebounce + time.Second; swapB > limit {
		t.Errorf("the trusted certificate was first used %s after its drop, want within the debounce (%s) plus one "+
			"verification (on loopback a few milliseconds; %s allowed)", ms(swapB), edgeDebounce, ms(limit))
	}
	verifiedB := verificationAt(t, e, second)
	swapC, replays := checkFailover(t, r, e, samples, first, second, revoke)
	if swapC > time.Second {
		t.Errorf("the other certificate was in use %s after nginx's reload began, want within a second", ms(swapC))
	}
	t.Logf("%d requests by %d clients, 0 failed", len(samples), workers)
	t.Logf("a. untrusted certificate dropped: refused by nginx %s after the drop (%q), never used by a request",
		ms(refusedAt.Sub(dropA)), v.Reason)
	t.Logf("b. trusted certificate dropped: verified by nginx %s after the drop, first request with it answered %s after the drop",
		ms(verifiedB.Sub(dropB)), ms(swapB))
	t.Logf("c. revoked by an nginx reload (SIGHUP to worker gone: %s): %d requests refused and replayed with the other "+
		"certificate; the other certificate answered %s after the reload began, and every request begun later used it",
		ms(reloaded.Sub(revoke)), replays, ms(swapC))
}

// checkProtocol checks that nginx read every request in HTTP/2 when h2,
// else in HTTP/1.1.
func checkProtocol(t *testing.T, e *edge, h2 bool) {
	t.Helper()
	want := "HTTP/1.1"
	if h2 {
		want = "HTTP/2.0"
	}
	for _, l := range e.ng.accessLog(t) {
		if l.URI == "/worker" {
			continue // the plain-HTTP status server's
		}
		if l.Protocol != want {
			t.Errorf("nginx read %s %s in %s, want %s", l.Method, l.URI, l.Protocol, want)
			return
		}
	}
}

// checkRefusedUnused checks phase a from both sides: every request answered
// before the trusted drop presented the first certificate, and nginx saw
// the untrusted one only in the proxy's verification requests, which it
// refused.
func checkRefusedUnused(t *testing.T, e *edge, samples []edgeSample, untrusted, first *pki.Leaf, dropA, dropB time.Time) {
	t.Helper()
	during := 0
	for _, s := range samples {
		if s.end.Before(dropB) && !sameSerial(s.answer.Serial, first) {
			t.Errorf("request %s before the trusted drop presented serial %s, want the first certificate's %s",
				s, s.answer.Serial, serialOf(first))
		}
		if s.start.After(dropA) && s.end.Before(dropB) {
			during++
		}
	}
	if during < 100 {
		t.Errorf("only %d requests ran while the untrusted certificate was in the folder", during)
	}
	verifications := 0
	for _, l := range e.ng.accessLog(t) {
		if !sameSerial(l.Serial, untrusted) {
			continue
		}
		if l.UserAgent != verificationUA || l.Status != "400" || !strings.HasPrefix(l.Verify, "FAILED") {
			t.Errorf("nginx saw the untrusted certificate on a request that is not a refused verification: %+v", l)
		}
		verifications++
	}
	if verifications == 0 {
		t.Errorf("nginx's access log has no verification request with the untrusted certificate")
	}
}

// checkSwap returns how long after the change at from the first request
// begun since then presenting l was answered, and checks that every
// request begun after that (and answered before until) presented l too.
func checkSwap(t *testing.T, samples []edgeSample, l *pki.Leaf, from, until time.Time) time.Duration {
	t.Helper()
	var firstSeen time.Time
	for _, s := range samples {
		if s.start.After(from) && sameSerial(s.answer.Serial, l) && (firstSeen.IsZero() || s.end.Before(firstSeen)) {
			firstSeen = s.end
		}
	}
	if firstSeen.IsZero() {
		t.Fatalf("no request presented serial %s", serialOf(l))
	}
	for _, s := range samples {
		if s.start.After(firstSeen) && s.end.Before(until) && !sameSerial(s.answer.Serial, l) {
			t.Errorf("request %s, begun after serial %s was first used, presented %s", s, serialOf(l), s.answer.Serial)
			break
		}
	}
	return firstSeen.Sub(from)
}

// verificationAt is when nginx answered the proxy's first verification
// request with l's certificate.
func verificationAt(t *testing.T, e *edge, l *pki.Leaf) time.Time {
	t.Helper()
	for _, line := range e.ng.accessLog(t) {
		if sameSerial(line.Serial, l) && line.UserAgent == verificationUA {
			return line.at()
		}
	}
	t.Fatalf("nginx's access log has no verification request with serial %s", serialOf(l))
	return time.Time{}
}

// checkFailover checks phase c: the requests nginx refused with the revoked
// certificate were each replayed once with the other one, nginx saw
// exactly those refusals, there was one failover, and every request begun
// a second after the reload began used the other certificate. It returns
// how long after the reload began the other certificate first answered,
// and the number of replays.
func checkFailover(t *testing.T, r *running, e *edge, samples []edgeSample, other, revoked *pki.Leaf, reload time.Time) (time.Duration, int) {
	t.Helper()
	swap := checkSwap(t, samples, other, reload, time.Now().Add(time.Hour))
	extra, multi, replayed := 0, 0, 0
	for _, s := range samples {
		extra += s.attempts - 1
		if s.attempts > 1 {
			multi++
			if s.start.After(reload) && s.attempts == 2 && sameSerial(s.answer.Serial, other) {
				replayed++
			}
		}
		if s.start.After(reload.Add(time.Second)) && !sameSerial(s.answer.Serial, other) {
			t.Errorf("request %s, begun a second after the revocation, presented %s", s, s.answer.Serial)
		}
	}
	mfs := scrape(t, r.admin)
	replays := total(mfs, "payrails_proxy_upstream_retries_total", withLabel("reason", "certificate_refused"))
	retries := total(mfs, "payrails_proxy_upstream_retries_total", live)
	if replays < 1 || float64(replayed) < replays {
		t.Errorf("%v replays counted (retries_total{reason=certificate_refused}), %d answers after the revocation with "+
			"%s: 2 and the other certificate's serial; want at least one, and one such answer per replay", replays, replayed, upstream.HeaderAttempts)
	}
	if float64(extra) != retries {
		t.Errorf("the answers' %s add up to %d sends beyond the first, the retry metric to %v", upstream.HeaderAttempts, extra, retries)
	}
	if retries != replays {
		var others []string
		for _, reason := range []string{"connect", "tls", "connection_lost", "payrails_retryable", "edge_error"} {
			if n := total(mfs, "payrails_proxy_upstream_retries_total", withLabel("reason", reason)); n > 0 {
				others = append(others, fmt.Sprintf("%s %v", reason, n))
			}
		}
		t.Logf("besides the %v replays, retries for other reasons: %s (%d answers with more than one attempt)",
			replays, strings.Join(others, ", "), multi)
	}
	if got := total(mfs, "payrails_proxy_certificate_failovers_total", live); got != 1 {
		t.Errorf("certificate_failovers_total = %v, want 1", got)
	}
	refusedByNginx := 0
	for _, l := range e.ng.accessLog(t) {
		if sameSerial(l.Serial, revoked) && l.UserAgent != verificationUA && l.Status == "400" {
			if !strings.Contains(l.Verify, "revoked") {
				t.Errorf("nginx refused the revoked certificate with %q", l.Verify)
			}
			refusedByNginx++
		}
	}
	if float64(refusedByNginx) != replays {
		t.Errorf("nginx refused %d client requests with the revoked certificate, the proxy replayed %v", refusedByNginx, replays)
	}
	return swap, int(replays)
}

// TestNginxDelayedAcceptance: a certificate nginx does not trust yet (a
// staging certificate whose issuance has not completed) is refused and
// the proxy keeps the one in use; 10 s after the drop nginx starts trusting
// its CA, and the proxy swaps at its next scheduled re-verification
// (5 s after the refusal, then 10 s: the one at about 15 s).
func TestNginxDelayedAcceptance(t *testing.T) {
	e := newEdge(t, "")
	later, err := pki.NewCA("a CA nginx trusts later")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	current := clientLeaf(t, e.ca, "current", now.Add(-2*time.Hour))
	next := clientLeaf(t, later, "next", now.Add(-time.Hour))
	e.drop(t, current, "current")
	r := startApp(t, e.configFile(t, "", ""))
	c := r.client(t)
	var samples []edgeSample
	send := func() edgeSample {
		s := edgeGet(c, fmt.Sprintf("/v1/delayed/%d", len(samples)))
		samples = append(samples, s)
		return s
	}

	drop := time.Now()
	e.drop(t, next, "next")
	poll.Until(t, "the proxy to verify the new certificate", 10*time.Second, func() bool {
		send()
		return status(r, next).Result == upstream.VerifyRefused
	})
	refused := time.Now()
	poll.Until(t, "10 s after the drop", 12*time.Second, func() bool {
		send()
		return time.Since(drop) >= 10*time.Second
	})
	e.trust(t, e.ca, later)
	trusted := time.Now()
	st := status(r, next)
	if st.Result != upstream.VerifyRefused || !st.Next.After(trusted) {
		t.Fatalf("when nginx began trusting the new CA (%s after the drop) the new certificate was %s, next verified %s "+
			"after the drop: the test needs it refused and not yet asked again", ms(trusted.Sub(drop)), st.Result, ms(st.Next.Sub(drop)))
	}
	scheduled := st.Next
	poll.Until(t, "the proxy to swap to the new certificate", 20*time.Second, func() bool {
		return sameSerial(send().answer.Serial, next)
	})

	if failed := countFailed(t, samples); failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, len(samples))
	}
	swap := samples[len(samples)-1].end
	for _, s := range samples[:len(samples)-1] {
		if !sameSerial(s.answer.Serial, current) {
			t.Errorf("request %s before the swap presented %s, want %s", s, s.answer.Serial, serialOf(current))
		}
	}
	if swap.Before(scheduled) || swap.After(scheduled.Add(time.Second)) {
		t.Errorf("swapped %s after the drop; the re-verification was scheduled for %s after it: want the swap within "+
			"a second after that", ms(swap.Sub(drop)), ms(scheduled.Sub(drop)))
	}
	var asked []string
	for _, l := range e.ng.accessLog(t) {
		if sameSerial(l.Serial, next) && l.UserAgent == verificationUA {
			asked = append(asked, fmt.Sprintf("%s at %s", l.Status, ms(l.at().Sub(drop))))
		}
	}
	mfs := scrape(t, r.admin)
	for res, want := range map[string]float64{"refused": 2, "accepted": 2} { // accepted: the first certificate at start, then the new one
		if got := total(mfs, "payrails_proxy_certificate_verifications_total", withLabel("result", res)); got != want {
			t.Errorf("verifications_total{result=%s} = %v, want %v", res, got, want)
		}
	}
	t.Logf("%d requests, 0 failed; new certificate dropped at 0, refused by %s; nginx trusts its CA from %s; "+
		"re-verification scheduled for %s; first request with it answered at %s; nginx's answers to the verification "+
		"requests (HEAD, then GET for the page title): %v", len(samples), ms(refused.Sub(drop)), ms(trusted.Sub(drop)),
		ms(scheduled.Sub(drop)), ms(swap.Sub(drop)), asked)
}

// TestNginxRefusedSingleCertificate: the only certificate is one nginx
// refuses with its 400 page. The client gets 502 client_certificate_refused
// naming the serial and the page's title, never nginx's HTML; readiness is
// false with the reason as soon as the verification has answered, before
// any request. When nginx starts trusting the certificate's CA (the
// staging certificate whose issuance completed), the next re-verification
// makes the upstream ready again and requests pass, on connections made
// since (nginx keeps its verdict with each connection and TLS session).
func TestNginxRefusedSingleCertificate(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) { testNginxRefusedSingleCertificate(t, h2) })
	}
}

func testNginxRefusedSingleCertificate(t *testing.T, h2 bool) {
	e := newEdgeProto(t, "", h2)
	stranger, err := pki.NewCA("a CA nginx does not trust yet")
	if err != nil {
		t.Fatal(err)
	}
	only := clientLeaf(t, stranger, "only", time.Now().Add(-time.Hour))
	e.drop(t, only, "domain")
	r := startApp(t, e.configFile(t, "", "")) // returns once the certificate in use was verified
	verified := time.Now()
	const title = "The SSL certificate error"

	ready := func() (int, string) {
		t.Helper()
		code, body := adminGet(t, r.admin, "/readyz")
		return code, string(body)
	}
	checkNotReady := func(when string) {
		t.Helper()
		if code, body := ready(); code != http.StatusServiceUnavailable || !strings.Contains(body, serialOf(only)) ||
			!strings.Contains(body, title) {
			t.Errorf("/readyz %s: %d %s, want 503 naming serial %s and %q", when, code, body, serialOf(only), title)
		}
	}
	checkNotReady("after the verification, before any request")

	c := r.client(t)
	resp, err := c.Get("http://" + apiHost + "/v1/payments")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Errors []struct{ Code, Detail string } `json:"errors"`
	}
	decodeErr := jsonDecode(resp, &body)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(failure.HeaderError) != "client_certificate_refused" ||
		decodeErr != nil || len(body.Errors) != 1 || body.Errors[0].Code != "proxy.client_certificate_refused" {
		t.Fatalf("got %d %s=%q, body %+v (%v); want 502 client_certificate_refused in Payrails' error shape",
			resp.StatusCode, failure.HeaderError, resp.Header.Get(failure.HeaderError), body, decodeErr)
	}
	if d := body.Errors[0].Detail; !strings.Contains(d, serialOf(only)) || !strings.Contains(d, title) {
		t.Errorf("detail %q, want the serial %s and nginx's page title %q", d, serialOf(only), title)
	}
	checkNotReady("after a refused request")
	v := candidate(t, certsReport(t, r), only).Verification
	if v == nil || v.Result != "refused" || v.Next.IsZero() {
		t.Fatalf("/certs verification %+v, want refused with a next time", v)
	}
	t.Logf("502 %s: %s", resp.Header.Get(failure.HeaderError), body.Errors[0].Detail)

	e.trust(t, e.ca, stranger)
	trusted := time.Now()
	poll.Until(t, "the upstream to be ready again", 15*time.Second, func() bool {
		code, _ := ready()
		return code == http.StatusOK
	})
	readyAt := time.Now()
	s := edgeGet(c, "/v1/after-acceptance")
	if s.err != nil || !sameSerial(s.answer.Serial, only) {
		t.Fatalf("after nginx accepted the certificate: %v, serial %q; want 200 with %s", s.err, s.answer.Serial, serialOf(only))
	}
	if readyAt.Before(v.Next) {
		t.Errorf("ready again %s after the start, before the re-verification scheduled for %s", ms(readyAt.Sub(verified)),
			ms(v.Next.Sub(verified)))
	}
	t.Logf("nginx trusts the CA %s after the first verification; re-verification scheduled for %s; ready again at %s, "+
		"then a request passed (attempts %d)", ms(trusted.Sub(verified)), ms(v.Next.Sub(verified)), ms(readyAt.Sub(verified)), s.attempts)
}

// TestNginxWarmConnections: nginx closes idle connections after 1 s, those
// that carried a request (keepalive_timeout 1s) and those waiting for
// their first (client_header_timeout 1s, which a warm connection is
// subject to). After 3 s without a request, the next one goes
// out on a connection that already existed, and so does the first request
// after a rotation (on the verification's connection). Three views agree:
// the proxy's request line (upstream_conn), its handshake counter (which
// only the warm tending moves while nothing is sent), and nginx (the
// connection's age and request count).
func TestNginxWarmConnections(t *testing.T) {
	e := newEdge(t, "keepalive_timeout 1s;\n    client_header_timeout 1s;")
	now := time.Now()
	a := clientLeaf(t, e.ca, "a", now.Add(-2*time.Hour))
	b := clientLeaf(t, e.ca, "b", now.Add(-time.Hour))
	e.drop(t, a, "a")
	r := startApp(t, e.configFile(t, "warm_connections: 1", ""))
	c := r.client(t)
	handshakes := func() float64 { return metric(t, r, "payrails_proxy_upstream_tls_handshakes_total", live) }

	if s := edgeGet(c, "/v1/warm/first"); s.err != nil {
		t.Fatal(s.err)
	}
	idleFrom, atIdle := time.Now(), handshakes()
	// Idle for 3 s, then wait for the warm tending to replace its
	// connection (seen as a handshake) and send 200 ms after that: the next
	// replacement is due hundreds of milliseconds later, so a handshake
	// counted across the request is the request's. A proxy that keeps no
	// warm connection makes no handshake: it is given 8 s.
	last, lastAt := atIdle, time.Time{}
	poll.Until(t, "3 s idle and a warm replacement", 10*time.Second, func() bool {
		if h := handshakes(); h != last {
			last, lastAt = h, time.Now()
		}
		idle := time.Since(idleFrom)
		return (idle >= 3*time.Second && !lastAt.IsZero() && time.Since(lastAt) >= 200*time.Millisecond &&
			time.Since(lastAt) < 300*time.Millisecond) || idle >= 8*time.Second
	})
	warm := metric(t, r, "payrails_proxy_upstream_warm_connections", live)
	before := handshakes()
	whileIdle := before - atIdle // no request was sent: all the warm tending's
	s := edgeGet(c, "/v1/warm/after-idle")
	after := handshakes()
	idle := s.start.Sub(idleFrom)
	if s.err != nil {
		t.Fatal(s.err)
	}
	conn := requestLine(t, r, s.path)["upstream_conn"]
	if conn != "reused" {
		t.Errorf("after %s idle: upstream_conn %v, want reused", ms(idle), conn)
	}
	idleDelta := after - before
	if idleDelta != 0 {
		t.Errorf("after %s idle: the request raised tls_handshakes_total from %v to %v", ms(idle), before, after)
	}
	age, _ := strconv.ParseFloat(s.answer.ConnectionTime, 64)
	took := s.end.Sub(s.start)
	if time.Duration(age*float64(time.Second)) <= took || s.answer.ConnectionRequests != "1" {
		t.Errorf("after %s idle: nginx says the connection was %ss old and carried %s requests; the request took %s: "+
			"want a connection older than the request, never used before", ms(idle), s.answer.ConnectionTime,
			s.answer.ConnectionRequests, ms(took))
	}
	if warm != 1 {
		t.Errorf("upstream_warm_connections = %v after %s idle, want 1", warm, ms(idle))
	}
	learnt := r.logs.FilterMessage("learnt how long the upstream keeps an idle connection open; idle connections are retired before it").
		FilterField(zap.String("waiting_for", "a new connection's first request")).All()
	if len(learnt) == 0 {
		t.Errorf("the proxy logged no idle timeout learnt from nginx's closes of warm connections")
	}

	// A rotation: the first request goes out on the verification's connection.
	e.drop(t, b, "b")
	poll.Until(t, "the proxy to present b", 10*time.Second, func() bool { return status(r, b).InUse })
	before = handshakes()
	s2 := edgeGet(c, "/v1/warm/after-rotation")
	after = handshakes()
	if s2.err != nil {
		t.Fatal(s2.err)
	}
	if !sameSerial(s2.answer.Serial, b) {
		t.Errorf("after the rotation: serial %s, want b's %s", s2.answer.Serial, serialOf(b))
	}
	conn2 := requestLine(t, r, s2.path)["upstream_conn"]
	if conn2 != "reused" {
		t.Errorf("after the rotation: upstream_conn %v, want reused", conn2)
	}
	if after != before {
		t.Errorf("after the rotation: the request raised tls_handshakes_total from %v to %v", before, after)
	}
	if s2.answer.ConnectionRequests != "2" {
		t.Errorf("after the rotation: nginx counts %s requests on the connection, want 2 (the verification's HEAD, then this one)",
			s2.answer.ConnectionRequests)
	}
	t.Logf("after %s idle (nginx: keepalive_timeout and client_header_timeout 1s): upstream_conn %v, on a connection "+
		"nginx had open for %ss and that carried %s requests, this one included; the request took %s; the warm tending "+
		"made %v handshakes while idle, the request %v; the proxy learnt nginx's timeout for a new connection as %v",
		ms(idle), conn, s.answer.ConnectionTime, s.answer.ConnectionRequests, ms(took), whileIdle, idleDelta, learntTimeout(learnt))
	t.Logf("first request after the rotation: upstream_conn %v, request %s on its connection (the verification's HEAD "+
		"is the first), handshakes %v -> %v", conn2, s2.answer.ConnectionRequests, before, after)
}

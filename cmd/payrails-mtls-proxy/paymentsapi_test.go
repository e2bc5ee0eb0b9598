package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// nginx as the payments API of the retry tests (issue 17): it answers every
// request 200 and counts what arrives.
//
// What "processed" means here: nginx logs a request's arrival in its
// auth_request subrequest (log_subrequest on), which runs to its end,
// log line written, before the request's answer is begun. A request is
// processed when its arrival is logged, as an API that commits a payment
// before it answers. A request nginx was killed in the middle of, before
// that line, was not processed (its answer cannot have begun either); one
// killed after it was processed though its client may see it fail. The
// answer is logged again after it was sent (answers.log), for the figures.
const (
	paymentsHTTP = `
  log_format arrivals '$request_method $request_uri $http_x_idempotency_key';
  log_format answers '$status $request_method $request_uri $http_x_idempotency_key';`
	paymentsLocations = `
    location = /arrive {
      internal;
      log_subrequest on;
      access_log {{logs}}/arrivals.log arrivals;
      return 204;
    }
    location / {
      auth_request /arrive;
      try_files /nothing-here @answer;
    }
    location @answer {
      access_log {{logs}}/answers.log answers;
      default_type application/json;
      return 200 '{"ok":true}';
    }`
)

// paymentsNginx starts nginx as the payments API, with further directives
// for its server block.
func paymentsNginx(t testing.TB, p *tokenPKI, server string) *nginxServer {
	t.Helper()
	return startNginxWith(t, nginxOptions{serverCert: p.serverCert, serverKey: p.serverKey, clientCA: p.caFile,
		http: paymentsHTTP, server: server, locations: paymentsLocations})
}

// nginxLog counts the lines of one of paymentsNginx's logs by what
// identifies a request: its idempotency key when it has one, else its
// path (each un-keyed request of these tests has a path of its own).
func nginxLog(t testing.TB, n *nginxServer, name string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(n.dir, "logs", name))
	if os.IsNotExist(err) {
		return map[string]int{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			t.Fatalf("%s: line %q", name, sc.Text())
		}
		path, key := fields[len(fields)-2], fields[len(fields)-1]
		if key != "-" {
			counts[key]++
		} else {
			counts[path]++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// paymentsApp runs the proxy in front of the payments API at addr, with
// the client certificate of p and extra YAML for the upstream.
func paymentsApp(t testing.TB, p *tokenPKI, addr, upstreamExtra string) *running {
	t.Helper()
	certDir := t.TempDir()
	for _, f := range []string{p.clientCert, p.clientKey} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(certDir, filepath.Base(f)), data, 0o600)
	}
	y := fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nlog: {level: info}\nupstreams:\n"+
		"  - {name: live, url: \"https://%s\", address: \"%s\", cert_dir: \"%s\", ca_file: \"%s\"%s}\n",
		apiHost, addr, certDir, p.caFile, upstreamExtra)
	path := filepath.Join(t.TempDir(), "config.yaml")
	mustWrite(t, path, []byte(y), 0o600)
	return startApp(t, path)
}

// Kinds of requests the retry tests send.
const (
	keyedPayment   = "keyed POST"
	unkeyedPayment = "un-keyed POST"
	plainGet       = "GET"
)

// sentRequest is one request of a retry test as its client saw it.
type sentRequest struct {
	kind     string
	id       string // what nginxLog counts it by: its key, or its unique path
	status   int
	proxyErr string // X-Payrails-Proxy-Error, when the proxy made the answer
	detail   string // the proxy's JSON detail
	attempts int    // X-Payrails-Proxy-Attempts; 1 when absent
	err      error  // a transport error the client saw, or the body breaking off
	at       time.Time
}

func (s sentRequest) ok() bool { return s.err == nil && s.status == http.StatusOK }

// reason is why s failed, for the figures: the client's error, or the
// status and kind and the proxy's "not retried: ..." text.
func (s sentRequest) reason() string {
	if s.err != nil {
		return "client error: " + s.err.Error()
	}
	r := fmt.Sprintf("%d %s", s.status, s.proxyErr)
	if i := strings.Index(s.detail, "not retried: "); i >= 0 {
		return r + ": " + s.detail[i:]
	}
	return r + ": " + s.detail
}

// sendPayment sends one request of kind through c, identified by id (the
// key of a keyed payment, the path's last element otherwise).
func sendPayment(c *http.Client, kind, id string) sentRequest {
	s := sentRequest{kind: kind, id: id, attempts: 1, at: time.Now()}
	method, path, body := http.MethodPost, "/v1/payments", `{"amount":100,"currency":"EUR"}`
	switch kind {
	case unkeyedPayment:
		path += "/" + id
		s.id = path
	case plainGet:
		method, path, body = http.MethodGet, "/v1/payments/"+id, ""
		s.id = path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://"+apiHost+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if kind == keyedPayment {
		// Not the canonical spelling: Go's client treats a request with
		// X-Idempotency-Key as replayable and would itself resend it when
		// the proxy cuts a response. The tests are about what the proxy
		// sends, so the client must not retry.
		req.Header["x-idempotency-key"] = []string{id}
	}
	resp, err := c.Do(req)
	if err != nil {
		s.err = err
		return s
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	s.status, s.err, s.proxyErr = resp.StatusCode, err, resp.Header.Get(failure.HeaderError)
	if n, err := strconv.Atoi(resp.Header.Get(upstream.HeaderAttempts)); err == nil {
		s.attempts = n
	}
	if s.proxyErr != "" {
		var eb struct{ Errors []struct{ Detail string } }
		if json.Unmarshal(b, &eb) == nil && len(eb.Errors) > 0 {
			s.detail = eb.Errors[0].Detail
		}
	}
	return s
}

// retryFigures are what a retry test measured, per kind of request.
type retryFigures struct {
	sent, succeeded, retried int
	failed                   map[string]int // by reason
	doubled                  int            // un-keyed, arrived twice or more: what the proxy must never do
	arrivedAgain             int            // keyed (the same key: Payrails deduplicates) or a GET, arrived more than once
	failedButArrived         int            // failed for the client, processed by the API
}

// tally checks every outcome against the arrivals and counts the figures
// by kind. Each success must have arrived; an un-keyed POST must never
// have arrived twice.
func tally(t *testing.T, outcomes []sentRequest, arrivals map[string]int) map[string]*retryFigures {
	t.Helper()
	figs := map[string]*retryFigures{}
	for _, o := range outcomes {
		f := figs[o.kind]
		if f == nil {
			f = &retryFigures{failed: map[string]int{}}
			figs[o.kind] = f
		}
		f.sent++
		n := arrivals[o.id]
		if o.attempts > 1 {
			f.retried++
		}
		switch {
		case o.ok():
			f.succeeded++
			if n == 0 {
				t.Errorf("%s %s succeeded but never reached nginx", o.kind, o.id)
			}
		default:
			f.failed[o.reason()]++
			if n > 0 {
				f.failedButArrived++
			}
		}
		switch {
		case n > 1 && o.kind == unkeyedPayment:
			f.doubled++
			t.Errorf("un-keyed payment %s reached nginx %d times: a payment doubled", o.id, n)
		case n > 1:
			f.arrivedAgain++
		}
	}
	return figs
}

// logFigures writes the figures, one line per kind and one per reason of
// failure.
func logFigures(t *testing.T, figs map[string]*retryFigures) {
	t.Helper()
	for _, kind := range []string{keyedPayment, unkeyedPayment, plainGet} {
		f := figs[kind]
		if f == nil {
			continue
		}
		failed := 0
		reasons := make([]string, 0, len(f.failed))
		for r, n := range f.failed {
			failed += n
			reasons = append(reasons, fmt.Sprintf("%d × %s", n, r))
		}
		sort.Strings(reasons)
		t.Logf("%s: %d sent, %d succeeded, %d retried (answers with %s), %d failed (%d of them processed by nginx), "+
			"%d doubled, %d arrived more than once safely (the same key, or a GET)", kind, f.sent, f.succeeded, f.retried,
			upstream.HeaderAttempts, failed, f.failedButArrived, f.doubled, f.arrivedAgain)
		for _, r := range reasons {
			t.Logf("  %s failed: %s", kind, r)
		}
	}
}

// retriesMetric sums payrails_proxy_upstream_retries_total by reason.
func retriesMetric(t testing.TB, r *running) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	mf := scrape(t, r.admin)["payrails_proxy_upstream_retries_total"]
	if mf == nil {
		t.Fatal("/metrics lacks payrails_proxy_upstream_retries_total")
	}
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			if l.GetName() == "reason" && m.Counter.GetValue() > 0 {
				got[l.GetValue()] += m.Counter.GetValue()
			}
		}
	}
	return got
}

package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// testPKI is a bench PKI with an ECDSA client key (an RSA-4096 one takes
// seconds to make), written under dir.
func testPKI(t *testing.T, dir string) *pkiFiles {
	t.Helper()
	ca, err := pki.NewCA("bench test CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, DNSNames: []string{apiHost}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	f := &pkiFiles{CA: filepath.Join(dir, "ca.pem"), Client: client.TLS(), Roots: ca.Pool(), ca: ca, client: client}
	if err := os.WriteFile(f.CA, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if f.ServerCert, f.ServerKey, err = server.WriteFiles(dir, "server.pem", "server.key"); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLastSmallGET(t *testing.T) {
	tests := []struct {
		name, log, want string
		found           bool
	}{
		{"one", "0A1B GET /small 200\n", "0A1B", true},
		{"the last of several", "AA GET /small 200\nBB HEAD / 200\nCC GET /small 200\nDD HEAD / 200\n", "CC", true},
		{"probe only", "BB HEAD / 200\n", "", false},
		{"line being written", "AA GET /small 200\nCC GET /sm", "AA", true},
		{"no serial (no client certificate)", "- GET /small 400\n", "-", true},
		{"other path", "AA GET /big 200\n", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := lastSmallGET(tt.log)
			if got != tt.want || found != tt.found {
				t.Errorf("lastSmallGET(%q) = %q, %v; want %q, %v", tt.log, got, found, tt.want, tt.found)
			}
		})
	}
}

func TestSameSerial(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"0A1B", "A1B", true},
		{"a1b", "0A1B", true},
		{"A1B", "A1C", false},
		{"", "", false}, // no serial is no match
		{"-", "0A", false},
	}
	for _, tt := range tests {
		if got := sameSerial(tt.a, tt.b); got != tt.want {
			t.Errorf("sameSerial(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseInUse(t *testing.T) {
	const body = `[{"upstream":"bench","ready":true,"in_use":{"subject":"CN=x","serial":"0A1B","fingerprint_sha256":"ab"},` +
		`"candidates":[{"serial":"0A1B"},{"serial":"FF"}]},{"upstream":"other","ready":false,"in_use":null}]`
	got, err := parseInUse(strings.NewReader(body))
	if err != nil || !slices.Equal(got, []string{"0A1B", ""}) {
		t.Errorf("parseInUse = %q, %v; want [0A1B \"\"]", got, err)
	}
	if got, err := parseInUse(strings.NewReader(`{"in_use":{}}`)); err == nil {
		t.Errorf("parseInUse of an object = %q, want an error (/certs is a list)", got)
	}
}

func TestWchanIsPoll(t *testing.T) {
	for wchan, want := range map[string]bool{
		"do_epoll_wait": true, "ep_poll\n": true, "0": true, "": true,
		"hrtimer_nanosleep": false, "futex_wait_queue": false, "poll_schedule_timeout.constprop.0": false,
	} {
		if got := wchanIsPoll(wchan); got != want {
			t.Errorf("wchanIsPoll(%q) = %v, want %v", wchan, got, want)
		}
	}
}

// TestDropPairs drops three rotations into a folder as the rotated
// scenario does for this proxy, and loads the folder with the proxy's own
// loader after each: the newest is chosen, and the folder holds two pairs.
func TestDropPairs(t *testing.T) {
	dir := t.TempDir()
	f := testPKI(t, dir)
	other, err := pki.NewKey(pki.KeyECDSA)
	if err != nil {
		t.Fatal(err)
	}
	rot := &rotator{ca: f.ca, keys: [2]crypto.Signer{f.client.Key, other}, from: f.client.Cert.NotBefore}
	peerDir := filepath.Join(dir, "proxy-base")
	if err := os.Mkdir(peerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	own, err := f.forPeer(peerDir)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{dir: peerDir, pki: own, pairs: [][]string{{own.ClientCert, own.ClientKey}}}
	var prev time.Time = f.client.Cert.NotBefore
	for n := 1; n <= 3; n++ {
		leaf, err := rot.next()
		if err != nil {
			t.Fatal(err)
		}
		if !leaf.Cert.NotBefore.After(prev) || !leaf.Cert.NotBefore.Before(time.Now()) {
			t.Errorf("rotation %d: NotBefore %s, want after %s and in the past", n, leaf.Cert.NotBefore, prev)
		}
		prev = leaf.Cert.NotBefore
		if err := in.dropPair(leaf, n); err != nil {
			t.Fatal(err)
		}
		snap := certs.Load(certs.Source{Dir: own.ClientDir}, time.Now())
		if snap.Chosen == nil || snap.Chosen.Serial != certs.Serial(leaf.Cert) {
			t.Fatalf("rotation %d: the loader chose %+v, want serial %s; findings %+v", n, snap.Chosen, certs.Serial(leaf.Cert), snap.Findings)
		}
		if len(snap.Pairs) != 2 {
			t.Errorf("rotation %d: %d pairs in the folder, want 2 (in use and new)", n, len(snap.Pairs))
		}
	}
	entries, _ := os.ReadDir(own.ClientDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"rotated-0002.pem", "rotated-0003.pem"}) {
		t.Errorf("folder holds %v, want the last two rotations", names)
	}
}

// TestStandInAnswers starts the stand-in API of sparse and rotated with
// real nginx: it refuses a client without a certificate, answers the
// verification probe (HEAD /) with 200 JSON, and logs the serial of the
// client certificate in the form the rotated scenario compares with
// certs.Serial.
func TestStandInAnswers(t *testing.T) {
	interop.Tool(t, "nginx")
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // nginx workers may run as nobody
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	b := &bench{dir: dir, pki: testPKI(t, dir), cpus: cpuPlan{Workers: 1}}
	www := filepath.Join(dir, "api", "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "small"), []byte(smallBody), 0o644); err != nil {
		t.Fatal(err)
	}
	procs := &procSet{}
	defer procs.stopAll()
	ctx := context.Background()
	api, err := b.startStandIn(ctx, procs, "api-test", shortKeepAlive, true, false)
	if err != nil {
		t.Fatal(err)
	}
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{ServerName: apiHost, RootCAs: b.pki.Roots, MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	do := func(c *http.Client, method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, "https://"+api.addr+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	if resp, _ := do(client(nil), http.MethodGet, "/small"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /small without a client certificate: %s, want nginx's 400", resp.Status)
	}
	withCert := client(&b.pki.Client)
	resp, body := do(withCert, http.MethodHead, "/")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || body != "" {
		t.Errorf("HEAD /: %s, %q, body %q; want 200 application/json, no body", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if resp, body := do(withCert, http.MethodGet, "/"); resp.StatusCode != http.StatusOK || body != "{\"status\":\"ok\"}\n" {
		t.Errorf("GET /: %s %q", resp.Status, body)
	}
	if resp, _ := do(withCert, http.MethodGet, "/nothing"); resp.StatusCode != http.StatusNotFound ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /nothing: %s %q, want 404 JSON", resp.Status, resp.Header.Get("Content-Type"))
	}
	offset, err := api.logSize()
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := do(withCert, http.MethodGet, "/small"); resp.StatusCode != http.StatusOK || body != smallBody {
		t.Fatalf("GET /small: %s %q", resp.Status, body)
	}
	got, err := api.servedSerial(ctx, offset)
	if want := certs.Serial(b.pki.client.Cert); err != nil || !sameSerial(got, want) {
		t.Errorf("served serial %q, %v; want %s", got, err, want)
	}
}

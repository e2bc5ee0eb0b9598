package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// layout writes the certificate folder in one of the ways operators and
// platforms do, leaving exactly the given pair (or bad content) in place.
type layout struct{ dir string }

func (l layout) plainFiles(t testing.TB, cert, key []byte, viaRename bool) {
	t.Helper()
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{"domain.key", key, 0o600}, {"domain.pem", cert, 0o644}} { // key first: the old pair breaks before the new one is whole
		p := filepath.Join(l.dir, f.name)
		if viaRename {
			tmp := filepath.Join(l.dir, "."+f.name+".tmp")
			mustWrite(t, tmp, f.data, f.mode)
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		} else {
			mustWrite(t, p, f.data, f.mode) // cp over the file: truncate, then write
		}
	}
	l.removeK8s(t)
}

// k8s swaps "..data" as the Kubernetes atomic writer does, then removes
// plain files so that only this pair remains.
func (l layout) k8s(t testing.TB, cert, key []byte) {
	t.Helper()
	ts := fmt.Sprintf("..2026_11_28_21_00_00.%d", time.Now().UnixNano())
	if err := os.Mkdir(filepath.Join(l.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(l.dir, ts, "tls.crt"), cert, 0o644)
	mustWrite(t, filepath.Join(l.dir, ts, "tls.key"), key, 0o600)
	old, _ := os.Readlink(filepath.Join(l.dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(l.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(l.dir, "..data_tmp"), filepath.Join(l.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(l.dir, n)); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", n), filepath.Join(l.dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		os.RemoveAll(filepath.Join(l.dir, old))
	}
	os.Remove(filepath.Join(l.dir, "domain.pem"))
	os.Remove(filepath.Join(l.dir, "domain.key"))
}

func (l layout) removeK8s(t testing.TB) {
	ents, _ := os.ReadDir(l.dir)
	for _, e := range ents {
		if n := e.Name(); n == "tls.crt" || n == "tls.key" || (len(n) > 2 && n[:2] == "..") {
			os.RemoveAll(filepath.Join(l.dir, n))
		}
	}
}

func mustWrite(t testing.TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

func csrOf(t testing.TB, l *pki.Leaf) []byte {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: l.Cert.Subject}, l.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// sample is one request of TestRotationUnderLoad's load.
type sample struct {
	start, end time.Time
	serial     string
	err        error
}

// switchAt is when a test first saw a certificate in use.
type switchAt struct {
	serial string
	at     time.Time
}

// TestRotationUnderLoad: clients send requests continuously while the
// certificate folder is rotated 24 times, mixing good drops (rename, copy
// over, Kubernetes layout) and bad ones (CSR in place of the certificate,
// half-written certificate, key of another certificate, expired pair).
// No request may fail; after each good drop is first seen, every request
// that starts later presents the new certificate; a bad drop changes
// nothing. The test logs the drop-to-use latency.
func TestRotationUnderLoad(t *testing.T) {
	w := newWorld(t)
	ro := &rotator{w: w, l: layout{w.certDir}, base: time.Now().Add(-100 * time.Hour)}
	current := ro.nextLeaf(t)
	ro.l.plainFiles(t, current.CertPEM, current.KeyPEM, true)
	r := startApp(t, w.configFile(t, "reload: {debounce: 50ms, poll_interval: 1h}\n"))
	store := r.app.views[0].Store

	const workers = 8
	clients := r.clients(t, workers)
	ld := startLoad(t, workers, 100000, 2*time.Minute, func(w, _ int) sample {
		s := sample{start: time.Now()}
		s.serial, s.err = echoSerial(clients[w])
		s.end = time.Now()
		return s
	})
	probe := r.client(t)
	var (
		switches  = []switchAt{{serialOf(current), time.Now()}}
		latencies []time.Duration
	)
	steps := []string{"mv", "k8s", "bad-csr", "cp", "k8s", "bad-truncated", "mv", "bad-unmatched",
		"k8s", "cp", "bad-expired", "mv", "k8s", "bad-csr", "cp", "mv", "k8s", "bad-truncated",
		"cp", "k8s", "bad-unmatched", "mv", "k8s", "cp"}
	for i, step := range steps {
		failedBefore := store.Stats().Failed
		dropped := time.Now()
		next := ro.drop(t, step, current)
		if next == nil { // a bad drop: wait until it was rejected
			poll.Until(t, fmt.Sprintf("step %d (%s) to be rejected", i, step), 10*time.Second, func() bool {
				return store.Stats().Failed > failedBefore
			})
			if s, err := echoSerial(probe); err != nil || s != serialOf(current) {
				t.Fatalf("step %d (%s): serial %q (%v) after a bad drop, want the old %s", i, step, s, err, serialOf(current))
			}
			ld.waitServed(40) // let the load run against each state
			continue
		}
		poll.Until(t, fmt.Sprintf("step %d (%s) to be used", i, step), 10*time.Second, func() bool {
			s, err := echoSerial(probe)
			return err == nil && s == serialOf(next)
		})
		seen := time.Now()
		latencies = append(latencies, seen.Sub(dropped))
		switches = append(switches, switchAt{serialOf(next), seen})
		current = next
		ld.waitServed(40)
	}
	samples := ld.stop()
	checkRotationSamples(t, samples, switches, latencies)
	slices.Sort(latencies)
	t.Logf("%d requests by %d clients, 0 failed; %d good rotations (debounce 50ms): drop-to-use median %s, worst %s",
		len(samples), workers, len(latencies), latencies[len(latencies)/2].Round(time.Millisecond),
		latencies[len(latencies)-1].Round(time.Millisecond))
}

// rotator drops certificates into a folder for TestRotationUnderLoad.
type rotator struct {
	w    *world
	l    layout
	base time.Time
	gen  int
}

// nextLeaf issues a client certificate newer than the ones before.
func (ro *rotator) nextLeaf(t testing.TB) *pki.Leaf {
	ro.gen++
	return ro.w.clientCert(t, fmt.Sprint("gen-", ro.gen), ro.base.Add(time.Duration(ro.gen)*time.Minute))
}

// drop performs one step: a good drop (mv, cp, k8s) of a new pair, which it
// returns, or a bad one (bad-...) next to current's key, for which it
// returns nil.
func (ro *rotator) drop(t testing.TB, step string, current *pki.Leaf) *pki.Leaf {
	t.Helper()
	switch step {
	case "mv", "cp":
		next := ro.nextLeaf(t)
		ro.l.plainFiles(t, next.CertPEM, next.KeyPEM, step == "mv")
		return next
	case "k8s":
		next := ro.nextLeaf(t)
		ro.l.k8s(t, next.CertPEM, next.KeyPEM)
		return next
	case "bad-csr":
		ro.l.plainFiles(t, csrOf(t, current), current.KeyPEM, true)
	case "bad-truncated":
		other := ro.nextLeaf(t)
		ro.l.k8s(t, other.CertPEM[:len(other.CertPEM)/2], other.KeyPEM)
	case "bad-unmatched":
		other := ro.nextLeaf(t)
		ro.l.plainFiles(t, other.CertPEM, current.KeyPEM, false)
	case "bad-expired":
		old, err := ro.w.ca.Issue(pki.LeafOptions{CommonName: "expired", NotBefore: ro.base.Add(-48 * time.Hour),
			NotAfter: ro.base, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		ro.l.k8s(t, old.CertPEM, old.KeyPEM)
	default:
		t.Fatalf("unknown step %q", step)
	}
	return nil
}

// checkRotationSamples checks that no request failed and that, after each
// switch was seen, every request that started later (and ended before the
// next drop) presented that certificate. latencies[i] is how long after
// its drop switch i+1 was seen.
func checkRotationSamples(t *testing.T, samples []sample, switches []switchAt, latencies []time.Duration) {
	t.Helper()
	failed := 0
	for _, s := range samples {
		if s.err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("request at %s failed: %v", s.start.Format(time.StampMicro), s.err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed during rotation", failed, len(samples))
	}
	for i, sw := range switches {
		var until time.Time
		if i+1 < len(switches) {
			until = switches[i+1].at.Add(-latencies[i])
		}
		for _, s := range samples {
			if s.start.After(sw.at) && (until.IsZero() || s.end.Before(until)) && s.serial != sw.serial {
				t.Errorf("request started %s after switch %d presented %s, want %s",
					s.start.Sub(sw.at), i, s.serial, sw.serial)
				break
			}
		}
	}
}

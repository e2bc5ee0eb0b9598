package certs

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// verifies reports whether pool verifies a server certificate of ca.
func verifies(t testing.TB, pool *x509.CertPool, ca *pki.CA) bool {
	t.Helper()
	srv, err := ca.Issue(pki.LeafOptions{CommonName: "api.acme.payrails.io", DNSNames: []string{"api.acme.payrails.io"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "api.acme.payrails.io"})
	return err == nil
}

// TestRootStoreReload: ca_file is reloaded like the certificates. A new
// bundle replaces the pool in one swap; a bad one (no certificate, a
// CERTIFICATE block that does not parse, an empty file mid-copy) keeps the
// previous pool, is logged once and counted, and the hook sees it.
func TestRootStoreReload(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCA := newCA(t), newCA(t)
	file := write(t, dir, "ca.pem", oldCA.CertPEM, 0o644)
	core, logs := observer.New(zapcore.InfoLevel)
	var hooked atomic.Int64
	r, err := NewRootStore("live", file, zap.New(core), WithRootsHook(func(res Result, err error) {
		if res == ResultFailed && err != nil {
			hooked.Add(1)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !verifies(t, r.Pool(), oldCA) || verifies(t, r.Pool(), newCA) {
		t.Fatal("the first pool does not hold exactly the first CA")
	}
	changed := r.Changed()
	write(t, dir, "ca.pem", append(append([]byte{}, oldCA.CertPEM...), newCA.CertPEM...), 0o644)
	if res, err := r.Reload(); res != ResultSwapped || err != nil {
		t.Fatalf("Reload = %s, %v; want swapped", res, err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed() was not closed by the swap")
	}
	if !verifies(t, r.Pool(), newCA) || !verifies(t, r.Pool(), oldCA) {
		t.Error("after the swap the pool does not hold both CAs")
	}
	if res, _ := r.Reload(); res != ResultUnchanged {
		t.Errorf("Reload of the same bundle = %s, want unchanged", res)
	}
	for _, bad := range []string{"", "not a certificate\n", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		write(t, dir, "ca.pem", []byte(bad), 0o644)
		if res, err := r.Reload(); res != ResultFailed || err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("bad bundle %q: Reload = %s, %v; want failed naming the file", bad, res, err)
		}
		if !verifies(t, r.Pool(), newCA) {
			t.Errorf("bad bundle %q replaced the pool", bad)
		}
	}
	if st := r.Stats(); st.Failed != 3 || st.Swapped != 1 || hooked.Load() != 3 {
		t.Errorf("stats %+v, hook saw %d failures; want 3 failures counted", st, hooked.Load())
	}
	// An empty file and one without a certificate are the same cause.
	if n := logs.FilterMessageSnippet("ca_file reload rejected").Len(); n != 2 {
		t.Errorf("%d rejection log lines, want one per distinct cause (2)", n)
	}
	if _, err := NewRootStore("live", filepath.Join(dir, "missing.pem"), zap.NewNop()); err == nil {
		t.Error("NewRootStore of a missing file: no error; a bad ca_file must stop the start")
	}
}

// TestWatcherReloadsRoots: the watcher sees a new ca_file (renamed into
// place, as Kubernetes and careful tools do) without a poll.
func TestWatcherReloadsRoots(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCA := newCA(t), newCA(t)
	file := write(t, dir, "ca.pem", oldCA.CertPEM, 0o644)
	r, err := NewRootStore("live", file, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(nil, WatchOptions{Debounce: 10 * time.Millisecond, PollInterval: time.Hour}, zap.NewNop(), r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	writeAtomic(t, file, newCA.CertPEM, 0o644)
	poll.Until(t, "the new ca_file to be used", 5*time.Second, func() bool { return verifies(t, r.Pool(), newCA) })
	if verifies(t, r.Pool(), oldCA) {
		t.Error("the old CA is still trusted after it was removed from ca_file")
	}
}

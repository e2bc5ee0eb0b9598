package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
	"go.uber.org/zap"
)

// RootStore holds the roots that verify one upstream's server (the system
// roots plus ca_file) and replaces them when ca_file changes: a Watcher
// reloads it with the certificate stores (ghostunnel #219, ingress-nginx
// #5608, cert-manager #4344 ask for it).
//
// Pool is lock-free and safe from any goroutine; the pool it returns is
// never modified. The failure rule is the Store's: a bundle that holds no
// certificate, or one that does not parse, keeps the previous pool, is
// logged once per distinct cause, counted in Stats and passed to the hook.
type RootStore struct {
	name, file string
	log        *zap.Logger
	hook       func(Result, error)
	now        func() time.Time

	cur     atomic.Pointer[roots]
	stats   atomic.Pointer[Stats]
	changed atomic.Pointer[chan struct{}] // closed at the next swap

	mu        sync.Mutex // serialises Reload; guards lastError
	lastError string
}

// roots is one published pool and the bundle it came from.
type roots struct {
	pool   *x509.CertPool
	digest [sha256.Size]byte
	n      int // certificates from ca_file
}

// RootsOption configures a RootStore.
type RootsOption func(*RootStore)

// WithRootsHook calls hook after every reload with its result (the metrics
// count them); it must be quick and must not call back into the store.
func WithRootsHook(hook func(Result, error)) RootsOption {
	return func(r *RootStore) { r.hook = hook }
}

// NewRootStore reads caFile once ("" means the system roots only, never
// reloaded). A caFile that cannot be used now is an error: the proxy must
// not start verifying servers against an unintended pool.
func NewRootStore(name, caFile string, log *zap.Logger, opts ...RootsOption) (*RootStore, error) {
	r := &RootStore{name: name, file: caFile, log: log.With(zap.String(fieldUpstream, name)), now: time.Now}
	for _, o := range opts {
		o(r)
	}
	r.stats.Store(&Stats{})
	ch := make(chan struct{})
	r.changed.Store(&ch)
	next, err := loadRoots(caFile)
	if err != nil {
		return nil, err
	}
	r.cur.Store(next)
	return r, nil
}

// Name is the upstream the roots belong to.
func (r *RootStore) Name() string { return r.name }

// File is ca_file, "" for the system roots only.
func (r *RootStore) File() string { return r.file }

// Pool returns the roots to verify the server with now. Never nil.
func (r *RootStore) Pool() *x509.CertPool { return r.cur.Load().pool }

// Changed returns a channel closed when Pool next answers differently.
func (r *RootStore) Changed() <-chan struct{} { return *r.changed.Load() }

// Stats returns a copy of the reload counters.
func (r *RootStore) Stats() Stats { return *r.stats.Load() }

// Reload reads ca_file again and swaps the pool if the bundle changed and
// is usable.
func (r *RootStore) Reload() (Result, error) {
	if r.file == "" {
		return ResultUnchanged, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := loadRoots(r.file)
	prev := r.cur.Load()
	var res Result
	switch {
	case err != nil:
		res = ResultFailed
		if err.Error() != r.lastError {
			r.lastError = err.Error()
			r.log.Error("ca_file reload rejected; the previous roots still verify the server", zap.Error(err),
				zap.String(fieldFile, r.file))
		}
	case next.digest == prev.digest:
		res = ResultUnchanged
		r.lastError = ""
	default:
		res = ResultSwapped
		r.lastError = ""
		r.cur.Store(next)
		ch := make(chan struct{})
		close(*r.changed.Swap(&ch))
		r.log.Info("ca_file reloaded",
			zap.String(fieldFile, r.file), zap.Int("certificates", next.n))
	}
	r.count(res, err)
	if r.hook != nil {
		r.hook(res, err)
	}
	return res, err
}

func (r *RootStore) count(res Result, err error) {
	now := r.now()
	st := *r.stats.Load()
	st.LastAttempt, st.LastResult = now, res
	switch res {
	case ResultSwapped:
		st.Swapped++
	case ResultUnchanged:
		st.Unchanged++
	case ResultFailed:
		st.Failed++
	}
	if err != nil {
		st.LastError = err.Error()
	} else {
		st.LastError, st.LastSuccess = "", now
	}
	r.stats.Store(&st)
}

// watchDirs are the folders whose changes can change ca_file: its own and,
// for a symlink (a Kubernetes Secret or ConfigMap), its target's.
func (r *RootStore) watchDirs() []string {
	if r.file == "" {
		return nil
	}
	dirs := []string{filepath.Dir(r.file)}
	if real, err := filepath.EvalSymlinks(r.file); err == nil {
		dirs = append(dirs, filepath.Dir(real))
	}
	return dirs
}

// loadRoots reads the system roots plus caFile into a new pool.
func loadRoots(caFile string) (*roots, error) {
	var data []byte
	if caFile != "" {
		var err error
		if data, _, err = safefile.Read(caFile, maxFileSize); err != nil {
			return nil, fmt.Errorf("reading ca_file %q: %w", caFile, err)
		}
	}
	pool, err := rootsFrom(caFile, data) // the bytes digested are the bytes parsed
	if err != nil {
		return nil, err
	}
	return &roots{pool: pool, digest: sha256.Sum256(data), n: bytes.Count(data, []byte("-----BEGIN CERTIFICATE-----"))}, nil
}

package certs

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Result is the outcome of one reload.
type Result string

// Reload results, used as the metrics label.
const (
	ResultSwapped   Result = "swapped"   // a different certificate is now presented
	ResultUnchanged Result = "unchanged" // same certificate; the snapshot was refreshed
	ResultFailed    Result = "failed"    // no usable pair; the previous snapshot stays
)

// Log field names used by certificate events.
const (
	fieldUpstream       = "upstream"
	fieldSource         = "source"
	fieldSerial         = "serial"
	fieldFingerprint    = "fingerprint"
	fieldNotAfter       = "not_after"
	fieldReason         = "reason"
	fieldFile           = "file"
	fieldCode           = "code"
	fieldOldSerial      = "old_serial"
	fieldOldFingerprint = "old_fingerprint"
	fieldOldNotAfter    = "old_not_after"
)

// Stats counts reloads; the metrics and admin endpoints read it.
type Stats struct {
	Swapped, Unchanged, Failed uint64
	LastAttempt                time.Time
	LastResult                 Result
	LastError                  string    // the last failure's message, "" after a success
	LastSuccess                time.Time // last reload that left a usable pair published
}

// Store holds the current Snapshot of one source and replaces it on Reload.
//
// Reading (Current, Certificate) is lock-free and safe from any goroutine.
// Reload is serialised internally. The failure rule: a reload that finds no
// usable pair keeps the previous snapshot in place, logs one error (not
// repeated while the cause is the same) and counts the failure.
type Store struct {
	name string
	src  Source
	log  *zap.Logger
	now  func() time.Time

	cur     atomic.Pointer[Snapshot]
	stats   atomic.Pointer[Stats]
	changed atomic.Pointer[chan struct{}] // closed at the next publish

	mu        sync.Mutex // serialises Reload; guards lastError
	lastError string
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) StoreOption { return func(s *Store) { s.now = now } }

// NewStore loads src once and returns a Store publishing the result. It
// never fails: a source with no usable pair gives a Store whose Certificate
// is nil and whose Current().Err() says why, so that the proxy can start,
// report not-ready, and pick up a good drop later.
func NewStore(name string, src Source, log *zap.Logger, opts ...StoreOption) *Store {
	s := &Store{name: name, src: src, log: log.With(zap.String(fieldUpstream, name)), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	s.stats.Store(&Stats{})
	ch := make(chan struct{})
	s.changed.Store(&ch)
	s.Reload()
	return s
}

// Name is the upstream the store belongs to.
func (s *Store) Name() string { return s.name }

// Source is what the store reads.
func (s *Store) Source() Source { return s.src }

// Current returns the published snapshot; never nil after NewStore.
func (s *Store) Current() *Snapshot { return s.cur.Load() }

// Stats returns a copy of the reload counters.
func (s *Store) Stats() Stats { return *s.stats.Load() }

// Candidates returns the certificates that may be presented now, best
// first (the store's choice first): the pairs whose key matched and whose
// validity window holds the present moment; empty when there is none. A
// consumer that checks each against its server (the proxy verifies them)
// picks among these. The slice is new; the certificates are shared and
// must not be modified. A pair unchanged by a reload keeps its pointer
// only while it is the chosen one: compare certificates by content.
func (s *Store) Candidates() []*tls.Certificate {
	snap := s.cur.Load()
	if snap == nil {
		return nil
	}
	now := s.now()
	var out []*tls.Certificate
	for _, p := range snap.Pairs {
		if !now.Before(p.NotBefore()) && !now.After(p.NotAfter()) {
			out = append(out, p.Certificate)
		}
	}
	return out
}

// Changed returns a channel that is closed when the store publishes its
// next snapshot (every reload that finds something usable, and the first
// failure that leaves nothing usable): Candidates and Certificate may then
// answer differently.
func (s *Store) Changed() <-chan struct{} { return *s.changed.Load() }

// publish makes next the current snapshot and wakes Changed's waiters.
func (s *Store) publish(next *Snapshot) {
	s.cur.Store(next)
	ch := make(chan struct{})
	close(*s.changed.Swap(&ch))
}

// Certificate returns the certificate to present, or nil when none is valid
// right now (nothing usable was loaded, or the chosen one has expired since).
// The returned value is shared and must not be modified; a new pointer means
// a new certificate.
func (s *Store) Certificate() *tls.Certificate {
	snap := s.cur.Load()
	if snap == nil || snap.Chosen == nil || s.now().After(snap.Chosen.NotAfter()) {
		return nil
	}
	return snap.Chosen.Certificate
}

// Reload reads the source again and publishes the result if it is usable.
func (s *Store) Reload() (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	next := Load(s.src, now)
	prev := s.cur.Load()
	var res Result
	switch {
	case next.Chosen == nil && prev != nil && prev.Chosen != nil:
		res = ResultFailed // keep serving the previous certificate
		s.logFailure(next, true)
	case next.Chosen == nil:
		res = ResultFailed
		s.publish(next) // nothing usable before either: show the latest findings
		s.logFindings(prev, next)
		s.logFailure(next, false)
	case sameChosen(prev, next):
		res = ResultUnchanged
		keepPair(prev, next)
		s.publish(next)
		s.lastError = ""
		s.logFindings(prev, next)
	default:
		res = ResultSwapped
		s.publish(next)
		s.lastError = ""
		s.logFindings(prev, next)
		s.logSwap(prev, next)
	}
	s.count(res, now, next.Err())
	return res, next.Err()
}

// keepPair makes next present the very same *tls.Certificate as prev, so
// that consumers comparing pointers see no change.
func keepPair(prev, next *Snapshot) {
	for i, p := range next.Pairs {
		if p == next.Chosen {
			next.Pairs[i] = prev.Chosen
		}
	}
	next.Chosen = prev.Chosen
}

func (s *Store) count(res Result, now time.Time, err error) {
	st := *s.stats.Load()
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
		st.LastError = ""
		st.LastSuccess = now
	}
	s.stats.Store(&st)
}

func (s *Store) logSwap(prev, next *Snapshot) {
	c := next.Chosen
	fields := []zap.Field{
		zap.String(fieldSource, next.Source),
		zap.String(fieldSerial, c.Serial), zap.String(fieldFingerprint, c.Fingerprint),
		zap.Time(fieldNotAfter, c.NotAfter()), zap.String(fieldFile, c.CertFile),
		zap.String(fieldReason, next.Reason),
	}
	if prev == nil || prev.Chosen == nil {
		s.log.Info("client certificate loaded", fields...)
		return
	}
	o := prev.Chosen
	fields = append(fields, zap.String(fieldOldSerial, o.Serial), zap.String(fieldOldFingerprint, o.Fingerprint),
		zap.Time(fieldOldNotAfter, o.NotAfter()))
	s.log.Info("client certificate swapped: new connections present the new certificate", fields...)
}

// logFailure logs a failed load once per distinct cause.
func (s *Store) logFailure(next *Snapshot, keptOld bool) {
	msg := next.Err().Error()
	if msg == s.lastError {
		return
	}
	s.lastError = msg
	if keptOld {
		prev := s.cur.Load().Chosen
		s.log.Error("certificate reload rejected; still presenting the previous certificate",
			zap.Error(next.Err()), zap.String(fieldSerial, prev.Serial), zap.Time(fieldNotAfter, prev.NotAfter()))
		return
	}
	s.log.Error("no usable client certificate; requests get 503 until a valid certificate and key are in place",
		zap.Error(next.Err()))
}

// logFindings logs warnings that were not in the previous snapshot, so that a
// periodic re-read of unchanged files stays quiet.
func (s *Store) logFindings(prev, next *Snapshot) {
	old := map[Finding]bool{}
	if prev != nil {
		for _, f := range prev.Findings {
			old[f] = true
		}
	}
	for _, f := range next.Findings {
		if old[f] || (next.Chosen == nil && f.Severity == Error) {
			continue // errors of a failed load are logged together by logFailure
		}
		fields := []zap.Field{zap.String(fieldFile, f.Path), zap.String(fieldCode, string(f.Code))}
		switch f.Severity {
		case Error:
			s.log.Error(f.Message, fields...)
		case Warning:
			s.log.Warn(f.Message, fields...)
		default:
			s.log.Debug(f.Message, fields...)
		}
	}
}

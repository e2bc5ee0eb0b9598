//go:build pkcs11 && cgo

package certs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
	"go.uber.org/zap"
)

// PKCS11Built reports whether this binary can use PKCS#11 tokens: true in
// the pkcs11 flavour (built with -tags pkcs11 and cgo).
const PKCS11Built = true

// Back-off between attempts to re-open a failed token: doubled from
// tokenRetryMin per failure, capped at tokenRetryMax. Short, because a
// request whose handshake needs the key fails while the token is closed.
const (
	tokenRetryMin = 250 * time.Millisecond
	tokenRetryMax = 10 * time.Second
	// tokenSessions bounds the sessions kept open for signing: one
	// signature at a time per session (PKCS#11 §5.6), so this many
	// handshakes can sign at once.
	tokenSessions = 8
)

// Token is an open PKCS#11 token holding the merchant's keys: the module
// loaded, a logged-in session, and a few sessions for signing.
//
// It is safe for concurrent use. The failure rule: when a signature or a
// listing fails because of the token (removed, library re-initialised,
// session lost), the token is closed and re-opened by the next use after a
// back-off (tokenRetryMin doubling to tokenRetryMax); the library itself is
// finalised and initialised again on that re-open, so a token removed and
// re-inserted is found again. A wrong PIN is never tried twice: the token
// stays closed until the PIN (file or variable) changes, so that retries
// cannot lock it.
type Token struct {
	cfg PKCS11
	log *zap.Logger
	now func() time.Time
	rw  bool // sessions may write (csr generates keys); serving only reads

	mu      sync.RWMutex // RLock: use the open state below; Lock: open or close it
	mod     *module      // nil while closed
	modGen  uint64       // mod.gen when opened: a different one means re-open
	slot    uint
	login   pkcs11.SessionHandle // kept open: login state lives as long as one session does
	idle    chan pkcs11.SessionHandle
	pss     atomic.Bool                    // the token offers CKM_RSA_PKCS_PSS (read without the lock)
	handles map[string]pkcs11.ObjectHandle // key ref -> private key handle, valid while open
	hmu     sync.Mutex                     // guards handles under RLock

	signatures, signFailures atomic.Uint64 // made and failed through this token

	fmu      sync.Mutex // guards what follows
	failures int
	retryAt  time.Time
	lastErr  error
	reinit   bool               // re-initialise the library at the next open
	badPIN   *[sha256.Size]byte // the PIN the token refused
	logged   string             // the last failure logged, so that it is logged once
}

// OpenToken prepares the token named by cfg and opens it. A token that
// cannot be opened now is not an error here (it is retried with back-off,
// and Load reports why it has no keys); only a configuration that can never
// work is: a module path that does not load.
func OpenToken(cfg PKCS11, log *zap.Logger) (*Token, error) {
	return openToken(cfg, log, false)
}

// OpenTokenForWriting is OpenToken with read-write sessions, for making a
// key in the token (`csr --key-uri`); it fails when the token cannot be
// opened now.
func OpenTokenForWriting(cfg PKCS11, log *zap.Logger) (*Token, error) {
	t, err := openToken(cfg, log, true)
	if err != nil {
		return nil, err
	}
	if err := t.ensureOpen(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func openToken(cfg PKCS11, log *zap.Logger, rw bool) (*Token, error) {
	if log == nil {
		log = zap.NewNop()
	}
	t := &Token{cfg: cfg, log: log.With(zap.String("key_uri", cfg.URI)), now: time.Now, rw: rw}
	if err := t.ensureOpen(); err != nil && errors.Is(err, errModuleLoad) {
		return nil, err
	}
	return t, nil
}

// Close logs out, closes the sessions and releases the library. Signers
// made by the token fail afterwards.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closeLocked()
	t.fmu.Lock()
	t.retryAt = t.now().Add(100 * 365 * 24 * time.Hour)
	t.lastErr = fmt.Errorf("%w: %s was closed", ErrTokenUnavailable, t.cfg.URI)
	t.fmu.Unlock()
	return nil
}

// Signatures returns how many signatures the token made, and how many
// failed, since it was opened. Safe for concurrent use.
func (t *Token) Signatures() (made, failed uint64) { return t.signatures.Load(), t.signFailures.Load() }

// Healthy returns nil when the token is open, else why not (and when it is
// tried again).
func (t *Token) Healthy() error {
	t.mu.RLock()
	open := t.mod != nil && t.modGen == t.mod.generation()
	t.mu.RUnlock()
	if open {
		return nil
	}
	t.fmu.Lock()
	defer t.fmu.Unlock()
	if t.lastErr != nil {
		return t.lastErr
	}
	return fmt.Errorf("%w: %s is not open yet", ErrTokenUnavailable, t.cfg.URI)
}

// ensureOpen opens the token unless it is open, or the back-off after a
// failure has not passed (then it returns the failure).
func (t *Token) ensureOpen() error {
	t.mu.RLock()
	open := t.mod != nil && t.modGen == t.mod.generation()
	t.mu.RUnlock()
	if open {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mod != nil && t.modGen == t.mod.generation() {
		return nil // another goroutine opened it meanwhile
	}
	t.fmu.Lock()
	wait, last := t.retryAt.Sub(t.now()), t.lastErr
	t.fmu.Unlock()
	if wait > 0 && last != nil && !(errors.Is(last, ErrPINWrong) && t.pinChanged()) {
		return last
	}
	t.closeLocked()
	err := t.openLocked()
	t.fmu.Lock()
	defer t.fmu.Unlock()
	if err != nil {
		t.failures++
		t.retryAt = t.now().Add(backoff(t.failures))
		t.lastErr = err
		t.reinit = true
		if err.Error() != t.logged {
			t.logged = err.Error()
			t.log.Error("PKCS#11 token cannot be used; it is tried again with back-off", zap.Error(err))
		}
		return err
	}
	if t.failures > 0 {
		t.log.Info("PKCS#11 token open again", zap.Int("failed_attempts", t.failures))
	}
	t.failures, t.lastErr, t.logged, t.reinit = 0, nil, "", false
	return nil
}

func backoff(failures int) time.Duration {
	d := tokenRetryMin
	for i := 1; i < failures && d < tokenRetryMax; i++ {
		d *= 2
	}
	return min(d, tokenRetryMax)
}

// fail closes the token after a failure caused by it, so that the next use
// re-opens it (after the back-off), re-initialising the library.
func (t *Token) fail(cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closeLocked()
	t.fmu.Lock()
	defer t.fmu.Unlock()
	t.failures++
	t.retryAt = t.now().Add(backoff(t.failures))
	t.lastErr = fmt.Errorf("%w: %s failed (%v); it is re-opened by itself", ErrTokenUnavailable, t.cfg.URI, cause)
	t.reinit = true
	t.log.Error("PKCS#11 token failed; closed, and re-opened with back-off", zap.Error(cause))
}

// openLocked opens the token: the library, the slot, a session, the login.
func (t *Token) openLocked() error {
	t.fmu.Lock()
	reinit := t.reinit
	t.fmu.Unlock()
	mod, fresh, err := acquireModule(t.cfg.ModulePath)
	if err != nil {
		return err
	}
	if reinit && !fresh {
		if err := mod.reinitialize(t.modGen); err != nil {
			mod.release()
			return fmt.Errorf("%w: re-initialising %s: %v", ErrTokenUnavailable, t.cfg.ModulePath, err)
		}
	}
	if err := t.openSlot(mod); err != nil {
		mod.release() // outside mod.use: the last release finalises the library under its write lock
		return err
	}
	return nil
}

// openSlot finds the slot, opens the session and logs in.
func (t *Token) openSlot(mod *module) error {
	mod.use.RLock()
	defer mod.use.RUnlock()
	slot, err := t.findSlot(mod.ctx)
	if err != nil {
		return err
	}
	flags := uint(pkcs11.CKF_SERIAL_SESSION)
	if t.rw {
		flags |= pkcs11.CKF_RW_SESSION
	}
	sh, err := mod.ctx.OpenSession(slot, flags)
	if err != nil {
		return fmt.Errorf("%w: opening a session with the token of %s: %v", ErrTokenUnavailable, t.cfg.URI, err)
	}
	if err := t.loginSession(mod.ctx, sh); err != nil {
		_ = mod.ctx.CloseSession(sh)
		return err
	}
	pss := false
	if mechs, err := mod.ctx.GetMechanismList(slot); err == nil {
		for _, m := range mechs {
			pss = pss || m.Mechanism == pkcs11.CKM_RSA_PKCS_PSS
		}
	}
	t.mod, t.modGen, t.slot, t.login = mod, mod.gen, slot, sh
	t.pss.Store(pss)
	t.idle = make(chan pkcs11.SessionHandle, tokenSessions)
	t.handles = map[string]pkcs11.ObjectHandle{}
	return nil
}

// closeLocked closes the sessions and releases the library, if open.
func (t *Token) closeLocked() {
	if t.mod == nil {
		return
	}
	mod := t.mod
	mod.use.RLock()
	if t.modGen == mod.generation() {
		for {
			select {
			case s := <-t.idle:
				_ = mod.ctx.CloseSession(s)
				continue
			default:
			}
			break
		}
		// No C_Logout: login state is the process's, shared by every
		// Token of this library and token (csr's writer, a second
		// upstream); closing the last session ends it anyway.
		_ = mod.ctx.CloseSession(t.login)
	}
	mod.use.RUnlock()
	mod.release()
	t.mod, t.idle, t.handles = nil, nil, nil
}

// findSlot finds the one slot whose token matches the URI.
func (t *Token) findSlot(ctx *pkcs11.Ctx) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("%w: listing the slots of %s: %v", ErrTokenUnavailable, t.cfg.ModulePath, err)
	}
	var present []string
	var found []uint
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		present = append(present, fmt.Sprintf("%q (serial %s, slot %d)", ti.Label, ti.SerialNumber, s))
		c := t.cfg
		if (c.Token == "" || c.Token == ti.Label) && (c.Serial == "" || c.Serial == ti.SerialNumber) &&
			(c.Manufacturer == "" || c.Manufacturer == ti.ManufacturerID) && (c.Model == "" || c.Model == ti.Model) &&
			(c.SlotID == nil || *c.SlotID == s) {
			found = append(found, s)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return 0, fmt.Errorf("%w: %d tokens match %s; name one with serial= or slot-id= (tokens present: %s)",
			ErrTokenNotFound, len(found), t.cfg.URI, joinOr(present, "none"))
	}
	return 0, fmt.Errorf("%w: %s has no token matching %s (tokens present: %s); check token= against the label "+
		"the token was initialised with (`softhsm2-util --show-slots`, `pkcs11-tool --module %s --list-tokens`), "+
		"and that the HSM or its client is reachable", ErrTokenNotFound, t.cfg.ModulePath, t.cfg.URI,
		joinOr(present, "none"), t.cfg.ModulePath)
}

// URI is the token's key_uri, for messages (never holds a PIN).
func (t *Token) URI() string { return t.cfg.URI }

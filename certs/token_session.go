//go:build pkcs11 && cgo

package certs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// session takes a signing session, opening one when none is idle.
func (t *Token) session() (pkcs11.SessionHandle, error) {
	select {
	case s := <-t.idle:
		return s, nil
	default:
	}
	flags := uint(pkcs11.CKF_SERIAL_SESSION)
	if t.rw {
		flags |= pkcs11.CKF_RW_SESSION
	}
	return t.mod.ctx.OpenSession(t.slot, flags)
}

// putSession returns a session; a broken one (err != nil) is closed.
func (t *Token) putSession(s pkcs11.SessionHandle, err error) {
	if err == nil {
		select {
		case t.idle <- s:
			return
		default:
		}
	}
	_ = t.mod.ctx.CloseSession(s)
}

// withSession runs f with an open token and a session, opening the token
// first when needed. An error of f that says the token, session or object
// is gone closes the token, to be re-opened with back-off.
func (t *Token) withSession(f func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle) error) error {
	if err := t.ensureOpen(); err != nil {
		return err
	}
	t.mu.RLock()
	if t.mod == nil {
		t.mu.RUnlock()
		return t.Healthy()
	}
	t.mod.use.RLock()
	s, err := t.session()
	if err == nil {
		err = f(t.mod.ctx, s)
		t.putSession(s, err)
	}
	t.mod.use.RUnlock()
	t.mu.RUnlock()
	if err != nil && tokenGone(err) {
		t.fail(err)
		return fmt.Errorf("%w: %s: %v", ErrTokenUnavailable, t.cfg.URI, err)
	}
	return err
}

// tokenGone reports whether err means that the token, its session or an
// object handle is no longer valid, which re-opening can cure.
func tokenGone(err error) bool {
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}

func joinOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	var b bytes.Buffer
	for i, s := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s)
	}
	return b.String()
}

// pinChanged reports whether the PIN differs from the one the token
// refused: a fixed PIN file is then tried at once.
func (t *Token) pinChanged() bool {
	pin, err := (&passphrase{src: t.cfg.PIN}).get()
	if err != nil {
		return false
	}
	sum := sha256.Sum256(pin)
	t.fmu.Lock()
	defer t.fmu.Unlock()
	return t.badPIN != nil && *t.badPIN != sum
}

// loginSession logs in with the PIN, unless it is the one refused before.
func (t *Token) loginSession(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
	pin, err := (&passphrase{src: t.cfg.PIN}).get()
	if err != nil {
		return fmt.Errorf("%w: reading the PIN: %v", ErrPINWrong, err)
	}
	where := "the PIN"
	switch {
	case t.cfg.PIN.File != "":
		where = "the PIN in " + t.cfg.PIN.File
	case t.cfg.PIN.Env != "":
		where = "the PIN from " + t.cfg.PIN.Env
	}
	sum := sha256.Sum256(pin)
	t.fmu.Lock()
	refused := t.badPIN != nil && *t.badPIN == sum
	t.fmu.Unlock()
	if refused {
		return fmt.Errorf("%w: %s was refused by the token of %s before and is not tried again (a token locks its "+
			"PIN after a few wrong tries); put the right PIN there, it is read again at the next attempt", ErrPINWrong, where, t.cfg.URI)
	}
	err = ctx.Login(sh, pkcs11.CKU_USER, string(pin))
	var pe pkcs11.Error
	switch {
	case err == nil, errors.As(err, &pe) && pe == pkcs11.CKR_USER_ALREADY_LOGGED_IN:
		return nil
	case errors.As(err, &pe) && (pe == pkcs11.CKR_PIN_INCORRECT || pe == pkcs11.CKR_PIN_INVALID || pe == pkcs11.CKR_PIN_LEN_RANGE):
		t.fmu.Lock()
		t.badPIN = &sum
		t.fmu.Unlock()
		return fmt.Errorf("%w: %s is wrong for the token of %s (%v); it is not tried again until it changes, "+
			"so that retries cannot lock the token: put the token's user PIN there", ErrPINWrong, where, t.cfg.URI, err)
	case errors.As(err, &pe) && pe == pkcs11.CKR_PIN_LOCKED:
		return fmt.Errorf("%w: the token of %s refuses logins (%v); the security officer must unlock it "+
			"(`softhsm2-util`/`pkcs11-tool --init-pin` with the SO PIN)", ErrPINLocked, t.cfg.URI, err)
	}
	return fmt.Errorf("%w: logging in to the token of %s: %v", ErrTokenUnavailable, t.cfg.URI, err)
}

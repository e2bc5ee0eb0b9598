//go:build pkcs11 && cgo

package certs

import (
	"bytes"
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

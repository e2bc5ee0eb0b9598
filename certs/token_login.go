//go:build pkcs11 && cgo

package certs

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

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

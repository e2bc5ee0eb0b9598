//go:build pkcs11 && cgo

package certs

import (
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// errModuleLoad is wrapped when a library cannot be loaded at all: a
// configuration that can never work, refused at start.
var errModuleLoad = errors.New("the PKCS#11 library cannot be loaded")

// module is one loaded PKCS#11 library, shared by every Token that uses
// the same path: C_Initialize and C_Finalize are per process, so two
// tokens of one library must not finalise it under each other.
type module struct {
	path string
	ctx  *pkcs11.Ctx
	refs int // guarded by modules.mu
	// use is read-locked around every call into the library and
	// write-locked to re-initialise it.
	use sync.RWMutex
	gen uint64 // incremented at each re-initialisation; guarded by use
}

var modules = struct {
	mu sync.Mutex
	m  map[string]*module
}{m: map[string]*module{}}

// acquireModule loads and initialises the library at path, or shares the
// one already loaded; fresh says that it was loaded (and so initialised)
// just now.
func acquireModule(path string) (m *module, fresh bool, err error) {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	if m := modules.m[path]; m != nil {
		m.refs++
		return m, false, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		why := whyNoLoad(path)
		if why == "" {
			why = "missing, not a shared library, or built for another architecture or libc"
		}
		return nil, false, fmt.Errorf("%w: %s does not load as a PKCS#11 library: %s; give module-path= the vendor's "+
			"library (such as /usr/lib/softhsm/libsofthsm2.so) built for this machine's architecture and glibc, with the "+
			"libraries it needs installed (the -pkcs11 image has Debian 12's glibc, libstdc++ and OpenSSL 3: copy others "+
			"into an image built FROM it)", errModuleLoad, path, why)
	}
	if err := ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, false, fmt.Errorf("%w: initialising the PKCS#11 library %s: %v (for SoftHSM2, check SOFTHSM2_CONF and "+
			"that its tokendir is readable by this user)", ErrTokenUnavailable, path, err)
	}
	m = &module{path: path, ctx: ctx, refs: 1}
	modules.m[path] = m
	return m, true, nil
}

// release drops one reference; the last finalises and unloads the library.
func (m *module) release() {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules.m, m.path)
	m.use.Lock()
	_ = m.ctx.Finalize()
	m.ctx.Destroy()
	m.gen++
	m.use.Unlock()
}

// generation is the number of re-initialisations so far.
func (m *module) generation() uint64 {
	m.use.RLock()
	defer m.use.RUnlock()
	return m.gen
}

// reinitialize finalises and initialises the library again, so that it
// forgets stale sessions and looks for tokens anew (a token re-inserted is
// seen only after that), unless it was re-initialised since seen (by
// another Token). Every Token of the library re-opens its sessions then.
func (m *module) reinitialize(seen uint64) error {
	m.use.Lock()
	defer m.use.Unlock()
	if m.gen != seen {
		return nil
	}
	_ = m.ctx.Finalize()
	m.gen++
	if err := m.ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return err
	}
	return nil
}

func isCode(err error, code uint) bool {
	var pe pkcs11.Error
	return errors.As(err, &pe) && uint(pe) == code
}

//go:build pkcs11 && cgo

package certs

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// payrails_dlopen_error loads path as the PKCS#11 library loader does and
// returns why it fails (dlerror), or NULL when it loads.
static char *payrails_dlopen_error(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		return e == NULL ? NULL : strdup(e);
	}
	void *f = dlsym(h, "C_GetFunctionList");
	dlclose(h);
	return f == NULL ? strdup("the library has no C_GetFunctionList (it is not a PKCS#11 library)") : NULL;
}
*/
import "C"

import (
	"strings"
	"unsafe"
)

// whyNoLoad says why the library at path does not load, in the dynamic
// loader's words ("libfoo.so.1: cannot open shared object file", "version
// `GLIBC_2.38' not found", "invalid ELF header"), or "" when it loads now.
// miekg/pkcs11's New says only that it failed.
func whyNoLoad(path string) string {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	e := C.payrails_dlopen_error(cpath)
	if e == nil {
		return ""
	}
	defer C.free(unsafe.Pointer(e))
	return strings.TrimPrefix(C.GoString(e), path+": ")
}

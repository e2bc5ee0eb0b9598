package main

import (
	"errors"
	"fmt"
	"syscall"
)

// listenError is a listener that could not be opened.
type listenError struct {
	what, addr, flag string
	err              error
}

func (e *listenError) Error() string {
	hint := "check the address"
	if errors.Is(e.err, syscall.EADDRINUSE) {
		hint = "another process holds the port: stop it or choose another"
	} else if errors.Is(e.err, syscall.EACCES) {
		hint = "ports below 1024 need privileges: choose a port above 1024"
	}
	return fmt.Sprintf("cannot listen on %s for the %s: %v; %s (%s)", e.addr, e.what, e.err, hint, e.flag)
}

func (e *listenError) Unwrap() error { return e.err }

package main

import (
	"github.com/mtlsproxy/payrails-mtls-proxy/certs"

	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	register(command{name: "version", summary: "print the version", order: 90, run: runVersion})
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stdout, versionString())
	return exitOK
}

func versionString() string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	flavour := ""
	if certs.PKCS11Built {
		flavour = ", pkcs11"
	}
	return fmt.Sprintf("payrails-mtls-proxy %s%s (%s, %s/%s%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH, flavour)
}

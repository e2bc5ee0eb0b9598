// Command payrails-mtls-proxy is a sidecar that accepts plain HTTP from a
// local service and forwards it to the Payrails API over mutual TLS with
// the merchant's client certificate. See README.md.
//
// This package only wires: config → certs → proxy, under one context that
// SIGINT and SIGTERM cancel. It is the only place that exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the program ran and failed (port taken, upstream down...)
	exitUsage   = 2 // bad command line or configuration
)

// command is one subcommand. Each lives in its own file and registers
// itself in init, so that adding one touches no shared list.
type command struct {
	name    string
	summary string
	order   int // position in the usage text
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var registry []command

func register(c command) { registry = append(registry, c) }

// commands returns the registered commands in usage order.
func commands() []command {
	cs := slices.Clone(registry)
	slices.SortFunc(cs, func(a, b command) int { return a.order - b.order })
	return cs
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "payrails-mtls-proxy: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: payrails-mtls-proxy <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `"payrails-mtls-proxy <command> -h" shows a command's flags.`)
}

// pinFlags are the spellings of a PIN flag people try; each is refused
// with advice instead of "flag provided but not defined".
var pinFlags = map[string]bool{"pin": true, "pkcs11-pin": true, "hsm-pin": true, "pin-value": true, "so-pin": true}

// parseFlags parses args into fs, printing errors and help to stderr. It
// returns the exit code to use when the command must stop.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "--" {
			break
		}
		if name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "="); strings.HasPrefix(a, "-") && pinFlags[name] {
			fmt.Fprintf(stderr, "%s: %s: a PIN is never taken from the command line (it would show in ps and the shell's "+
				"history); write it to a file and add pin-source=file:/PATH to the key URI, or set %s\n", fs.Name(), a, envPKCS11PIN)
			return exitUsage, false
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (flags start with --)\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

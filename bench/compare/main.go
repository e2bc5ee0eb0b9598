// Command compare is the side-by-side benchmark of payrails-mtls-proxy: it
// runs the same plain-HTTP-in, mTLS-out job through this proxy (base-URL and
// forward mode), nginx, HAProxy, stunnel4 and Caddy against an nginx
// stand-in for the Payrails API that requires the client certificate, and
// prints one table with each figure's ratio to the best of those peers.
// By default each peer is pinned to one CPU with one worker, as a sidecar
// with a 1-CPU limit. See bench/README.md.
//
// Everything runs on 127.0.0.1; every process it starts is stopped and its
// temporary folder removed on exit, error, Ctrl-C or SIGTERM.
//
// The parts: flags.go reads the options; prepare.go decides the plan (CPUs,
// peers, the proxy binary) and starts the rig the scenarios share (PKI,
// stand-in API in api.go, the peer launcher in peers.go, the wrk runner in
// wrk.go, the profiler in profile.go); each scenario is a plain function
// over that rig (scenarios.go, wan.go, sparse.go, rotate.go, mitm.go); the
// report is meta.go, report.go and checks.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	// SIGPIPE is ignored, not caught: with stdout piped into head the runner
	// must not die at its next write and leave the peers running, and a
	// caught SIGPIPE would also fire for every peer that closes a socket
	// under a write (Go raises it for any descriptor once it is notified).
	// Writes then fail with EPIPE, and the run ends and cleans up normally.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err = run(ctx, opts)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "compare: interrupted; everything started was stopped")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// progress writes one line to stderr, stamped with the time since the run
// started.
type progressLog func(format string, args ...any)

// progressSince returns the progress writer of a run started at start.
func progressSince(start time.Time) progressLog {
	return func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
}

// run does the whole benchmark and prints the report to stdout; progress
// goes to stderr.
func run(ctx context.Context, opts options) (err error) {
	start := time.Now()
	say := progressSince(start)
	atStart := readMachineAtStart()
	dir, err := os.MkdirTemp("", "payrails-mtls-proxy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// nginx workers run as nobody and must reach the stand-in API's files;
	// 0711 lets them through without listing (keys are 0600 and read by
	// the master, which runs as the runner's user).
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	procs := &procSet{}
	defer procs.stopAll()
	p, r, err := prepare(ctx, opts, dir, say, procs)
	if err != nil {
		return err
	}
	say("estimated time: %s", p.estimate().Round(time.Second))
	rows, ran, err := runScenarios(ctx, r)
	if err != nil {
		return err
	}
	relateToWAN(rows)
	m := p.meta(ctx, atStart)
	m.TookTotal = time.Since(start).Round(time.Second).String()
	rep := report{Meta: m, Rows: rows, Checks: checkTargets(rows)}
	printReport(os.Stdout, rep, ran)
	if opts.jsonOut != "" {
		return writeJSON(opts.jsonOut, rep)
	}
	return nil
}

// runScenarios runs every scenario --scenarios names, in table order, and
// returns their rows and the scenarios that ran.
func runScenarios(ctx context.Context, r *rig) ([]row, []scenario, error) {
	var rows []row
	var ran []scenario
	for _, s := range allScenarios {
		if !slices.Contains(r.opts.scenarios, s.Name) {
			continue
		}
		r.progress("scenario %s: %s", s.Name, s.About)
		sr, err := s.run(ctx, r, s)
		if err != nil {
			return nil, nil, fmt.Errorf("scenario %s: %w", s.Name, err)
		}
		rows, ran = append(rows, sr...), append(ran, s)
	}
	return rows, ran, nil
}

// printReport writes the header, the table and the target lines to w.
func printReport(w io.Writer, rep report, ran []scenario) {
	fmt.Fprintln(w)
	printHeader(w, rep.Meta)
	fmt.Fprintln(w)
	printTable(w, ran, rep.Rows)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "targets (this proxy, both modes):")
	notRun := map[string]bool{}
	for _, l := range rep.Checks {
		if !slices.ContainsFunc(ran, func(s scenario) bool { return s.Name == l.Scenario }) {
			notRun[l.Scenario] = true
			continue
		}
		fmt.Fprintln(w, "  "+l.String())
	}
	if len(notRun) > 0 {
		var names []string
		for _, s := range allScenarios {
			if notRun[s.Name] {
				names = append(names, s.Name)
			}
		}
		fmt.Fprintf(w, "  (targets of %s not checked: not run)\n", strings.Join(names, ", "))
	}
	fmt.Fprintf(w, "\ntook %s\n", rep.Meta.TookTotal)
}

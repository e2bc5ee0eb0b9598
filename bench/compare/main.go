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
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	duration       time.Duration
	warmup         time.Duration
	runs           int
	scenarios      []string
	peers          []string
	requireAll     bool
	proxyBin       string
	repo           string
	jsonOut        string
	peerCPUs       string
	wanRTT         time.Duration
	wanRequests    int
	sparseRequests int // timed requests per sparse run and peer
	rotations      int // rotations (each with one timed request) per rotated run and peer
	upstreamH2     bool
	proxyBins      []labelledBin // --proxy-bins: several binaries of this proxy, side by side
	cpuProfiles    string        // --cpuprofile: a folder for this proxy's CPU profiles
}

// labelledBin is one binary of this proxy under a label of its own.
type labelledBin struct{ Label, Path string }

// bench is the state of one run, shared by the scenarios.
type bench struct {
	opts     options
	start    time.Time
	dir      string    // temporary folder for everything; removed at exit
	pki      *pkiFiles // the throwaway PKI
	cpus     cpuPlan
	proxyBin string
	api      string      // the stand-in API's address
	apiH2    string      // the stand-in offering HTTP/2, for the -h2 scenarios; "" when none runs
	peers    []peer      // selected peers whose tools are present
	skipped  []string    // peers not run, with the reason
	counters cpuCounters // /proc/stat at start, for the steal figure
	loadAvg  string      // 1-minute load average at start
}

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

func parseFlags(args []string) (options, error) {
	var o options
	var scenarios, peers string
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each measured wrk run (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "untimed wrk run per scenario and peer before the measured runs")
	fs.IntVar(&o.runs, "runs", 3, "measured runs per scenario and peer; the table shows medians")
	fs.StringVar(&scenarios, "scenarios", "all", "comma-separated scenarios: "+strings.Join(scenarioNames(), ","))
	fs.StringVar(&peers, "peers", "all", "comma-separated peers: "+strings.Join(peerNames(), ","))
	fs.BoolVar(&o.requireAll, "require-all", false, "fail instead of skipping a peer whose tool is missing")
	fs.StringVar(&o.proxyBin, "proxy-bin", "", "payrails-mtls-proxy binary (default: build it with scripts/build.sh)")
	fs.StringVar(&o.repo, "repo", "", "repository root, for scripts/build.sh (default: found from the working directory)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the raw results to this file")
	fs.StringVar(&o.peerCPUs, "peer-cpus", shapePinned, "CPUs for the peer under test: pinned (the last CPU, one worker: a sidecar with a 1-CPU limit; "+
		"wrk, the stand-in API and the runner get the rest), none (unpinned: everything shares every CPU), auto (the upper half) or a list such as 1 or 2-3")
	fs.DurationVar(&o.wanRTT, "wan-rtt", 20*time.Millisecond, "round-trip time the wan relay adds")
	fs.IntVar(&o.wanRequests, "wan-requests", 100, "timed sequential requests per wan run and client")
	fs.IntVar(&o.sparseRequests, "sparse-requests", 10, "timed requests per sparse run and peer, each "+sparseGap.String()+" after the previous")
	fs.IntVar(&o.rotations, "rotations", 10, "certificate rotations per rotated run and peer, each followed by one timed request")
	fs.BoolVar(&o.upstreamH2, "upstream-h2", false, "let the main stand-in API offer HTTP/2 too (the -h2 scenarios have their own that does)")
	var bins string
	fs.StringVar(&bins, "proxy-bins", "", "several binaries of this proxy side by side, LABEL=PATH,LABEL=PATH: each proxy row runs once per binary "+
		"(proxy-base@LABEL), alternating in every run (e.g. -pgo=off against the profile, or main against a branch)")
	fs.StringVar(&o.cpuProfiles, "cpuprofile", "", "folder for CPU profiles of this proxy, one per measured run (go tool pprof -proto merges them: scripts/pgo.sh)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := o.checkRanges(); err != nil {
		return o, err
	}
	var err error
	if o.proxyBins, err = parseBins(bins); err != nil {
		return o, err
	}
	if len(o.proxyBins) > 0 && o.proxyBin != "" {
		return o, fmt.Errorf("--proxy-bin and --proxy-bins: give one")
	}
	if o.cpuProfiles != "" {
		if o.cpuProfiles, err = filepath.Abs(o.cpuProfiles); err != nil {
			return o, err
		}
		if err := os.MkdirAll(o.cpuProfiles, 0o755); err != nil {
			return o, fmt.Errorf("--cpuprofile: %w", err)
		}
	}
	if o.scenarios, err = pickNames("--scenarios", scenarios, scenarioNames()); err != nil {
		return o, err
	}
	o.peers, err = pickNames("--peers", peers, peerNames())
	return o, err
}

// checkRanges refuses flag values out of their bounds.
func (o *options) checkRanges() error {
	switch {
	case o.duration < time.Second || o.duration > 10*time.Minute:
		return fmt.Errorf("--duration %s: want 1s to 10m", o.duration)
	case o.warmup < time.Second || o.warmup > time.Minute:
		return fmt.Errorf("--warmup %s: want 1s to 1m", o.warmup)
	case o.runs < 1 || o.runs > 50:
		return fmt.Errorf("--runs %d: want 1 to 50", o.runs)
	case o.wanRequests < 1 || o.wanRequests > 10000:
		return fmt.Errorf("--wan-requests %d: want 1 to 10000", o.wanRequests)
	case o.wanRTT < 0 || o.wanRTT > time.Second:
		return fmt.Errorf("--wan-rtt %s: want 0 to 1s", o.wanRTT)
	case o.sparseRequests < 1 || o.sparseRequests > 50:
		return fmt.Errorf("--sparse-requests %d: want 1 to 50", o.sparseRequests)
	case o.rotations < 1 || o.rotations > 50:
		return fmt.Errorf("--rotations %d: want 1 to 50", o.rotations)
	}
	return nil
}

// pickNames splits a comma list, "all" meaning every known name, and
// refuses unknown names.
func pickNames(flagName, list string, known []string) ([]string, error) {
	if list == "all" {
		return known, nil
	}
	var out []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("%s: unknown %q; known: %s", flagName, n, strings.Join(known, ","))
		}
		out = append(out, n)
	}
	return out, nil
}

func scenarioNames() []string {
	var n []string
	for _, s := range allScenarios {
		n = append(n, s.Name)
	}
	return n
}

func peerNames() []string {
	var n []string
	for _, p := range allPeers {
		n = append(n, p.Name)
	}
	return n
}

// run does the whole benchmark and prints the report to stdout; progress
// goes to stderr.
func run(ctx context.Context, opts options) (err error) {
	b := &bench{opts: opts, start: time.Now()}
	b.counters, _ = readCPUCounters() // zero when unreadable: no steal figure
	b.loadAvg = loadAverage()
	if b.dir, err = os.MkdirTemp("", "payrails-mtls-proxy-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	// nginx workers run as nobody and must reach the stand-in API's files;
	// 0711 lets them through without listing (keys are 0600 and read by
	// the master, which runs as the runner's user).
	if err := os.Chmod(b.dir, 0o711); err != nil {
		return err
	}
	procs := &procSet{}
	defer procs.stopAll()
	if err := b.prepare(ctx, procs); err != nil {
		return err
	}
	b.progress("estimated time: %s", b.estimate().Round(time.Second))
	var rows []row
	var ran []scenario
	for _, s := range allScenarios {
		if !slices.Contains(opts.scenarios, s.Name) {
			continue
		}
		b.progress("scenario %s: %s", s.Name, s.About)
		r, err := s.run(ctx, b, s)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.Name, err)
		}
		rows, ran = append(rows, r...), append(ran, s)
	}
	relateToWAN(rows)
	m := b.collectMeta(ctx)
	m.TookTotal = time.Since(b.start).Round(time.Second).String()
	rep := report{Meta: m, Rows: rows, Checks: checkTargets(rows)}
	b.print(rep, ran)
	if opts.jsonOut != "" {
		return writeJSON(opts.jsonOut, rep)
	}
	return nil
}

// print writes the header, the table and the target lines to stdout.
func (b *bench) print(rep report, ran []scenario) {
	fmt.Println()
	printHeader(os.Stdout, rep.Meta)
	fmt.Println()
	printTable(os.Stdout, ran, rep.Rows)
	fmt.Println()
	fmt.Println("targets (this proxy, both modes):")
	notRun := map[string]bool{}
	for _, l := range rep.Checks {
		if !slices.ContainsFunc(ran, func(s scenario) bool { return s.Name == l.Scenario }) {
			notRun[l.Scenario] = true
			continue
		}
		fmt.Println("  " + l.String())
	}
	if len(notRun) > 0 {
		var names []string
		for _, s := range allScenarios {
			if notRun[s.Name] {
				names = append(names, s.Name)
			}
		}
		fmt.Printf("  (targets of %s not checked: not run)\n", strings.Join(names, ", "))
	}
	fmt.Printf("\ntook %s\n", rep.Meta.TookTotal)
}

// progress writes one line to stderr, stamped with the time since start.
func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6s] %s\n", time.Since(b.start).Round(time.Second), fmt.Sprintf(format, args...))
}

// findRepo walks up from the working directory to the folder holding
// scripts/build.sh.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no scripts/build.sh above the working directory; pass --repo or --proxy-bin")
		}
		dir = parent
	}
}

// parseBins reads --proxy-bins: LABEL=PATH pairs, comma-separated, labels
// unique and made of letters, digits, '.', '_' and '-'.
func parseBins(list string) ([]labelledBin, error) {
	if list == "" {
		return nil, nil
	}
	var out []labelledBin
	seen := map[string]bool{}
	for _, item := range strings.Split(list, ",") {
		label, path, ok := strings.Cut(item, "=")
		if !ok || label == "" || path == "" || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
			return nil, fmt.Errorf("--proxy-bins %q: want LABEL=PATH,LABEL=PATH (labels of letters, digits, . _ -)", item)
		}
		if seen[label] {
			return nil, fmt.Errorf("--proxy-bins: label %q given twice", label)
		}
		seen[label] = true
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		out = append(out, labelledBin{Label: label, Path: abs})
	}
	return out, nil
}

package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

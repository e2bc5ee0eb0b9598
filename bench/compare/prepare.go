package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// installHint is how to install every tool the runner uses, on Debian 12.
const installHint = "apt-get install -y wrk nginx-light haproxy stunnel4 caddy"

// plan is what the run is, decided before anything starts: the options, the
// CPU split, the peers and this proxy's binary. The header describes it.
type plan struct {
	opts     options
	cpus     cpuPlan
	peers    []peer   // selected peers whose tools are present, in table order
	skipped  []string // peers not run, with the reason
	proxyBin string   // this proxy's binary; "" when no row runs it
}

// rig is what every scenario runs with: the options, the PKI, the running
// stand-in APIs and the tools that start peers, load them and profile
// them. startRig builds it once; a scenario uses it and changes no field.
type rig struct {
	opts     options
	progress progressLog
	dir      string    // the run's temporary folder
	pki      *pkiFiles // the throwaway PKI
	api      string    // the main stand-in API's address
	apiH2    string    // the stand-in offering HTTP/2, for the -h2 scenarios; "" when none runs
	standIns standInLauncher
	peers    *peerLauncher
	wrk      wrkRunner
	profiler *profiler
}

// prepare does everything before the first scenario: tools, CPU plan, the
// proxy binary, the PKI, the stand-in API (which joins procs) and the
// forward-mode wrk script check. dir is the run's temporary folder.
func prepare(ctx context.Context, opts options, dir string, progress progressLog, procs *procSet) (plan, *rig, error) {
	p, err := makePlan(ctx, opts, dir, progress)
	if err != nil {
		return p, nil, err
	}
	r, err := startRig(ctx, p, dir, progress, procs)
	return p, r, err
}

// makePlan splits the CPUs, checks the tools, selects the peers, finds or
// builds this proxy and then pins the runner to the load side's CPUs.
func makePlan(ctx context.Context, opts options, dir string, progress progressLog) (plan, error) {
	p := plan{opts: opts}
	allowed, err := allowedCPUs()
	if err != nil {
		return p, err
	}
	if p.cpus, err = planCPUs(opts.peerCPUs, allowed); err != nil {
		return p, err
	}
	need := []string{"wrk", "nginx"} // the load generator and the stand-in API
	if len(p.cpus.Peer) > 0 {
		need = append(need, "taskset")
	}
	for _, tool := range need {
		if _, err := exec.LookPath(tool); err != nil {
			return p, fmt.Errorf("%s is required (%s): %w", tool, installHint, err)
		}
	}
	if p.peers, p.skipped, err = selectPeers(opts, progress); err != nil {
		return p, err
	}
	if p.proxyBin, err = findProxy(ctx, opts, p.peers, dir, progress); err != nil {
		return p, err
	}
	if len(p.cpus.Load) > 0 { // after the build, which may use every CPU
		if err := pinSelf(p.cpus.Load); err != nil {
			return p, fmt.Errorf("pinning the runner to CPU %s: %w", cpuListString(p.cpus.Load), err)
		}
	}
	return p, nil
}

// startRig makes the PKI, starts the stand-in APIs (joining procs) and
// checks the forward-mode wrk script.
func startRig(ctx context.Context, p plan, dir string, progress progressLog, procs *procSet) (*rig, error) {
	r := &rig{opts: p.opts, progress: progress, dir: dir,
		wrk:      wrkRunner{dir: dir, cpus: p.cpus.Load, maxThreads: p.cpus.loadWorkers()},
		profiler: &profiler{dir: p.opts.cpuProfiles, progress: progress}}
	progress("generating the PKI (RSA-4096 client key)")
	var err error
	if r.pki, err = makePKI(dir); err != nil {
		return nil, fmt.Errorf("making the PKI: %w", err)
	}
	r.standIns = standInLauncher{dir: dir, pki: r.pki, cpus: p.cpus}
	r.peers = &peerLauncher{dir: dir, pki: r.pki, cpus: p.cpus, proxyBin: p.proxyBin,
		pprof: p.opts.cpuProfiles != "", peers: p.peers, progress: progress}
	if r.api, err = r.standIns.startMain(ctx, procs, p.opts.upstreamH2); err != nil {
		return nil, err
	}
	progress("stand-in API on %s; %s", r.api, p.cpus)
	if slices.ContainsFunc(allScenarios, func(s scenario) bool { return s.h2 && slices.Contains(p.opts.scenarios, s.Name) }) {
		h2, err := r.standIns.start(ctx, procs, "api-h2", 300*time.Second, false, true)
		if err != nil {
			return nil, err
		}
		r.apiH2 = h2.addr
		progress("stand-in API offering HTTP/2 on %s", r.apiH2)
	}
	return r, r.wrk.checkForwardScript(ctx)
}

// selectPeers returns the peers named by --peers whose tool is installed,
// and the skipped ones with the reason; a missing tool skips its peer, or
// fails the run with --require-all. With --proxy-bins each row of this
// proxy becomes one row per binary.
func selectPeers(opts options, progress progressLog) (peers []peer, skipped []string, err error) {
	for _, p := range allPeers {
		if !slices.Contains(opts.peers, p.Name) {
			continue
		}
		if p.Tool != "" {
			if _, err := exec.LookPath(p.Tool); err != nil {
				if opts.requireAll {
					return nil, nil, fmt.Errorf("peer %s needs %s, which is not installed (--require-all)", p.Name, p.Tool)
				}
				msg := fmt.Sprintf("%s: %s is not installed (%s)", p.Name, p.Tool, installHint)
				skipped = append(skipped, msg)
				progress("skipping %s", msg)
				continue
			}
		}
		if p.Tool == "" && len(opts.proxyBins) > 0 {
			for _, lb := range opts.proxyBins {
				q := p
				q.Name, q.bin = p.Name+"@"+lb.Label, lb.Path
				peers = append(peers, q)
			}
			continue
		}
		peers = append(peers, p)
	}
	if len(peers) == 0 {
		return nil, nil, fmt.Errorf("no peer to run")
	}
	return peers, skipped, nil
}

// findProxy returns this proxy's binary when one of peers runs it: the
// first of --proxy-bins, --proxy-bin, or the release binary built into dir
// with scripts/build.sh.
func findProxy(ctx context.Context, opts options, peers []peer, dir string, progress progressLog) (string, error) {
	if !slices.ContainsFunc(peers, func(p peer) bool { return p.Tool == "" }) {
		return "", nil
	}
	if len(opts.proxyBins) > 0 {
		return opts.proxyBins[0].Path, nil // the mitm scenario's (it runs one binary)
	}
	if opts.proxyBin != "" {
		return filepath.Abs(opts.proxyBin)
	}
	repo := opts.repo
	if repo == "" {
		var err error
		if repo, err = findRepo(); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(dir, "payrails-mtls-proxy")
	progress("building payrails-mtls-proxy with scripts/build.sh")
	_, err := runOnce(ctx, 10*time.Minute, nil, "env", "OUT="+bin, "bash",
		filepath.Join(repo, "scripts", "build.sh"), "bench")
	return bin, err
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

// estimate is the expected length of the run, printed at start.
func (p plan) estimate() time.Duration {
	var total time.Duration
	n := time.Duration(len(p.peers))
	runs := time.Duration(p.opts.runs)
	for _, s := range allScenarios {
		if !slices.Contains(p.opts.scenarios, s.Name) {
			continue
		}
		start := n * 2 * time.Second // each peer started and checked
		switch s.Name {
		case "wan":
			// A direct request costs about 3 RTT (TCP, TLS, HTTP) plus the
			// RSA-4096 signature; a pooled one about 1 RTT.
			per := time.Duration(p.opts.wanRequests+wanWarm) * p.opts.wanRTT
			total += runs * (3*per + 10*time.Millisecond*time.Duration(p.opts.wanRequests) + n*2*per)
		case "sparse": // the peers take turns within each gap
			total += start + runs*time.Duration(p.opts.sparseRequests)*(sparseGap+n*3*p.opts.wanRTT)
		case "rotated": // a second RSA-4096 key; then a reload and a request per rotation and peer
			total += 5*time.Second + start + runs*time.Duration(p.opts.rotations)*n*(100*time.Millisecond+5*p.opts.wanRTT)
		case "mitm": // this proxy only, two ways
			total += 2 * (2*time.Second + runs*p.opts.duration)
		default:
			total += n * (p.opts.warmup + time.Second + runs*(p.opts.duration+300*time.Millisecond))
		}
	}
	return total
}

package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// installHint is how to install every tool the runner uses, on Debian 12.
const installHint = "apt-get install -y wrk nginx-light haproxy stunnel4 caddy"

// prepare does everything before the first scenario: tools, CPU plan, the
// proxy binary, the PKI, the stand-in API (which joins procs) and the
// forward-mode wrk script check.
func (b *bench) prepare(ctx context.Context, procs *procSet) error {
	allowed, err := allowedCPUs()
	if err != nil {
		return err
	}
	if b.cpus, err = planCPUs(b.opts.peerCPUs, allowed); err != nil {
		return err
	}
	need := []string{"wrk", "nginx"} // the load generator and the stand-in API
	if len(b.cpus.Peer) > 0 {
		need = append(need, "taskset")
	}
	for _, tool := range need {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required (%s): %w", tool, installHint, err)
		}
	}
	if err := b.selectPeers(); err != nil {
		return err
	}
	if err := b.findProxy(ctx); err != nil {
		return err
	}
	if len(b.cpus.Load) > 0 { // after the build, which may use every CPU
		if err := pinSelf(b.cpus.Load); err != nil {
			return fmt.Errorf("pinning the runner to CPU %s: %w", cpuListString(b.cpus.Load), err)
		}
	}
	b.progress("generating the PKI (RSA-4096 client key)")
	if b.pki, err = makePKI(b.dir); err != nil {
		return fmt.Errorf("making the PKI: %w", err)
	}
	if b.api, err = b.startAPI(ctx, procs); err != nil {
		return err
	}
	b.progress("stand-in API on %s; %s", b.api, b.cpus)
	if slices.ContainsFunc(allScenarios, func(s scenario) bool { return s.h2 && slices.Contains(b.opts.scenarios, s.Name) }) {
		h2, err := b.startStandIn(ctx, procs, "api-h2", 300*time.Second, false, true)
		if err != nil {
			return err
		}
		b.apiH2 = h2.addr
		b.progress("stand-in API offering HTTP/2 on %s", b.apiH2)
	}
	return b.checkForwardScript(ctx)
}

// selectPeers keeps the peers named by --peers whose tool is installed;
// a missing tool skips its peer, or fails the run with --require-all.
func (b *bench) selectPeers() error {
	for _, p := range allPeers {
		if !slices.Contains(b.opts.peers, p.Name) {
			continue
		}
		if p.Tool != "" {
			if _, err := exec.LookPath(p.Tool); err != nil {
				if b.opts.requireAll {
					return fmt.Errorf("peer %s needs %s, which is not installed (--require-all)", p.Name, p.Tool)
				}
				msg := fmt.Sprintf("%s: %s is not installed (%s)", p.Name, p.Tool, installHint)
				b.skipped = append(b.skipped, msg)
				b.progress("skipping %s", msg)
				continue
			}
		}
		if p.Tool == "" && len(b.opts.proxyBins) > 0 {
			for _, lb := range b.opts.proxyBins {
				q := p
				q.Name, q.bin = p.Name+"@"+lb.Label, lb.Path
				b.peers = append(b.peers, q)
			}
			continue
		}
		b.peers = append(b.peers, p)
	}
	if len(b.peers) == 0 {
		return fmt.Errorf("no peer to run")
	}
	return nil
}

// findProxy uses --proxy-bin, or builds the release binary into the
// temporary folder with scripts/build.sh when this proxy is selected.
func (b *bench) findProxy(ctx context.Context) error {
	if !slices.ContainsFunc(b.peers, func(p peer) bool { return p.Tool == "" }) {
		return nil
	}
	if len(b.opts.proxyBins) > 0 {
		b.proxyBin = b.opts.proxyBins[0].Path // the mitm scenario's (it runs one binary)
		return nil
	}
	if b.opts.proxyBin != "" {
		abs, err := filepath.Abs(b.opts.proxyBin)
		b.proxyBin = abs
		return err
	}
	repo := b.opts.repo
	if repo == "" {
		var err error
		if repo, err = findRepo(); err != nil {
			return err
		}
	}
	b.proxyBin = filepath.Join(b.dir, "payrails-mtls-proxy")
	b.progress("building payrails-mtls-proxy with scripts/build.sh")
	_, err := runOnce(ctx, 10*time.Minute, nil, "env", "OUT="+b.proxyBin, "bash",
		filepath.Join(repo, "scripts", "build.sh"), "bench")
	return err
}

// estimate is the expected length of the run, printed at start.
func (b *bench) estimate() time.Duration {
	var total time.Duration
	n := time.Duration(len(b.peers))
	runs := time.Duration(b.opts.runs)
	for _, s := range allScenarios {
		if !slices.Contains(b.opts.scenarios, s.Name) {
			continue
		}
		start := n * 2 * time.Second // each peer started and checked
		switch s.Name {
		case "wan":
			// A direct request costs about 3 RTT (TCP, TLS, HTTP) plus the
			// RSA-4096 signature; a pooled one about 1 RTT.
			per := time.Duration(b.opts.wanRequests+wanWarm) * b.opts.wanRTT
			total += runs * (3*per + 10*time.Millisecond*time.Duration(b.opts.wanRequests) + n*2*per)
		case "sparse": // the peers take turns within each gap
			total += start + runs*time.Duration(b.opts.sparseRequests)*(sparseGap+n*3*b.opts.wanRTT)
		case "rotated": // a second RSA-4096 key; then a reload and a request per rotation and peer
			total += 5*time.Second + start + runs*time.Duration(b.opts.rotations)*n*(100*time.Millisecond+5*b.opts.wanRTT)
		case "mitm": // this proxy only, two ways
			total += 2 * (2*time.Second + runs*b.opts.duration)
		default:
			total += n * (b.opts.warmup + time.Second + runs*(b.opts.duration+300*time.Millisecond))
		}
	}
	return total
}

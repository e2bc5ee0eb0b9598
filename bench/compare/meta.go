package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// meta describes the machine and the tools of one run: the table's header.
type meta struct {
	Date      string   `json:"date"`
	NProc     int      `json:"nproc"`
	CPUModel  string   `json:"cpu_model"`
	Shape     string   `json:"shape"` // pinned or unpinned (custom: --peer-cpus auto or a list)
	CPUPlan   string   `json:"cpu_plan"`
	ProxyBin  string   `json:"proxy_binary,omitempty"` // --proxy-bin, or how it was built
	ProxySize int64    `json:"proxy_binary_bytes,omitempty"`
	Versions  []string `json:"versions"`
	Duration  string   `json:"duration_per_run"`
	Runs      int      `json:"runs"`
	WAN       string   `json:"wan"`
	Sparse    string   `json:"sparse"`
	Rotated   string   `json:"rotated"`
	Peers     []string `json:"peers"`   // one "name: what it is" line each
	Skipped   []string `json:"skipped"` // peers not run and why
	LoadAvg   string   `json:"load_average_at_start"`
	Steal     float64  `json:"steal_share"` // CPU time taken by the hypervisor during the run
	TookTotal string   `json:"took,omitempty"`
}

// machineAtStart is what the header compares with the end of the run: the
// CPU counters (for the steal figure) and the load average.
type machineAtStart struct {
	counters cpuCounters // /proc/stat; zero when unreadable: no steal figure
	loadAvg  string      // 1-minute load average
}

// readMachineAtStart reads the machine's state before anything starts.
func readMachineAtStart() machineAtStart {
	counters, _ := readCPUCounters()
	return machineAtStart{counters: counters, loadAvg: loadAverage()}
}

// meta gathers the header: date, CPUs, the plan and every tool's version.
func (p plan) meta(ctx context.Context, atStart machineAtStart) meta {
	o := p.opts
	m := meta{
		Date:     time.Now().Format(time.RFC3339),
		NProc:    runtime.NumCPU(),
		CPUModel: cpuModel(),
		Shape:    p.cpus.Shape,
		CPUPlan:  p.cpus.String(),
		ProxyBin: p.proxyBin,
		Duration: o.duration.String(),
		Runs:     o.runs,
		WAN: fmt.Sprintf("RTT %s through a delay relay, %d sequential requests per run, new connection per request",
			o.wanRTT, o.wanRequests),
		Sparse: fmt.Sprintf("wan relay, stand-in keep-alive timeout %s, %d requests per run and peer, each %s after the previous, "+
			"new client connection per request", shortKeepAlive, o.sparseRequests, sparseGap),
		Rotated: fmt.Sprintf("wan relay, stand-in keep-alive timeout %s, %d rotations per run and peer, "+
			"the first request after each timed", shortKeepAlive, o.rotations),
		Skipped: p.skipped,
		LoadAvg: atStart.loadAvg,
	}
	if st, err := os.Stat(p.proxyBin); p.proxyBin != "" && err == nil {
		m.ProxySize = st.Size()
		if o.proxyBin == "" {
			m.ProxyBin = "built with scripts/build.sh"
		}
	}
	if now, err := readCPUCounters(); err == nil {
		m.Steal = stealShare(atStart.counters, now)
	}
	for _, peer := range p.peers {
		m.Peers = append(m.Peers, peer.Name+": "+peer.About)
	}
	m.Versions = toolVersions(ctx, p.proxyBin)
	return m
}

// toolVersions is the version of every tool the run may use that is
// installed, this proxy's (proxyBin, when set) first and the runner's last.
func toolVersions(ctx context.Context, proxyBin string) []string {
	probes := [][]string{{"wrk", "-v"}, {"nginx", "-v"}, {"haproxy", "-v"}, {"stunnel4", "-version"}, {"caddy", "version"},
		{"openssl", "version"}}
	if proxyBin != "" {
		probes = append([][]string{{proxyBin, "version"}}, probes...)
	}
	var out []string
	for _, argv := range probes {
		if _, err := exec.LookPath(argv[0]); err != nil {
			continue
		}
		if v := toolVersion(ctx, argv...); v != "" {
			out = append(out, v)
		}
	}
	return append(out, "runner "+runtime.Version())
}

// toolVersion runs a version command and keeps the line that names the
// version (tools print it to stdout or stderr, some exit non-zero).
func toolVersion(ctx context.Context, argv ...string) string {
	out, _ := runOnce(ctx, 10*time.Second, nil, argv...)
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "nginx version: "):
			return strings.TrimPrefix(line, "nginx version: ")
		case strings.HasPrefix(line, "HAProxy version "):
			f := strings.Fields(line)
			return "haproxy " + f[2]
		case strings.HasPrefix(line, "stunnel ") && strings.Contains(line, " on "):
			return line[:strings.Index(line, " on ")]
		case strings.HasPrefix(line, "wrk "):
			return strings.Join(strings.Fields(line)[:2], " ")
		case strings.HasPrefix(line, "OpenSSL "), strings.HasPrefix(line, "payrails-mtls-proxy"):
			return line
		case argv[0] == "caddy" && line != "": // caddy version prints the bare version, "2.6.2" or "v2.7.6 h1:..."
			return "caddy " + strings.Fields(line)[0]
		}
	}
	return ""
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// printHeader writes the lines above the table.
func printHeader(w io.Writer, m meta) {
	fmt.Fprintf(w, "payrails-mtls-proxy side-by-side benchmark, %s\n", m.Date)
	fmt.Fprintf(w, "%s\n", m.CPUPlan)
	fmt.Fprintf(w, "machine: nproc %d, %s; load average at start %s; CPU steal during the run %.1f%%\n",
		m.NProc, m.CPUModel, m.LoadAvg, 100*m.Steal)
	fmt.Fprintf(w, "tools: %s\n", strings.Join(m.Versions, "; "))
	if m.ProxyBin != "" {
		fmt.Fprintf(w, "proxy binary: %s, %.1f MiB (%d bytes)\n", m.ProxyBin, float64(m.ProxySize)/(1<<20), m.ProxySize)
	}
	fmt.Fprintf(w, "runs: %d × %s per scenario and peer, medians shown\n", m.Runs, m.Duration)
	fmt.Fprintf(w, "wan: %s\nsparse: %s\nrotated: %s\n", m.WAN, m.Sparse, m.Rotated)
	for _, p := range m.Peers {
		fmt.Fprintf(w, "  %s\n", p)
	}
	for _, s := range m.Skipped {
		fmt.Fprintf(w, "  skipped %s\n", s)
	}
	fmt.Fprintln(w, "×best = value / best of nginx, haproxy, stunnel, caddy in that scenario "+
		"(req/s, MiB/s: higher is better; latency, CPU, memory: lower is better); "+
		"anon/file MiB = sampled peak RssAnon/RssFile over the peer's processes; p50 ×wan = p50 / the same peer's wan p50")
}

// loadAverage is the 1-minute load average from /proc/loadavg: a busy
// machine at start makes every figure noisier.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

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
	CPUPlan   string   `json:"cpu_plan"`
	Versions  []string `json:"versions"`
	Duration  string   `json:"duration_per_run"`
	Runs      int      `json:"runs"`
	WAN       string   `json:"wan"`
	Peers     []string `json:"peers"`   // one "name: what it is" line each
	Skipped   []string `json:"skipped"` // peers not run and why
	LoadAvg   string   `json:"load_average_at_start"`
	Steal     float64  `json:"steal_share"` // CPU time taken by the hypervisor during the run
	TookTotal string   `json:"took,omitempty"`
}

// collectMeta gathers the header: date, CPUs and every tool's version.
func (b *bench) collectMeta(ctx context.Context) meta {
	m := meta{
		Date:     time.Now().Format(time.RFC3339),
		NProc:    runtime.NumCPU(),
		CPUModel: cpuModel(),
		CPUPlan:  b.cpus.String(),
		Duration: b.opts.duration.String(),
		Runs:     b.opts.runs,
		WAN: fmt.Sprintf("RTT %s through a delay relay, %d sequential requests per run, new connection per request",
			b.opts.wanRTT, b.opts.wanRequests),
		Skipped: b.skipped,
		LoadAvg: b.loadAvg,
	}
	if now, err := readCPUCounters(); err == nil {
		m.Steal = stealShare(b.counters, now)
	}
	for _, p := range b.peers {
		m.Peers = append(m.Peers, p.Name+": "+p.About)
	}
	probes := [][]string{{"wrk", "-v"}, {"nginx", "-v"}, {"haproxy", "-v"}, {"stunnel4", "-version"}, {"openssl", "version"}}
	if b.proxyBin != "" {
		probes = append([][]string{{b.proxyBin, "version"}}, probes...)
	}
	for _, argv := range probes {
		if _, err := exec.LookPath(argv[0]); err != nil {
			continue
		}
		if v := toolVersion(ctx, argv...); v != "" {
			m.Versions = append(m.Versions, v)
		}
	}
	m.Versions = append(m.Versions, "runner "+runtime.Version())
	return m
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
	fmt.Fprintf(w, "machine: nproc %d, %s; %s; load average at start %s; CPU steal during the run %.1f%%\n",
		m.NProc, m.CPUModel, m.CPUPlan, m.LoadAvg, 100*m.Steal)
	fmt.Fprintf(w, "tools: %s\n", strings.Join(m.Versions, "; "))
	fmt.Fprintf(w, "runs: %d × %s per scenario and peer, medians shown; wan: %s\n", m.Runs, m.Duration, m.WAN)
	for _, p := range m.Peers {
		fmt.Fprintf(w, "  %s\n", p)
	}
	for _, s := range m.Skipped {
		fmt.Fprintf(w, "  skipped %s\n", s)
	}
	fmt.Fprintln(w, "×best = value / best of nginx, haproxy, stunnel in that scenario "+
		"(req/s, MiB/s: higher is better; latency, CPU, RSS: lower is better)")
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

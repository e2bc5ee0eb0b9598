package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// scenario is one workload, run through every selected peer. A scenario
// with its own kind of client (such as the planned "mitm": this proxy
// reached through HTTPS_PROXY/CONNECT with a local CA) adds an entry with
// its own run function and, if it needs one, its own peer.
type scenario struct {
	Name    string
	About   string
	Metrics []metric // the table's columns for this scenario, in order
	job     wrkJob   // the load, for wrk scenarios (Duration comes from --duration)
	run     func(ctx context.Context, b *bench, s scenario) ([]row, error)
	// h2 runs the scenario against the stand-in offering HTTP/2, the shape
	// of API edges that negotiate it: this proxy and Caddy then speak
	// HTTP/2 to it; nginx, HAProxy and stunnel keep HTTP/1.1.
	h2 bool
}

// allScenarios is every scenario, in run and table order.
var allScenarios = []scenario{
	{Name: "c1", About: "1 connection, keep-alive, GET /small (~200 B JSON)",
		Metrics: []metric{mRate, mP50, mP99, mCPU, mAnon, mFile}, job: wrkJob{Conns: 1, Path: "/small"}, run: runWrkScenario},
	{Name: "c64", About: "64 connections, keep-alive, GET /small",
		Metrics: []metric{mRate, mP50, mP99, mCPU, mAnon, mFile}, job: wrkJob{Conns: 64, Path: "/small"}, run: runWrkScenario},
	{Name: "close", About: "16 connections, Connection: close on every request, GET /small",
		Metrics: []metric{mRate, mP50, mP99, mCPU, mAnon, mFile}, job: wrkJob{Conns: 16, Path: "/small", Close: true}, run: runWrkScenario},
	{Name: "big", About: "8 connections, keep-alive, GET /big (1 MiB)",
		Metrics: []metric{mMiBps, mP50, mP99, mCPU, mAnon, mFile}, job: wrkJob{Conns: 8, Path: "/big"}, run: runWrkScenario},
	{Name: "c1-h2", About: "c1, the stand-in offering HTTP/2 (what production most likely runs: this proxy and Caddy speak it)",
		Metrics: []metric{mRate, mP50, mP99, mCPU, mAnon, mFile}, job: wrkJob{Conns: 1, Path: "/small"}, run: runWrkScenario, h2: true},
	{Name: "c64-h2", About: "c64, the stand-in offering HTTP/2",
		Metrics: []metric{mRate, mP50, mP99, mCPU, mAnon, mFile}, job: wrkJob{Conns: 64, Path: "/small"}, run: runWrkScenario, h2: true},
	{Name: "close-h2", About: "close, the stand-in offering HTTP/2",
		Metrics: []metric{mRate, mP50, mP99, mCPU, mAnon, mFile}, job: wrkJob{Conns: 16, Path: "/small", Close: true}, run: runWrkScenario, h2: true},
	{Name: "big-h2", About: "big, the stand-in offering HTTP/2",
		Metrics: []metric{mMiBps, mP50, mP99, mCPU, mAnon, mFile}, job: wrkJob{Conns: 8, Path: "/big"}, run: runWrkScenario, h2: true},
	{Name: "wan", About: "sequential legacy client, new connection per request, upstream behind a delay relay",
		Metrics: []metric{mP50, mP99}, run: runWAN},
	{Name: "sparse", About: "wan, one request every " + sparseGap.String() + " (beyond the stand-in's " +
		shortKeepAlive.String() + " keep-alive timeout: the server has closed every pooled connection)",
		Metrics: []metric{mP50, mP99, mVsWAN}, run: runSparse},
	{Name: "rotated", About: "wan, the first request after each certificate rotation (this proxy: a new pair in its folder; " +
		"the others: new files and a reload)", Metrics: []metric{mP50, mP99, mVsWAN}, run: runRotated},
	{Name: "mitm", About: "16 keep-alive Go clients through this proxy: https:// via CONNECT (connect: mitm) vs http:// forward mode",
		Metrics: []metric{mRate, mP50, mP99, mCPU}, run: runMITM},
}

// row is the results of one peer in one scenario.
type row struct {
	Scenario string    `json:"scenario"`
	Peer     string    `json:"peer"`
	Ref      bool      `json:"reference"` // nginx, haproxy, stunnel
	Runs     []figures `json:"runs"`
	Median   figures   `json:"median"`
	Err      string    `json:"error,omitempty"`
}

// figures are the measurements of one run, or their medians; zero means
// not measured.
type figures struct {
	ReqPerSec float64 `json:"req_per_s,omitempty"`
	P50ms     float64 `json:"p50_ms,omitempty"`
	P99ms     float64 `json:"p99_ms,omitempty"`
	MiBps     float64 `json:"mib_per_s,omitempty"`
	CPUms1k   float64 `json:"cpu_ms_per_1k_req,omitempty"`
	// The memory figures are per scenario, in the median only: AnonMiB and
	// FileMiB are the sampled peaks of RssAnon and RssFile summed over the
	// peer's processes, RSSMiB the sum of their VmHWM at the end.
	AnonMiB float64 `json:"peak_anon_mib,omitempty"`
	FileMiB float64 `json:"peak_file_mib,omitempty"`
	RSSMiB  float64 `json:"peak_rss_mib,omitempty"`
	// P50vsWAN is P50ms over the same peer's steady-state wan p50 (sparse
	// and rotated, in the median only).
	P50vsWAN float64 `json:"p50_vs_wan,omitempty"`
	// ReloadMs is how long the peer took from the certificate drop until
	// its reload was seen complete (rotated).
	ReloadMs float64 `json:"reload_ms,omitempty"`
	// PeerCores is the peer's CPU time over the wall time of the run: near
	// the number of workers, the peer was the bottleneck.
	PeerCores float64 `json:"peer_cores_busy,omitempty"`
	Requests  int64   `json:"requests,omitempty"`
	Errors    int64   `json:"errors,omitempty"` // socket errors and non-2xx answers
}

// runWrkScenario starts every selected peer afresh (so peak memory belongs
// to this scenario), samples their memory, warms each up, then runs s.job --runs times through each,
// rotating the order every run so that no peer always goes first.
func runWrkScenario(ctx context.Context, b *bench, s scenario) ([]row, error) {
	procs := &procSet{}
	defer procs.stopAll()
	api := b.api
	if s.h2 {
		api = b.apiH2
	}
	ins, rows := b.startPeers(ctx, procs, s.Name, api)
	mem := sampleMemory(ins)
	if err := ctx.Err(); err != nil {
		mem.record(rows)
		return nil, err
	}
	b.warmUp(ctx, ins, rows, s.job)
	job := s.job
	job.Duration = b.opts.duration
	for run := 0; run < b.opts.runs; run++ {
		for k := range ins {
			i := (run + k) % len(ins)
			if ins[i] == nil {
				continue
			}
			f, err := b.measure(ctx, ins[i], job)
			if err := ctx.Err(); err != nil {
				mem.record(rows)
				return nil, err
			}
			if err != nil {
				rows[i].Err, ins[i] = err.Error(), nil
				continue
			}
			rows[i].Runs = append(rows[i].Runs, f)
			b.progress("%s run %d/%d %-10s %s", s.Name, run+1, b.opts.runs, ins[i].Name, f.summary())
		}
	}
	for i := range rows {
		rows[i].Median = medianOf(rows[i].Runs)
	}
	mem.record(rows)
	for i, in := range ins {
		if in != nil {
			rss, err := groupPeakRSS(in.proc.pgid())
			if err != nil {
				rows[i].Err = "peak RSS: " + err.Error()
			}
			rows[i].Median.RSSMiB = float64(rss) / (1 << 20)
		}
	}
	return rows, nil
}

// warmUp runs job for --warmup through every peer still in ins, so that
// pools are full and code is paged in before anything is measured. A peer
// that fails is dropped from ins with the error on its row.
func (b *bench) warmUp(ctx context.Context, ins []*instance, rows []row, job wrkJob) {
	job.Duration = b.opts.warmup
	for i, in := range ins {
		if in == nil || ctx.Err() != nil {
			continue
		}
		if _, err := b.runWrk(ctx, in, job); err != nil {
			rows[i].Err, ins[i] = "warm-up: "+err.Error(), nil
		}
	}
}

// startPeers starts every selected peer with api as upstream. It returns
// one instance per peer (nil when it failed to start) and one row per peer
// (with the error when it failed).
func (b *bench) startPeers(ctx context.Context, procs *procSet, scenario, api string) ([]*instance, []row) {
	ins := make([]*instance, len(b.peers))
	rows := make([]row, len(b.peers))
	for i, p := range b.peers {
		rows[i] = row{Scenario: scenario, Peer: p.Name, Ref: p.Ref}
		in, err := b.startPeer(ctx, procs, p, api)
		if err != nil {
			rows[i].Err = "start: " + err.Error()
			b.progress("%s %s: %v", scenario, p.Name, err)
			continue
		}
		ins[i] = in
	}
	return ins, rows
}

// measure runs one wrk job against in and reads the CPU its process group
// used meanwhile.
func (b *bench) measure(ctx context.Context, in *instance, j wrkJob) (figures, error) {
	before, err := groupCPU(in.proc.pgid())
	if err != nil {
		return figures{}, err
	}
	start := time.Now()
	stopProfile := b.profile(ctx, in, j.Duration)
	res, err := b.runWrk(ctx, in, j)
	stopProfile()
	if err != nil {
		return figures{}, err
	}
	after, err := groupCPU(in.proc.pgid())
	if err != nil {
		return figures{}, err
	}
	f := figures{ReqPerSec: res.ReqPerSec, P50ms: ms(res.P50), P99ms: ms(res.P99),
		MiBps: res.BytesPerSec / (1 << 20), Requests: res.Requests, Errors: res.SocketErrors + res.Non2xx,
		PeerCores: float64(after-before) / float64(time.Since(start))}
	if res.Requests > 0 {
		f.CPUms1k = ms(after-before) / float64(res.Requests) * 1000
	}
	return f, nil
}

// summary is one progress line's worth of f.
func (f figures) summary() string {
	s := fmt.Sprintf("%8.0f req/s  p50 %6.3f ms  p99 %7.3f ms  %7.1f MiB/s  cpu %6.1f ms/1k  %.2f cores busy",
		f.ReqPerSec, f.P50ms, f.P99ms, f.MiBps, f.CPUms1k, f.PeerCores)
	if f.Errors > 0 {
		s += fmt.Sprintf("  %d ERRORS", f.Errors)
	}
	return s
}

// medianOf returns the per-field median of runs; counts are summed.
func medianOf(runs []figures) figures {
	if len(runs) == 0 {
		return figures{}
	}
	pick := func(get func(figures) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		return median(v)
	}
	m := figures{
		ReqPerSec: pick(func(f figures) float64 { return f.ReqPerSec }),
		ReloadMs:  pick(func(f figures) float64 { return f.ReloadMs }),
		P50ms:     pick(func(f figures) float64 { return f.P50ms }),
		P99ms:     pick(func(f figures) float64 { return f.P99ms }),
		MiBps:     pick(func(f figures) float64 { return f.MiBps }),
		CPUms1k:   pick(func(f figures) float64 { return f.CPUms1k }),
		PeerCores: pick(func(f figures) float64 { return f.PeerCores }),
	}
	for _, r := range runs {
		m.Requests += r.Requests
		m.Errors += r.Errors
	}
	return m
}

// median returns the middle value of v (the mean of the two middle ones
// for an even count). v is reordered.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/delayrelay"
)

// sparseGap is the pause, through one peer, between the end of a sparse
// request and the start of the next: beyond the stand-in's keep-alive
// timeout by more than the relay's round trip, so that the server has
// closed every pooled upstream connection when the next request comes.
const sparseGap = shortKeepAlive + 500*time.Millisecond

// runBound is the wall-clock bound of one run of sparse or rotated: a peer
// still waiting when it passes gets an error on its row.
const runBound = 2 * time.Minute

// latencyPeer is one peer of sparse or rotated with its client and the
// latencies of the current run.
type latencyPeer struct {
	in     *instance
	client *http.Client
	lat    []time.Duration
	extra  []time.Duration // rotated: time from the drop to the completed reload
}

// startLatencyPeers starts the stand-in with the short keep-alive timeout
// and a request log, the delay relay in front of it, and every peer behind
// that; each peer then sends one untimed request, so that every one has
// had an upstream connection. It returns the peers (nil where one failed),
// their rows, the stand-in and stop: it ends the memory sampling (writing
// the peaks into the rows' medians, so call it after they are computed)
// and the relay; it may be called more than once.
func (b *bench) startLatencyPeers(ctx context.Context, procs *procSet, s scenario) ([]*latencyPeer, []row, standIn, func(), error) {
	api, err := b.startStandIn(ctx, procs, "api-"+s.Name, shortKeepAlive, true, b.opts.upstreamH2)
	if err != nil {
		return nil, nil, standIn{}, nil, err
	}
	relay, err := delayrelay.Start(api.addr, b.opts.wanRTT/2)
	if err != nil {
		return nil, nil, standIn{}, nil, fmt.Errorf("starting the delay relay: %w", err)
	}
	ins, rows := b.startPeers(ctx, procs, s.Name, relay.Addr())
	mem := sampleMemory(ins)
	peers := make([]*latencyPeer, len(ins))
	for i, in := range ins {
		if in == nil {
			continue
		}
		p := &latencyPeer{in: in, client: in.client(false)}
		if err := getOK(ctx, p.client, in.url("/small")); err != nil {
			rows[i].Err = "first request: " + err.Error()
			continue
		}
		peers[i] = p
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			mem.record(rows)
			relay.Close()
		})
	}
	return peers, rows, api, stop, ctx.Err()
}

// endRun appends one run's figures to each peer's row and clears the
// latencies for the next run.
func (b *bench) endRun(s scenario, run int, peers []*latencyPeer, rows []row) {
	for i, p := range peers {
		if p == nil || len(p.lat) == 0 {
			continue
		}
		f := figures{P50ms: ms(percentile(p.lat, 50)), P99ms: ms(percentile(p.lat, 99)), Requests: int64(len(p.lat))}
		line := fmt.Sprintf("p50 %6.1f ms  p99 %6.1f ms", f.P50ms, f.P99ms)
		if len(p.extra) > 0 {
			f.ReloadMs = ms(percentile(p.extra, 50))
			line += fmt.Sprintf("  reload p50 %6.1f ms", f.ReloadMs)
		}
		rows[i].Runs = append(rows[i].Runs, f)
		b.progress("%s run %d/%d %-10s %s", s.Name, run+1, b.opts.runs, rows[i].Peer, line)
		p.lat, p.extra = p.lat[:0], p.extra[:0]
	}
}

// failLate marks every peer still running as failed by the run's
// wall-clock bound and drops it.
func failLate(peers []*latencyPeer, rows []row) {
	for i, p := range peers {
		if p != nil {
			rows[i].Err = fmt.Sprintf("run did not finish within %s", runBound)
			peers[i] = nil
		}
	}
}

// runSparse is a low-traffic legacy service: one request at a time, each
// on a new client connection (as in wan), spaced sparseGap apart through
// each peer, so that the server has closed the peer's pooled upstream
// connection before each request. A peer that keeps no connection warm
// pays TCP + TLS again, every time. The peers take turns, so one run of
// --sparse-requests requests per peer takes about that many gaps.
func runSparse(ctx context.Context, b *bench, s scenario) ([]row, error) {
	procs := &procSet{}
	defer procs.stopAll()
	peers, rows, _, stop, err := b.startLatencyPeers(ctx, procs, s)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return nil, err
	}
	last := make([]time.Time, len(peers))
	for i := range last {
		last[i] = time.Now()
	}
	for run := 0; run < b.opts.runs; run++ {
		deadline := time.Now().Add(runBound)
		for k := 0; k < b.opts.sparseRequests; k++ {
			for j := range peers {
				i := (k + j) % len(peers)
				p := peers[i]
				if p == nil {
					continue
				}
				if time.Now().After(deadline) {
					failLate(peers, rows)
					break
				}
				if err := waitUntil(ctx, last[i].Add(sparseGap)); err != nil {
					return nil, err
				}
				start := time.Now()
				err := getOK(ctx, p.client, p.in.url("/small"))
				last[i] = time.Now()
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if err != nil {
					rows[i].Err, peers[i] = err.Error(), nil
					continue
				}
				p.lat = append(p.lat, last[i].Sub(start))
			}
		}
		b.endRun(s, run, peers, rows)
	}
	for i := range rows {
		rows[i].Median = medianOf(rows[i].Runs)
	}
	stop()
	return rows, nil
}

// waitUntil returns at t, or with ctx's error if it ends first.
func waitUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

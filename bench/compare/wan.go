package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/delayrelay"
)

// directName is the wan row of the client that talks to the API itself.
const directName = "direct-mtls"

// wanWarm requests per run and target are sent before timing starts, so a
// pooling peer has its upstream connection when the timed requests begin.
const wanWarm = 3

// wanTarget is one way of sending the wan requests.
type wanTarget struct {
	client *http.Client
	url    string
}

// runWAN compares a legacy client that opens a new mTLS connection to the
// API for every request (what curl --cert does per call) with the same
// client sending plain HTTP through each peer, again on a new connection
// per request. Every connection to the API crosses the delay relay, so a
// handshake costs round trips; a peer that pools upstream connections
// saves them.
func runWAN(ctx context.Context, r *rig, s scenario) ([]row, error) {
	relay, err := delayrelay.Start(r.api, r.opts.wanRTT/2)
	if err != nil {
		return nil, fmt.Errorf("starting the delay relay: %w", err)
	}
	defer relay.Close()
	procs := &procSet{}
	defer procs.stopAll()
	ins, peerRows := r.peers.startAll(ctx, procs, s.Name, relay.Addr())
	rows := append([]row{{Scenario: s.Name, Peer: directName}}, peerRows...)
	targets := []wanTarget{{client: directClient(r.pki, relay.Addr()), url: "https://" + apiHost + "/small"}}
	for _, in := range ins {
		if in == nil {
			targets = append(targets, wanTarget{})
			continue
		}
		targets = append(targets, wanTarget{client: in.client(false), url: in.url("/small")})
	}
	for run := 0; run < r.opts.runs; run++ {
		for i, t := range targets {
			if t.client == nil {
				continue
			}
			lat, err := timeRequests(ctx, t.client, t.url, r.opts.wanRequests)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err != nil {
				rows[i].Err, targets[i].client = err.Error(), nil
				continue
			}
			f := figures{P50ms: ms(percentile(lat, 50)), P99ms: ms(percentile(lat, 99)), Requests: int64(len(lat))}
			rows[i].Runs = append(rows[i].Runs, f)
			r.progress("%s run %d/%d %-11s p50 %6.1f ms  p99 %6.1f ms", s.Name, run+1, r.opts.runs, rows[i].Peer, f.P50ms, f.P99ms)
		}
	}
	for i := range rows {
		rows[i].Median = medianOf(rows[i].Runs)
	}
	return rows, nil
}

// directClient is the legacy client calling the API itself: a full mTLS
// handshake with the RSA-4096 key on a new connection for every request,
// no session resumption (a new curl process per call has no cache). It
// presents p's client certificate and dials relay for every connection.
func directClient(p *pkiFiles, relay string) *http.Client {
	var d net.Dialer
	tr := &http.Transport{
		DisableKeepAlives:  true,
		DisableCompression: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", relay)
		},
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			ServerName:   apiHost,
			RootCAs:      p.Roots,
			Certificates: []tls.Certificate{p.Client},
		},
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// timeRequests sends wanWarm untimed requests, then n timed ones, one after
// the other, each read to the end; any answer but 200 is an error.
func timeRequests(ctx context.Context, c *http.Client, url string, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for i := 0; i < wanWarm+n; i++ {
		start := time.Now()
		if err := getOK(ctx, c, url); err != nil {
			return nil, err
		}
		if i >= wanWarm {
			lat = append(lat, time.Since(start))
		}
	}
	return lat, nil
}

// getOK GETs url, reads the body and wants 200.
func getOK(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("GET %s: reading body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// percentile returns the nearest-rank p-th percentile of d (d is not
// modified).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank-1, 0), len(s)-1)]
}

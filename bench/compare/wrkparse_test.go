package main

import (
	"testing"
	"time"
)

// Reports printed by wrk debian/4.1.0-3+b2 on this project's bench machine.
const (
	wrkSmall = `Running 1s test @ http://127.0.0.1:18099/small
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   138.24us  242.24us   4.66ms   97.18%
    Req/Sec     8.96k     2.39k   14.11k    81.82%
  Latency Distribution
     50%  102.00us
     75%  121.00us
     90%  175.00us
     99%    0.85ms
  9797 requests in 1.10s, 2.27MB read
Requests/sec:   8908.45
Transfer/sec:      2.06MB
`
	wrkBig = `Running 1s test @ http://127.0.0.1:18099/big
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.51ms  671.30us   7.21ms   79.18%
    Req/Sec     2.22k   141.20     2.46k    72.73%
  Latency Distribution
     50%    3.63ms
     75%    3.87ms
     90%    4.09ms
     99%    4.83ms
  2430 requests in 1.10s, 2.37GB read
Requests/sec:   2209.73
Transfer/sec:      2.16GB
`
	wrk404 = `Running 1s test @ http://127.0.0.1:18099/missing
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    58.98us  108.67us   3.13ms   99.18%
    Req/Sec    73.86k    15.27k   91.46k    63.64%
  Latency Distribution
     50%   41.00us
     75%   61.00us
     90%   80.00us
     99%  153.00us
  80588 requests in 1.10s, 23.67MB read
  Non-2xx or 3xx responses: 80588
Requests/sec:  73303.87
Transfer/sec:     21.53MB
`
	wrkNoLatency = `Running 1s test @ http://127.0.0.1:18099/small
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    94.77us   77.28us   2.48ms   99.10%
    Req/Sec    10.75k     2.81k   18.58k    90.91%
  11750 requests in 1.10s, 2.72MB read
Requests/sec:  10686.34
Transfer/sec:      2.48MB
`
	wrkStalled = `Running 2s test @ http://127.0.0.1:18099/big
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 2.01s, 1.63MB read
Requests/sec:      0.00
Transfer/sec:    830.03KB
`
	// The "Socket errors" line as src/wrk.c prints it (printf "  Socket
	// errors: connect %d, read %d, write %d, timeout %d").
	wrkSocketErrors = `Running 5s test @ http://127.0.0.1:40000/small
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52s   400.00ms   1.99s    60.00%
    Req/Sec    12.00      5.00     20.00     70.00%
  Latency Distribution
     50%    1.50s
     75%    1.80s
     90%    1.90s
     99%    1.99s
  60 requests in 5.00s, 14.06KB read
  Socket errors: connect 2, read 3, write 0, timeout 40
Requests/sec:     12.00
Transfer/sec:      2.81KB
`
)

func TestParseWrk(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		out  string
		want wrkResult
	}{
		{"small", wrkSmall, wrkResult{Requests: 9797, Elapsed: 1100 * time.Millisecond, ReqPerSec: 8908.45,
			BytesPerSec: 2.06 * mib, P50: 102 * time.Microsecond, P99: 850 * time.Microsecond}},
		{"big", wrkBig, wrkResult{Requests: 2430, Elapsed: 1100 * time.Millisecond, ReqPerSec: 2209.73,
			BytesPerSec: 2.16 * 1024 * mib, P50: 3630 * time.Microsecond, P99: 4830 * time.Microsecond}},
		{"non-2xx", wrk404, wrkResult{Requests: 80588, Elapsed: 1100 * time.Millisecond, ReqPerSec: 73303.87,
			BytesPerSec: 21.53 * mib, P50: 41 * time.Microsecond, P99: 153 * time.Microsecond, Non2xx: 80588}},
		{"no --latency", wrkNoLatency, wrkResult{Requests: 11750, Elapsed: 1100 * time.Millisecond,
			ReqPerSec: 10686.34, BytesPerSec: 2.48 * mib}},
		{"stalled", wrkStalled, wrkResult{Elapsed: 2010 * time.Millisecond, BytesPerSec: 830.03 * 1024}},
		{"socket errors", wrkSocketErrors, wrkResult{Requests: 60, Elapsed: 5 * time.Second, ReqPerSec: 12,
			BytesPerSec: 2.81 * 1024, P50: 1500 * time.Millisecond, P99: 1990 * time.Millisecond, SocketErrors: 45}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if err != nil {
				t.Fatalf("parseWrk: %v", err)
			}
			if !closeEnough(got.BytesPerSec, tt.want.BytesPerSec) || !closeEnough(got.ReqPerSec, tt.want.ReqPerSec) {
				t.Errorf("rates: got %.2f req/s, %.2f B/s; want %.2f, %.2f", got.ReqPerSec, got.BytesPerSec,
					tt.want.ReqPerSec, tt.want.BytesPerSec)
			}
			got.BytesPerSec, got.ReqPerSec = tt.want.BytesPerSec, tt.want.ReqPerSec
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseWrkRefusesGarbage(t *testing.T) {
	for _, out := range []string{
		"",
		"unable to connect to 127.0.0.1:18098 Connection refused\n",
		"  10 requests in 1.00s, 2.00MB read\nRequests/sec: 10.00\n", // no Transfer/sec
		"  10 requests in 1.00q, 2.00MB read\nRequests/sec: 10.00\nTransfer/sec: 2.00MB\n",
	} {
		if got, err := parseWrk(out); err == nil {
			t.Errorf("parseWrk(%q) = %+v, want an error", out, got)
		}
	}
}

func TestParseWrkUnits(t *testing.T) {
	times := map[string]time.Duration{
		"95.12us": 95120 * time.Nanosecond, "1.02ms": 1020 * time.Microsecond, "5.00s": 5 * time.Second,
		"1.50m": 90 * time.Second, "0.00us": 0,
	}
	for in, want := range times {
		if got, err := parseWrkTime(in); err != nil || got != want {
			t.Errorf("parseWrkTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	sizes := map[string]float64{"512.00B": 512, "1.00KB": 1024, "2.00MB": 2 << 20, "1.00GB": 1 << 30}
	for in, want := range sizes {
		if got, err := parseWrkBytes(in); err != nil || got != want {
			t.Errorf("parseWrkBytes(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"ms", "1.0", "1.0xs"} {
		if _, err := parseWrkTime(bad); err == nil {
			t.Errorf("parseWrkTime(%q): want an error", bad)
		}
	}
	for _, bad := range []string{"B", "1.0", "1.0XB", "MB"} {
		if _, err := parseWrkBytes(bad); err == nil {
			t.Errorf("parseWrkBytes(%q): want an error", bad)
		}
	}
}

func closeEnough(a, b float64) bool {
	d := a - b
	return d < 1e-6*max(1, b) && -d < 1e-6*max(1, b)
}

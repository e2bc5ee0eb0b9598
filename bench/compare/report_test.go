package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheckTargets(t *testing.T) {
	rows := []row{
		{Scenario: "c64", Peer: "nginx", Ref: true, Median: figures{ReqPerSec: 30000, CPUms1k: 20}},
		{Scenario: "c64", Peer: "caddy", Ref: true, Median: figures{ReqPerSec: 20000, CPUms1k: 30}},
		{Scenario: "c64", Peer: "proxy-base", Median: figures{ReqPerSec: 19900, CPUms1k: 35, AnonMiB: 11.5}},
		{Scenario: "c64", Peer: "proxy-fwd", Median: figures{ReqPerSec: 21000, CPUms1k: 37, AnonMiB: 12.5}},
		{Scenario: "close", Peer: "nginx", Ref: true, Median: figures{ReqPerSec: 10000}},
		{Scenario: "close", Peer: "haproxy", Ref: true, Median: figures{ReqPerSec: 12000}},
		{Scenario: "close", Peer: "proxy-base", Median: figures{ReqPerSec: 10200}},
		{Scenario: "close", Peer: "proxy-fwd", Median: figures{ReqPerSec: 10100}},
		{Scenario: "wan", Peer: directName, Median: figures{P50ms: 80}},
		{Scenario: "wan", Peer: "nginx", Ref: true, Median: figures{P50ms: 21}},
		{Scenario: "wan", Peer: "caddy", Ref: true, Median: figures{P50ms: 22}},
		{Scenario: "wan", Peer: "proxy-base", Median: figures{P50ms: 20}},
		{Scenario: "wan", Peer: "proxy-fwd", Median: figures{P50ms: 21}},
		{Scenario: "sparse", Peer: "nginx", Ref: true, Median: figures{P50ms: 60}},
		{Scenario: "sparse", Peer: "caddy", Ref: true, Median: figures{P50ms: 70}},
		{Scenario: "sparse", Peer: "proxy-base", Median: figures{P50ms: 23}},
		{Scenario: "sparse", Peer: "proxy-fwd", Median: figures{P50ms: 31}},
	}
	want := []checkResult{
		{Scenario: "c64", Metric: "req/s", Peer: "proxy-base", Against: "best peer", Verdict: "PASS"},         // 0.66×
		{Scenario: "c64", Metric: "CPU ms/1k req", Peer: "proxy-base", Against: "best peer", Verdict: "PASS"}, // 1.75× nginx, the lowest
		{Scenario: "c64", Metric: "CPU ms/1k req", Peer: "proxy-fwd", Against: "best peer", Verdict: "FAIL"},  // 1.85×
		{Scenario: "c64", Metric: "anon MiB", Peer: "proxy-base", Against: "absolute", Verdict: "PASS",
			Detail: "11.5 MiB; target ≤ 12 MiB"},
		{Scenario: "c64", Metric: "anon MiB", Peer: "proxy-fwd", Against: "absolute", Verdict: "FAIL"},
		{Scenario: "c64", Metric: "req/s", Peer: "proxy-base", Against: "caddy", Verdict: "FAIL"}, // 0.995× caddy
		{Scenario: "c64", Metric: "req/s", Peer: "proxy-fwd", Against: "caddy", Verdict: "PASS"},  // 1.05× caddy
		{Scenario: "close", Metric: "req/s", Peer: "proxy-base", Against: "best peer", Verdict: "PASS",
			Detail: "10200 = 0.85× best peer (haproxy 12000); target ≥ 0.85×"},
		{Scenario: "close", Metric: "req/s", Peer: "proxy-fwd", Against: "best peer", Verdict: "FAIL"}, // 0.84×
		{Scenario: "close", Metric: "req/s", Peer: "proxy-base", Against: "caddy", Verdict: "SKIP"},    // no caddy row
		{Scenario: "wan", Metric: "p50 ms", Peer: "proxy-base", Against: "best peer", Verdict: "PASS",
			Detail: "20.0 = 0.95× best peer (nginx 21.0); target < 1×"}, // direct-mtls is not a peer
		{Scenario: "wan", Metric: "p50 ms", Peer: "proxy-fwd", Against: "best peer", Verdict: "FAIL"},     // a tie does not beat
		{Scenario: "wan", Metric: "p50 ms", Peer: "proxy-fwd", Against: "caddy", Verdict: "PASS"},         // a tie is at Caddy
		{Scenario: "sparse", Metric: "p50 ms", Peer: "proxy-base", Against: "best peer", Verdict: "PASS"}, // 0.38×
		{Scenario: "sparse", Metric: "p50 ms", Peer: "proxy-fwd", Against: "best peer", Verdict: "FAIL"},  // 0.52×
		{Scenario: "sparse", Metric: "p50 ms", Peer: "proxy-base", Against: "own wan p50 ms", Verdict: "PASS",
			Detail: "23.0 = 1.15× own wan p50 ms (wan 20.0); target ≤ 1.2×"},
		{Scenario: "sparse", Metric: "p50 ms", Peer: "proxy-fwd", Against: "own wan p50 ms", Verdict: "FAIL"}, // 1.48×
		{Scenario: "rotated", Metric: "p50 ms", Peer: "proxy-base", Against: "own wan p50 ms", Verdict: "SKIP"},
		{Scenario: "big", Metric: "MiB/s", Peer: "proxy-base", Against: "best peer", Verdict: "SKIP"},
		{Scenario: "c1", Metric: "p50 ms", Peer: "proxy-fwd", Against: "nginx", Verdict: "SKIP"},
	}
	got := checkTargets(rows)
	if len(got) != 2*len(targets) {
		t.Fatalf("%d results, want %d: %+v", len(got), 2*len(targets), got)
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(c checkResult) bool {
			return c.Scenario == w.Scenario && c.Metric == w.Metric && c.Peer == w.Peer && c.Against == w.Against
		})
		name := w.Scenario + " " + w.Metric + " " + w.Peer + " vs " + w.Against
		switch {
		case i < 0:
			t.Errorf("no result for %s", name)
		case got[i].Verdict != w.Verdict:
			t.Errorf("%s: got %s (%s), want %s", name, got[i].Verdict, got[i].Detail, w.Verdict)
		case w.Detail != "" && got[i].Detail != w.Detail:
			t.Errorf("%s: detail %q, want %q", name, got[i].Detail, w.Detail)
		}
	}
}

func TestRelateToWAN(t *testing.T) {
	rows := []row{
		{Scenario: "wan", Peer: "nginx", Median: figures{P50ms: 20}},
		{Scenario: "sparse", Peer: "nginx", Median: figures{P50ms: 50}},
		{Scenario: "rotated", Peer: "nginx", Median: figures{P50ms: 30}},
		{Scenario: "rotated", Peer: "caddy", Median: figures{P50ms: 30}}, // no wan row
		{Scenario: "c1", Peer: "nginx", Median: figures{P50ms: 0.2}},
	}
	relateToWAN(rows)
	for i, want := range []float64{0, 2.5, 1.5, 0, 0} {
		if got := rows[i].Median.P50vsWAN; got != want {
			t.Errorf("%s %s: p50 ×wan = %v, want %v", rows[i].Scenario, rows[i].Peer, got, want)
		}
	}
}

func TestPrintTableRatios(t *testing.T) {
	s := scenario{Name: "c1", Metrics: []metric{mRate, mP50}}
	rows := []row{
		{Scenario: "c1", Peer: "nginx", Ref: true, Median: figures{ReqPerSec: 4000, P50ms: 0.2}},
		{Scenario: "c1", Peer: "stunnel", Ref: true, Median: figures{ReqPerSec: 5000, P50ms: 0.25}},
		{Scenario: "c1", Peer: "proxy-base", Median: figures{ReqPerSec: 2500, P50ms: 0.4}},
		{Scenario: "c1", Peer: "proxy-fwd", Err: "start: boom\nlog tail"},
	}
	var out bytes.Buffer
	printTable(&out, []scenario{s}, rows)
	got := out.String()
	for _, want := range []string{
		"proxy-base   2500   0.50", // req/s against stunnel's 5000
		"0.400   2.00",             // p50 against nginx's 0.2 ms
		"stunnel   5000   1.00",    // the best is 1.00
		"FAILED: start: boom",      // the first line of the error only
	} {
		if !strings.Contains(strings.Join(strings.Fields(got), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "log tail") {
		t.Errorf("table holds more than the error's first line:\n%s", got)
	}
}

// TestPrintTableNoBest: a ratio column (p50 ×wan) has no ×best column of
// its own, and the memory columns have theirs.
func TestPrintTableNoBest(t *testing.T) {
	s := scenario{Name: "sparse", Metrics: []metric{mP50, mVsWAN, mAnon}}
	rows := []row{
		{Scenario: "sparse", Peer: "nginx", Ref: true, Median: figures{P50ms: 60, P50vsWAN: 3, AnonMiB: 4}},
		{Scenario: "sparse", Peer: "proxy-base", Median: figures{P50ms: 30, P50vsWAN: 1.5, AnonMiB: 10}},
	}
	var out bytes.Buffer
	printTable(&out, []scenario{s}, rows)
	got := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{
		"p50 ×wan CPU ms/1k req ×best anon MiB ×best file MiB ×best",
		"proxy-base 30.0 0.50 1.50 10.0 2.50", // p50 and its ratio, p50 ×wan alone, anon and its ratio
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestMedianAndPercentile(t *testing.T) {
	m := medianOf([]figures{{ReqPerSec: 3, Requests: 10, Errors: 1}, {ReqPerSec: 1, Requests: 20}, {ReqPerSec: 2, Requests: 30}})
	if m.ReqPerSec != 2 || m.Requests != 60 || m.Errors != 1 {
		t.Errorf("medianOf = %+v, want 2 req/s, 60 requests, 1 error", m)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 4 values = %v, want 2.5", got)
	}
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentile(d, 50), percentile(d, 99); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("percentile 50, 99 of 1..100 ms = %v, %v; want 50ms, 99ms", p50, p99)
	}
	if d[0] != 100*time.Millisecond {
		t.Error("percentile reordered its input")
	}
}

func TestParseBins(t *testing.T) {
	got, err := parseBins("off=/tmp/a,pgo=/tmp/b")
	if err != nil || len(got) != 2 || got[0] != (labelledBin{"off", "/tmp/a"}) || got[1].Label != "pgo" {
		t.Errorf("parseBins = %v, %v", got, err)
	}
	for _, bad := range []string{"off", "=/tmp/a", "a b=/tmp/a", "x=/a,x=/b", "x="} {
		if _, err := parseBins(bad); err == nil {
			t.Errorf("parseBins(%q) accepted", bad)
		}
	}
}

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
		{Scenario: "close", Peer: "nginx", Ref: true, Median: figures{ReqPerSec: 10000}},
		{Scenario: "close", Peer: "haproxy", Ref: true, Median: figures{ReqPerSec: 12000}},
		{Scenario: "close", Peer: "proxy-base", Median: figures{ReqPerSec: 12500}},
		{Scenario: "close", Peer: "proxy-fwd", Median: figures{ReqPerSec: 11000}},
		{Scenario: "c64", Peer: "haproxy", Ref: true, Median: figures{CPUms1k: 30, RSSMiB: 18}},
		{Scenario: "c64", Peer: "stunnel", Ref: true, Median: figures{CPUms1k: 50}},
		{Scenario: "c64", Peer: "proxy-base", Median: figures{CPUms1k: 60, RSSMiB: 39}},
		{Scenario: "c64", Peer: "proxy-fwd", Median: figures{CPUms1k: 61, RSSMiB: 41}},
		{Scenario: "wan", Peer: directName, Median: figures{P50ms: 80}},
		{Scenario: "wan", Peer: "proxy-base", Median: figures{P50ms: 22}},
		{Scenario: "wan", Peer: "proxy-fwd", Median: figures{P50ms: 41}},
	}
	want := []checkResult{
		{Scenario: "close", Metric: "req/s", Peer: "proxy-base", Verdict: "PASS",
			Detail: "12500 = 1.04× best peer (haproxy 12000); target ≥ 1×"},
		{Scenario: "close", Metric: "req/s", Peer: "proxy-fwd", Verdict: "FAIL"},        // 0.92×
		{Scenario: "c64", Metric: "CPU ms/1k req", Peer: "proxy-base", Verdict: "PASS"}, // 2.00× haproxy, the lowest
		{Scenario: "c64", Metric: "CPU ms/1k req", Peer: "proxy-fwd", Verdict: "FAIL"},  // 2.03×
		{Scenario: "c64", Metric: "peak RSS MiB", Peer: "proxy-base", Verdict: "PASS"},  // 39 MiB
		{Scenario: "c64", Metric: "peak RSS MiB", Peer: "proxy-fwd", Verdict: "FAIL"},   // 41 MiB
		{Scenario: "wan", Metric: "p50 ms", Peer: "proxy-base", Verdict: "PASS"},        // 0.28× direct
		{Scenario: "wan", Metric: "p50 ms", Peer: "proxy-fwd", Verdict: "FAIL"},         // 0.51× direct
		{Scenario: "c64", Metric: "req/s", Peer: "proxy-base", Verdict: "SKIP"},         // no req/s in these rows
		{Scenario: "big", Metric: "MiB/s", Peer: "proxy-base", Verdict: "SKIP"},         // no big rows
		{Scenario: "c1", Metric: "p50 ms", Peer: "proxy-fwd", Verdict: "SKIP"},          // no c1 rows
	}
	got := checkTargets(rows)
	if len(got) != 2*len(targets) {
		t.Fatalf("%d results, want %d: %+v", len(got), 2*len(targets), got)
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(c checkResult) bool {
			return c.Scenario == w.Scenario && c.Metric == w.Metric && c.Peer == w.Peer
		})
		switch {
		case i < 0:
			t.Errorf("no result for %s %s %s", w.Scenario, w.Metric, w.Peer)
		case got[i].Verdict != w.Verdict:
			t.Errorf("%s %s %s: got %s (%s), want %s", w.Scenario, w.Metric, w.Peer, got[i].Verdict, got[i].Detail, w.Verdict)
		case w.Detail != "" && got[i].Detail != w.Detail:
			t.Errorf("%s %s %s: detail %q, want %q", w.Scenario, w.Metric, w.Peer, got[i].Detail, w.Detail)
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

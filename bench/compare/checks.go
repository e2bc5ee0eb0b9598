package main

import (
	"fmt"
	"slices"
	"strings"
)

// target is one of the issues' goals for this proxy (issue 19's restated
// floors, issue 16's sparse and rotated lines).
type target struct {
	Scenario string
	Metric   metric
	// Against is what the proxy is compared with: "" the best reference
	// peer, "=" the absolute Bound itself, otherwise the named row of the
	// same scenario (nginx, caddy).
	Against string
	// Base, when set, compares the proxy row with its own row in the Base
	// scenario instead (sparse and rotated against steady-state wan).
	Base   string
	Bound  float64 // the ratio (or absolute value) not to cross
	Strict bool    // the ratio must be strictly better than Bound ("beat")
	Unit   string  // for absolute bounds
}

// targets are the acceptance lines, checked for both proxy modes: the
// floors, then "at or above Caddy in every scenario", then the goal where
// users feel latency (beat every peer; sparse and rotated near wan).
var targets = []target{
	// Issue 28's floors, for both upstream shapes: HTTP/1.1 and HTTP/2.
	{Scenario: "c64", Metric: mRate, Bound: 0.65},
	{Scenario: "c64", Metric: mCPU, Bound: 1.8},
	{Scenario: "close", Metric: mRate, Bound: 0.85},
	{Scenario: "c1", Metric: mP50, Against: "nginx", Bound: 1.3},
	{Scenario: "c64-h2", Metric: mRate, Bound: 0.65},
	{Scenario: "c64-h2", Metric: mCPU, Bound: 1.8},
	{Scenario: "close-h2", Metric: mRate, Bound: 0.85},
	{Scenario: "c1-h2", Metric: mP50, Against: "nginx", Bound: 1.3},
	{Scenario: "big", Metric: mMiBps, Bound: 0.9},
	{Scenario: "big-h2", Metric: mMiBps, Bound: 0.9},
	{Scenario: "c64", Metric: mAnon, Against: "=", Bound: 12, Unit: "MiB"},

	{Scenario: "c1", Metric: mP50, Against: "caddy", Bound: 1},
	{Scenario: "c64", Metric: mRate, Against: "caddy", Bound: 1},
	{Scenario: "close", Metric: mRate, Against: "caddy", Bound: 1},
	{Scenario: "big", Metric: mMiBps, Against: "caddy", Bound: 1},
	{Scenario: "wan", Metric: mP50, Against: "caddy", Bound: 1},
	{Scenario: "sparse", Metric: mP50, Against: "caddy", Bound: 1},
	{Scenario: "rotated", Metric: mP50, Against: "caddy", Bound: 1},

	{Scenario: "wan", Metric: mP50, Bound: 1, Strict: true},
	{Scenario: "sparse", Metric: mP50, Bound: 0.5},
	{Scenario: "sparse", Metric: mP50, Base: "wan", Bound: 1.2},
	{Scenario: "rotated", Metric: mP50, Bound: 0.5},
	{Scenario: "rotated", Metric: mP50, Base: "wan", Bound: 1.2},
}

// proxyRows are the rows the targets apply to.
var proxyRows = []string{"proxy-base", "proxy-fwd"}

// checkResult is the outcome of one target for one proxy mode.
type checkResult struct {
	Verdict  string `json:"verdict"` // PASS, FAIL or SKIP
	Scenario string `json:"scenario"`
	Metric   string `json:"metric"`
	Peer     string `json:"peer"`
	Against  string `json:"against"` // best peer, a peer's name, own wan p50 ms, or absolute
	Detail   string `json:"detail"`  // the figures and the bound
}

// String is the report line.
func (c checkResult) String() string {
	return fmt.Sprintf("%s  %-7s %-13s %-10s %s", c.Verdict, c.Scenario, c.Metric, c.Peer, c.Detail)
}

// checkTargets evaluates every target for both proxy modes (each binary's
// rows with --proxy-bins).
func checkTargets(rows []row) []checkResult {
	var names []string
	for _, r := range rows {
		for _, p := range proxyRows {
			if (r.Peer == p || strings.HasPrefix(r.Peer, p+"@")) && !slices.Contains(names, r.Peer) {
				names = append(names, r.Peer)
			}
		}
	}
	var out []checkResult
	for _, t := range targets {
		for _, name := range names {
			c := checkResult{Scenario: t.Scenario, Metric: t.Metric.Header, Peer: name, Against: t.against()}
			c.Verdict, c.Detail = t.check(rows, name)
			out = append(out, c)
		}
	}
	return out
}

// check evaluates t for the proxy row called name among rows (all
// scenarios).
func (t target) check(rows []row, name string) (verdict, detail string) {
	op := t.op()
	srows := rowsOf(rows, t.Scenario)
	v, ok := valueOf(srows, name, t.Metric)
	if !ok {
		return "SKIP", "no result for this proxy"
	}
	if t.Against == "=" {
		return t.verdict(v, t.Bound), fmt.Sprintf("%s %s; target %s %g %s", formatValue(v), t.Unit, op, t.Bound, t.Unit)
	}
	var ref float64
	against, refName := t.against(), t.Against
	switch {
	case t.Base != "":
		refName = t.Base
		ref, ok = valueOf(rowsOf(rows, t.Base), name, t.Metric)
	case t.Against == "":
		ref, refName, ok = best(srows, t.Metric)
	default:
		ref, ok = valueOf(srows, t.Against, t.Metric)
	}
	if !ok {
		return "SKIP", "no result for the comparison: " + against
	}
	return t.verdict(v/ref, t.Bound), fmt.Sprintf("%s = %.2f× %s (%s %s); target %s %g×",
		formatValue(v), v/ref, against, refName, formatValue(ref), op, t.Bound)
}

// against names what the target compares with.
func (t target) against() string {
	switch {
	case t.Base != "":
		return "own " + t.Base + " " + t.Metric.Header
	case t.Against == "":
		return "best peer"
	case t.Against == "=":
		return "absolute"
	}
	return t.Against
}

// op is the comparison the target asks for, as the report prints it.
func (t target) op() string {
	switch {
	case t.Strict && t.Metric.Higher:
		return ">"
	case t.Strict:
		return "<"
	case t.Metric.Higher:
		return "≥"
	}
	return "≤"
}

// verdict compares v with bound in the metric's better direction.
func (t target) verdict(v, bound float64) string {
	higher := t.Metric.Higher
	pass := (higher && v >= bound) || (!higher && v <= bound)
	if t.Strict {
		pass = (higher && v > bound) || (!higher && v < bound)
	}
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// valueOf returns metric m of the row called peer, if it has one.
func valueOf(srows []row, peer string, m metric) (float64, bool) {
	for _, r := range srows {
		if r.Peer == peer {
			v := m.get(r.Median)
			return v, v > 0
		}
	}
	return 0, false
}

// relateToWAN sets P50vsWAN of every sparse and rotated row: its p50 over
// the same peer's steady-state wan p50, when wan ran.
func relateToWAN(rows []row) {
	wan := rowsOf(rows, "wan")
	for i := range rows {
		if rows[i].Scenario != "sparse" && rows[i].Scenario != "rotated" {
			continue
		}
		if base, ok := valueOf(wan, rows[i].Peer, mP50); ok && rows[i].Median.P50ms > 0 {
			rows[i].Median.P50vsWAN = rows[i].Median.P50ms / base
		}
	}
}

package main

import "fmt"

// target is one of the goals for this proxy.
type target struct {
	Scenario string
	Metric   metric
	// Against is what the proxy is compared with: "" the best reference
	// peer, "=" the absolute Bound itself, otherwise the named row.
	Against string
	Bound   float64 // the ratio (or absolute value) not to cross
	Unit    string  // for absolute bounds
}

// targets are the acceptance lines, checked for both proxy modes.
var targets = []target{
	{Scenario: "close", Metric: mRate, Bound: 1.0},
	{Scenario: "c64", Metric: mRate, Bound: 0.6},
	{Scenario: "c64", Metric: mCPU, Bound: 2.0},
	{Scenario: "big", Metric: mMiBps, Bound: 0.9},
	{Scenario: "c1", Metric: mP50, Against: "nginx", Bound: 1.5},
	{Scenario: "c64", Metric: mRSS, Against: "=", Bound: 40, Unit: "MiB"},
	{Scenario: "wan", Metric: mP50, Against: directName, Bound: 0.5},
}

// proxyRows are the rows the targets apply to.
var proxyRows = []string{"proxy-base", "proxy-fwd"}

// checkResult is the outcome of one target for one proxy mode.
type checkResult struct {
	Verdict  string `json:"verdict"` // PASS, FAIL or SKIP
	Scenario string `json:"scenario"`
	Metric   string `json:"metric"`
	Peer     string `json:"peer"`
	Detail   string `json:"detail"` // the figures and the bound
}

// String is the report line.
func (c checkResult) String() string {
	return fmt.Sprintf("%s  %-5s %-13s %-10s %s", c.Verdict, c.Scenario, c.Metric, c.Peer, c.Detail)
}

// checkTargets evaluates every target for both proxy modes.
func checkTargets(rows []row) []checkResult {
	var out []checkResult
	for _, t := range targets {
		srows := rowsOf(rows, t.Scenario)
		for _, name := range proxyRows {
			c := checkResult{Scenario: t.Scenario, Metric: t.Metric.Header, Peer: name}
			c.Verdict, c.Detail = t.check(srows, name)
			out = append(out, c)
		}
	}
	return out
}

// check evaluates t for the proxy row called name among srows.
func (t target) check(srows []row, name string) (verdict, detail string) {
	op := "≤"
	if t.Metric.Higher {
		op = "≥"
	}
	v, ok := valueOf(srows, name, t.Metric)
	if !ok {
		return "SKIP", "no result"
	}
	if t.Against == "=" {
		return verdictOf(t.Metric.Higher, v, t.Bound),
			fmt.Sprintf("%s %s; target %s %g %s", formatValue(v), t.Unit, op, t.Bound, t.Unit)
	}
	ref, refName := 0.0, t.Against
	if t.Against == "" {
		ref, refName, ok = best(srows, t.Metric)
	} else {
		ref, ok = valueOf(srows, t.Against, t.Metric)
	}
	if !ok {
		return "SKIP", fmt.Sprintf("no result for the comparison (%s)", orBest(t.Against))
	}
	return verdictOf(t.Metric.Higher, v/ref, t.Bound), fmt.Sprintf("%s = %.2f× %s (%s %s); target %s %g×",
		formatValue(v), v/ref, orBest(t.Against), refName, formatValue(ref), op, t.Bound)
}

// verdictOf compares v with bound in the metric's better direction.
func verdictOf(higherBetter bool, v, bound float64) string {
	if (higherBetter && v >= bound) || (!higherBetter && v <= bound) {
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

func orBest(against string) string {
	if against == "" {
		return "best peer"
	}
	return against
}

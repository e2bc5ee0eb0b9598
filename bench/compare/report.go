package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// metric is one column of the table.
type metric struct {
	Header string
	Higher bool // higher is better (req/s, MiB/s); otherwise lower is
	NoBest bool // no ×best column: the figure is already a ratio
	get    func(figures) float64
}

// The table's columns, in order.
var (
	mRate  = metric{Header: "req/s", Higher: true, get: func(f figures) float64 { return f.ReqPerSec }}
	mP50   = metric{Header: "p50 ms", get: func(f figures) float64 { return f.P50ms }}
	mP99   = metric{Header: "p99 ms", get: func(f figures) float64 { return f.P99ms }}
	mMiBps = metric{Header: "MiB/s", Higher: true, get: func(f figures) float64 { return f.MiBps }}
	mVsWAN = metric{Header: "p50 ×wan", NoBest: true, get: func(f figures) float64 { return f.P50vsWAN }}
	mCPU   = metric{Header: "CPU ms/1k req", get: func(f figures) float64 { return f.CPUms1k }}
	mAnon  = metric{Header: "anon MiB", get: func(f figures) float64 { return f.AnonMiB }}
	mFile  = metric{Header: "file MiB", get: func(f figures) float64 { return f.FileMiB }}

	columns = []metric{mRate, mMiBps, mP50, mP99, mVsWAN, mCPU, mAnon, mFile}
)

// best returns the best value of m among the reference peers' rows of one
// scenario, and that peer's name; ok is false when none has a value.
func best(rows []row, m metric) (v float64, peer string, ok bool) {
	for _, r := range rows {
		x := m.get(r.Median)
		if !r.Ref || x <= 0 {
			continue
		}
		if !ok || (m.Higher && x > v) || (!m.Higher && x < v) {
			v, peer, ok = x, r.Peer, true
		}
	}
	return v, peer, ok
}

// printTable writes one line per scenario and peer: each figure the
// scenario measures, followed by its ratio to the best reference peer.
func printTable(w io.Writer, scenarios []scenario, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"scenario", "peer"}
	for _, m := range columns {
		head = append(head, m.Header)
		if !m.NoBest {
			head = append(head, "×best")
		}
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, s := range scenarios {
		srows := rowsOf(rows, s.Name)
		for _, r := range srows {
			cells := []string{s.Name, r.Peer}
			for _, m := range columns {
				cells = append(cells, cell(s, srows, r, m)...)
			}
			line := strings.Join(cells, "\t") + "\t"
			if r.Median.Errors > 0 {
				line += fmt.Sprintf(" %d errors", r.Median.Errors)
			}
			if r.Err != "" {
				line += " FAILED: " + firstLine(r.Err)
			}
			fmt.Fprintln(tw, line)
		}
	}
	tw.Flush()
}

// cell formats metric m of row r, and its ratio to the best reference
// peer, when scenario s measures m: two cells, or one for a NoBest metric.
func cell(s scenario, srows []row, r row, m metric) []string {
	v := m.get(r.Median)
	out := []string{"", ""}
	switch {
	case !measures(s, m):
	case v <= 0:
		out[0] = "-"
	default:
		out[0] = formatValue(v)
		if b, _, ok := best(srows, m); ok {
			out[1] = fmt.Sprintf("%.2f", v/b)
		}
	}
	if m.NoBest {
		return out[:1]
	}
	return out
}

// measures reports whether scenario s has metric m among its columns.
func measures(s scenario, m metric) bool {
	for _, x := range s.Metrics {
		if x.Header == m.Header {
			return true
		}
	}
	return false
}

// formatValue keeps three significant digits for small values.
func formatValue(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// rowsOf returns the rows of one scenario.
func rowsOf(rows []row, scenario string) []row {
	var out []row
	for _, r := range rows {
		if r.Scenario == scenario {
			out = append(out, r)
		}
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// report is everything one run found, as written by --json.
type report struct {
	Meta   meta          `json:"meta"`
	Rows   []row         `json:"rows"`
	Checks []checkResult `json:"checks"`
}

// writeJSON writes r to path.
func writeJSON(path string, r report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

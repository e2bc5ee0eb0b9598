package main

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run printed (wrk 4.x with --latency).
type wrkResult struct {
	Requests     int64         // "N requests in 5.00s"
	Elapsed      time.Duration // the "in 5.00s" part
	ReqPerSec    float64       // "Requests/sec:"
	BytesPerSec  float64       // "Transfer/sec:", in bytes (wrk's units are binary)
	P50, P99     time.Duration // "Latency Distribution"
	Non2xx       int64         // "Non-2xx or 3xx responses:"
	SocketErrors int64         // connect + read + write + timeout
}

var (
	wrkTotalRe    = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+[a-z]+), ([0-9.]+[KMGTP]?B) read`)
	wrkRateRe     = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkTransferRe = regexp.MustCompile(`(?m)^Transfer/sec:\s*([0-9.]+[KMGTP]?B)`)
	wrkPctRe      = regexp.MustCompile(`(?m)^\s*(50|99)(?:\.0+)?%\s+([0-9.]+[a-z]+)`)
	wrkSocketRe   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkStatusRe   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk's text report. The totals, Requests/sec and
// Transfer/sec must be present; the percentiles only when wrk ran with
// --latency (they are zero otherwise).
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkTotalRe.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no \"N requests in T\" line:\n%s", out)
	}
	var err error
	if r.Requests, err = strconv.ParseInt(m[1], 10, 64); err != nil {
		return r, fmt.Errorf("wrk request count %q: %w", m[1], err)
	}
	if r.Elapsed, err = parseWrkTime(m[2]); err != nil {
		return r, err
	}
	if m = wrkRateRe.FindStringSubmatch(out); m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec line:\n%s", out)
	}
	if r.ReqPerSec, err = strconv.ParseFloat(m[1], 64); err != nil {
		return r, fmt.Errorf("wrk Requests/sec %q: %w", m[1], err)
	}
	if m = wrkTransferRe.FindStringSubmatch(out); m == nil {
		return r, fmt.Errorf("wrk output has no Transfer/sec line:\n%s", out)
	}
	if r.BytesPerSec, err = parseWrkBytes(m[1]); err != nil {
		return r, err
	}
	for _, m := range wrkPctRe.FindAllStringSubmatch(out, -1) {
		d, err := parseWrkTime(m[2])
		if err != nil {
			return r, err
		}
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	r.SocketErrors, r.Non2xx = wrkErrors(out)
	return r, nil
}

// wrkErrors sums the "Socket errors" counters and reads the non-2xx count;
// wrk prints those lines only when a count is not zero.
func wrkErrors(out string) (socket, status int64) {
	if m := wrkSocketRe.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64) // \d+ always parses
			socket += n
		}
	}
	if m := wrkStatusRe.FindStringSubmatch(out); m != nil {
		status, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return socket, status
}

// wrkTimeUnits are the suffixes of wrk's format_time_us (src/units.c).
var wrkTimeUnits = map[string]time.Duration{
	"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
}

// parseWrkTime parses a wrk duration such as "95.12us", "1.02ms" or "5.00s".
func parseWrkTime(s string) (time.Duration, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' })
	if i <= 0 {
		return 0, fmt.Errorf("wrk time %q: no number or no unit", s)
	}
	unit, ok := wrkTimeUnits[s[i:]]
	if !ok {
		return 0, fmt.Errorf("wrk time %q: unknown unit %q", s, s[i:])
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("wrk time %q: %w", s, err)
	}
	return time.Duration(math.Round(v * float64(unit))), nil
}

// parseWrkBytes parses a wrk byte count such as "512.00B", "2.47MB" or
// "1.10GB". wrk's format_binary scales by 1024, so "MB" is a mebibyte.
func parseWrkBytes(s string) (float64, error) {
	num, ok := strings.CutSuffix(s, "B")
	if !ok || num == "" {
		return 0, fmt.Errorf("wrk byte count %q: want N[KMGTP]B", s)
	}
	scale := 1.0
	if i := strings.IndexByte("KMGTP", num[len(num)-1]); i >= 0 {
		scale = math.Pow(1024, float64(i+1))
		num = num[:len(num)-1]
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("wrk byte count %q: %w", s, err)
	}
	return v * scale, nil
}

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat. USER_HZ is
// 100 on every Linux architecture Go supports (proc(5); sysconf(_SC_CLK_TCK)
// is not reachable from the standard library without cgo).
const clockTick = 10 * time.Millisecond

// procStat holds the fields of /proc/PID/stat the runner needs.
type procStat struct {
	PID   int
	Comm  string
	State string // R running, S sleeping, Z zombie... (proc(5))
	PGRP  int    // process group: a peer and everything it forks share one
	UTime uint64 // clock ticks in user mode, all threads included
	STime uint64 // clock ticks in kernel mode, all threads included
}

// CPU returns user plus system time.
func (s procStat) CPU() time.Duration {
	return time.Duration(s.UTime+s.STime) * clockTick
}

// parseStat parses one /proc/PID/stat line (proc(5)). The command name is in
// parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseStat(line string) (procStat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 1 || end < open {
		return procStat{}, fmt.Errorf("stat line %q: no (comm)", abbreviate(line))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("stat line %q: pid: %w", abbreviate(line), err)
	}
	// After ')' come field 3 (state) onwards: pgrp is field 5, utime 14, stime 15.
	f := strings.Fields(line[end+1:])
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat line %q: %d fields after comm, want at least 13", abbreviate(line), len(f))
	}
	s := procStat{PID: pid, Comm: line[open+1 : end], State: f[0]}
	if s.PGRP, err = strconv.Atoi(f[5-3]); err != nil {
		return procStat{}, fmt.Errorf("stat line %q: pgrp: %w", abbreviate(line), err)
	}
	if s.UTime, err = strconv.ParseUint(f[14-3], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat line %q: utime: %w", abbreviate(line), err)
	}
	if s.STime, err = strconv.ParseUint(f[15-3], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat line %q: stime: %w", abbreviate(line), err)
	}
	return s, nil
}

// statusField returns the value of the "Key:\tvalue" line of
// /proc/PID/status (proc(5)), trimmed.
func statusField(status, key string) (string, error) {
	for _, line := range strings.Split(status, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if ok && name == key {
			return strings.TrimSpace(rest), nil
		}
	}
	return "", fmt.Errorf("status has no %s line", key)
}

// parseStatusKB returns the value of a "Key:   1234 kB" line of
// /proc/PID/status in bytes.
func parseStatusKB(status, key string) (int64, error) {
	v, err := statusField(status, key)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(v)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("status line %q: want \"%s: N kB\"", key+": "+v, key)
	}
	kb, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || kb < 0 {
		return 0, fmt.Errorf("status line %q: want a count of kB", key+": "+v)
	}
	return kb * 1024, nil
}

// memUse is a process's resident memory split as a pod's limit sees it:
// anonymous pages (heap, stacks: what the limit is really spent on) and
// file-backed pages (the binary's text and mapped libraries: shared and
// reclaimable).
type memUse struct {
	Anon int64 // RssAnon, bytes
	File int64 // RssFile, bytes
}

// errNoMemory is parseMemStatus's answer for a process without user
// memory: a zombie (an old worker that exited and is not yet reaped) or a
// kernel thread, whose status has no Rss lines.
var errNoMemory = errors.New("no resident memory lines (zombie or kernel thread)")

// parseMemStatus reads RssAnon and RssFile from /proc/PID/status.
func parseMemStatus(status string) (memUse, error) {
	if _, err := statusField(status, "RssAnon"); err != nil {
		if _, err := statusField(status, "RssFile"); err != nil {
			return memUse{}, errNoMemory
		}
	}
	anon, err := parseStatusKB(status, "RssAnon")
	if err != nil {
		return memUse{}, err
	}
	file, err := parseStatusKB(status, "RssFile")
	if err != nil {
		return memUse{}, err
	}
	return memUse{Anon: anon, File: file}, nil
}

// parseCPUList parses a kernel CPU list such as "0-3,6" (the format of
// Cpus_allowed_list in /proc/PID/status and of taskset -c).
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("CPU list %q: %w", s, err)
			}
		}
		if b < a || b-a > 4096 {
			return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// allowedCPUs returns the CPUs this process may run on.
func allowedCPUs() ([]int, error) { return cpusAllowedIn("/proc/self/status") }

// cpusAllowedIn reads Cpus_allowed_list from a /proc status file (of a
// process or of one of its threads, /proc/PID/task/TID/status).
func cpusAllowedIn(statusPath string) ([]int, error) {
	b, err := os.ReadFile(statusPath)
	if err != nil {
		return nil, err
	}
	v, err := statusField(string(b), "Cpus_allowed_list")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", statusPath, err)
	}
	return parseCPUList(v)
}

// scanProcs returns the stat of every live process. A process that exits
// during the scan is skipped.
func scanProcs() ([]procStat, error) {
	paths, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	var out []procStat
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		s, err := parseStat(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// groupStats returns the stat of every live process in process group pgid.
func groupStats(pgid int) ([]procStat, error) {
	all, err := scanProcs()
	if err != nil {
		return nil, err
	}
	var out []procStat
	for _, s := range all {
		if s.PGRP == pgid {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no process left in process group %d", pgid)
	}
	return out, nil
}

// groupCPU returns the CPU time used so far by all processes of group pgid.
func groupCPU(pgid int) (time.Duration, error) {
	stats, err := groupStats(pgid)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, s := range stats {
		sum += s.CPU()
	}
	return sum, nil
}

// groupPeakRSS returns the sum of VmHWM (peak resident set) over all
// processes of group pgid, in bytes.
func groupPeakRSS(pgid int) (int64, error) {
	stats, err := groupStats(pgid)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, s := range stats {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.PID))
		if err != nil {
			continue // gone
		}
		hwm, err := parseStatusKB(string(b), "VmHWM")
		if err != nil {
			return 0, fmt.Errorf("process %d (%s): %w", s.PID, s.Comm, err)
		}
		sum += hwm
	}
	return sum, nil
}

func abbreviate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// cpuCounters are the machine-wide "cpu" line of /proc/stat, in clock ticks.
type cpuCounters struct {
	Total uint64 // every field but guest and guest_nice (already in user and nice)
	Steal uint64 // time the hypervisor ran something else while this VM wanted to run
}

// parseProcStat reads the aggregate "cpu" line of /proc/stat (proc(5)):
// user nice system idle iowait irq softirq steal [guest guest_nice].
func parseProcStat(text string) (cpuCounters, error) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return cpuCounters{}, fmt.Errorf("/proc/stat line %q: want at least 8 counters", line)
		}
		var c cpuCounters
		for i, s := range f[1:9] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return cpuCounters{}, fmt.Errorf("/proc/stat line %q: %w", line, err)
			}
			c.Total += v
			if i == 7 {
				c.Steal = v
			}
		}
		return c, nil
	}
	return cpuCounters{}, errors.New("/proc/stat has no cpu line")
}

// readCPUCounters reads /proc/stat now.
func readCPUCounters() (cpuCounters, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuCounters{}, err
	}
	return parseProcStat(string(b))
}

// stealShare is the share of CPU time stolen by the hypervisor between two
// readings: a noise indicator for the whole run.
func stealShare(before, after cpuCounters) float64 {
	if after.Total <= before.Total {
		return 0
	}
	return float64(after.Steal-before.Steal) / float64(after.Total-before.Total)
}

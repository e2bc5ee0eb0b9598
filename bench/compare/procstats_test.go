package main

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		line string
		want procStat
	}{
		{"cat", "17920 (cat) R 17877 17877 18136 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 440866 3133440 393 " +
			"18446744073709551615 94776728350720 94776728370601 140728109096256 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 " +
			"94776728386608 94776728388224 94777085751296 140728109099693 140728109099713 140728109099713 140728109101035 0",
			procStat{PID: 17920, Comm: "cat", State: "R", PGRP: 17877}},
		{"nginx worker", "22732 (nginx) S 1 22731 18136 0 -1 4194624 546 0 1 0 7 3 0 0 20 0 1 0 395569 24473600 1398 " +
			"18446744073709551615 93910366801920 93910367585393 140726720914304 0 0 0 0 1073745920 402745863 1 0 0 17 0 0 0 0 0 0",
			procStat{PID: 22732, Comm: "nginx", State: "S", PGRP: 22731, UTime: 7, STime: 3}},
		{"process_api", "1 (process_api) S 0 0 0 0 -1 4194560 84029 13659566 0 3323 213 1080 63503 14987 20 0 13 0 24 " +
			"40382464 2668 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
			procStat{PID: 1, Comm: "process_api", State: "S", PGRP: 0, UTime: 213, STime: 1080}},
		// A command name may hold spaces and parentheses (prctl PR_SET_NAME).
		{"odd comm", "4242 (a) b (c)) S 1 4240 4240 0 -1 0 0 0 0 0 150 50 0 0 20 0 1 0 1 1 1",
			procStat{PID: 4242, Comm: "a) b (c)", State: "S", PGRP: 4240, UTime: 150, STime: 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.line)
			if err != nil {
				t.Fatalf("parseStat: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := (procStat{UTime: 213, STime: 1080}).CPU(); got != 12930*time.Millisecond {
		t.Errorf("CPU() = %v, want 12.93s", got)
	}
}

func TestParseStatRefusesGarbage(t *testing.T) {
	for _, line := range []string{"", "17920 cat R 1 2 3", "x (cat) R 1 2 3 4 5 6 7 8 9 10 11 12",
		"17920 (cat) R 17877 17877", "17920 (cat) R 1 notapgrp 3 4 5 6 7 8 9 10 11 12 13"} {
		if got, err := parseStat(line); err == nil {
			t.Errorf("parseStat(%q) = %+v, want an error", line, got)
		}
	}
}

// statusSample is part of /proc/PID/status of a Go process on Linux 6.x.
const statusSample = `Name:	payrails-mtls-
Umask:	0022
State:	S (sleeping)
Tgid:	18450
Pid:	18450
VmPeak:	 1261148 kB
VmSize:	 1261148 kB
VmLck:	       0 kB
VmHWM:	   24812 kB
VmRSS:	   20160 kB
RssAnon:	    9216 kB
RssFile:	   10944 kB
RssShmem:	       0 kB
Threads:	7
Cpus_allowed_list:	0-1
`

func TestParseStatusKB(t *testing.T) {
	tests := []struct {
		key     string
		want    int64
		wantErr bool
	}{
		{"VmHWM", 24812 * 1024, false},
		{"VmRSS", 20160 * 1024, false},
		{"VmSwap", 0, true},  // absent
		{"Threads", 0, true}, // not a kB line
		{"VmH", 0, true},     // a prefix is not the key
		{"RssAnon", 9216 * 1024, false},
		{"RssFile", 10944 * 1024, false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := parseStatusKB(statusSample, tt.key)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatusKB(%s) = %d, %v; want %d, error %v", tt.key, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseMemStatus(t *testing.T) {
	got, err := parseMemStatus(statusSample)
	if want := (memUse{Anon: 9216 * 1024, File: 10944 * 1024}); err != nil || got != want {
		t.Errorf("parseMemStatus = %+v, %v; want %+v", got, err, want)
	}
	// A zombie's (or a kernel thread's) status has no Rss lines: no memory,
	// not a parse error.
	const zombie = "Name:\tnginx\nState:\tZ (zombie)\nTgid:\t17548\nThreads:\t1\n"
	if got, err := parseMemStatus(zombie); !errors.Is(err, errNoMemory) {
		t.Errorf("parseMemStatus(zombie) = %+v, %v; want errNoMemory", got, err)
	}
	// One line without the other, or a garbled value, is refused.
	for _, bad := range []string{"RssAnon:\t12 kB\n", "RssFile:\t12 kB\n",
		"RssAnon:\t-4 kB\nRssFile:\t1 kB\n", "RssAnon:\t4 MB\nRssFile:\t1 kB\n"} {
		if got, err := parseMemStatus(bad); err == nil || errors.Is(err, errNoMemory) {
			t.Errorf("parseMemStatus(%q) = %+v, want an error", bad, got)
		}
	}
	if v, err := statusField(statusSample, "State"); v != "S (sleeping)" || err != nil {
		t.Errorf("statusField(State) = %q, %v; want \"S (sleeping)\"", v, err)
	}
}

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in   string
		want []int
	}{
		{"0-1", []int{0, 1}},
		{"0", []int{0}},
		{"0-3,6", []int{0, 1, 2, 3, 6}},
		{" 2,4-5\n", []int{2, 4, 5}},
	}
	for _, tt := range tests {
		if got, err := parseCPUList(tt.in); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "1-", "0-99999"} {
		if got, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	const sample = "cpu  207167 0 69751 572289 13949 0 10856 2295 0 0\n" +
		"cpu0 100256 0 34525 293869 2733 0 5401 1160 0 0\n" +
		"cpu1 106910 0 35225 278419 11215 0 5454 1134 0 0\nintr 1 2 3\n"
	got, err := parseProcStat(sample)
	if err != nil {
		t.Fatal(err)
	}
	want := cpuCounters{Total: 207167 + 69751 + 572289 + 13949 + 10856 + 2295, Steal: 2295}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if s := stealShare(cpuCounters{Total: 1000, Steal: 10}, cpuCounters{Total: 2000, Steal: 60}); s != 0.05 {
		t.Errorf("stealShare = %v, want 0.05", s)
	}
	if _, err := parseProcStat("intr 1 2 3\n"); err == nil {
		t.Error("parseProcStat without a cpu line: want an error")
	}
}

func TestPlanCPUs(t *testing.T) {
	tests := []struct {
		flag    string
		allowed []int
		want    cpuPlan
		wantErr bool
	}{
		{"pinned", []int{0, 1}, cpuPlan{Peer: []int{1}, Load: []int{0}, Workers: 1}, false},
		{"pinned", []int{0, 1, 2, 3}, cpuPlan{Peer: []int{3}, Load: []int{0, 1, 2}, Workers: 1}, false},
		{"pinned", []int{4}, cpuPlan{Workers: 1}, false}, // one CPU: nothing to pin apart
		{"none", []int{0, 1}, cpuPlan{Workers: 2}, false},
		{"unpinned", []int{0, 1}, cpuPlan{Workers: 2}, false},
		{"auto", []int{0, 1}, cpuPlan{Peer: []int{1}, Load: []int{0}, Workers: 1}, false},
		{"auto", []int{0, 1, 2, 3, 4}, cpuPlan{Peer: []int{3, 4}, Load: []int{0, 1, 2}, Workers: 2}, false},
		{"auto", []int{0}, cpuPlan{Workers: 1}, false},
		{"2-3", []int{0, 1, 2, 3}, cpuPlan{Peer: []int{2, 3}, Load: []int{0, 1}, Workers: 2}, false},
		{"0-1", []int{0, 1}, cpuPlan{}, true}, // nothing left for wrk
		{"5", []int{0, 1}, cpuPlan{}, true},   // not allowed
	}
	for _, tt := range tests {
		got, err := planCPUs(tt.flag, tt.allowed)
		if pinned := len(got.Peer) > 0; err == nil && pinned != (got.Shape != shapeUnpinned) {
			t.Errorf("planCPUs(%q, %v): shape %q with peer CPUs %v", tt.flag, tt.allowed, got.Shape, got.Peer)
		}
		if (err != nil) != tt.wantErr || !slices.Equal(got.Peer, tt.want.Peer) || !slices.Equal(got.Load, tt.want.Load) ||
			got.Workers != tt.want.Workers {
			t.Errorf("planCPUs(%q, %v) = %+v, %v; want %+v, error %v", tt.flag, tt.allowed, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestGroupStatsSelf reads this test process's own group from /proc.
func TestGroupStatsSelf(t *testing.T) {
	stats, err := groupStats(syscall.Getpgrp())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(stats, func(s procStat) bool { return s.PID == os.Getpid() }) {
		t.Errorf("group %d: %+v does not hold this process %d", syscall.Getpgrp(), stats, os.Getpid())
	}
	if rss, err := groupPeakRSS(syscall.Getpgrp()); err != nil || rss <= 0 {
		t.Errorf("groupPeakRSS = %d, %v; want > 0", rss, err)
	}
}

// TestPinSelf moves the test process onto one CPU and back, and checks
// every thread each time.
func TestPinSelf(t *testing.T) {
	allowed, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(allowed) < 2 {
		t.Skipf("one CPU allowed (%v): nothing to pin apart", allowed)
	}
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	threadsOn := func(want []int) {
		t.Helper()
		tasks, err := filepath.Glob("/proc/self/task/[0-9]*")
		if err != nil || len(tasks) == 0 {
			t.Fatalf("listing threads: %v %v", tasks, err)
		}
		for _, task := range tasks {
			got, err := cpusAllowedIn(filepath.Join(task, "status"))
			if err != nil {
				continue // the thread ended
			}
			if !slices.Equal(got, want) {
				t.Errorf("thread %s allowed on %v, want %v", filepath.Base(task), got, want)
			}
		}
	}
	last := allowed[len(allowed)-1:]
	if err := pinSelf(last); err != nil {
		t.Fatal(err)
	}
	threadsOn(last)
	if runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("GOMAXPROCS = %d after pinning to one CPU, want 1", runtime.GOMAXPROCS(0))
	}
	if err := pinSelf(allowed); err != nil {
		t.Fatal(err)
	}
	threadsOn(allowed)
}

// TestSampleMemory samples a real child process: its peaks are positive
// and land in its row; a peer that did not start is left alone.
func TestSampleMemory(t *testing.T) {
	procs := &procSet{}
	defer procs.stopAll()
	p, err := procs.start("sleep", nil, filepath.Join(t.TempDir(), "out.log"), nil, "sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	// Poll until the child runs sleep itself (not the runner's forked copy
	// before exec): its comm is then "sleep".
	deadline := time.Now().Add(5 * time.Second)
	for {
		stats, err := groupStats(p.pgid())
		if err == nil && len(stats) == 1 && stats[0].Comm == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child group %d: %+v, %v", p.pgid(), stats, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := groupMembers(); !slices.Equal(m[p.pgid()], []int{p.pgid()}) {
		t.Errorf("groupMembers()[%d] = %v, want the child alone", p.pgid(), m[p.pgid()])
	}
	s := sampleMemory([]*instance{{proc: p}, nil})
	rows := []row{{Peer: "sleep"}, {Peer: "absent", Err: "start: boom"}}
	s.record(rows)
	if m := rows[0].Median; m.AnonMiB <= 0 || m.FileMiB <= 0 || rows[0].Err != "" {
		t.Errorf("sleep's row: %+v, error %q; want positive anon and file peaks", m, rows[0].Err)
	}
	if rows[1].Median != (figures{}) || rows[1].Err != "start: boom" {
		t.Errorf("absent peer's row changed: %+v", rows[1])
	}
}

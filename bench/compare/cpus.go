package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"unsafe"
)

// Shapes of the run, as the header names them.
const (
	shapePinned   = "pinned"   // the sidecar's shape: one CPU, one worker per peer
	shapeUnpinned = "unpinned" // everything shares every CPU
	shapeCustom   = "custom"   // --peer-cpus auto or a CPU list
)

// cpuPlan splits the machine between the proxies under test and the rest
// (wrk, the stand-in API and this runner: its Go clients and the wan
// relay). Every peer gets the same CPUs and the same number of workers, so
// none can win by using more cores.
type cpuPlan struct {
	Shape   string
	Peer    []int  // CPUs of the proxy under test; empty: not pinned
	Load    []int  // CPUs of wrk, the stand-in API and the runner; empty: not pinned
	Workers int    // nginx worker_processes, HAProxy nbthread, GOMAXPROCS of this proxy and Caddy
	Note    string // why the shape is not the one asked for, if it is not
}

// String describes the plan for the report header.
func (c cpuPlan) String() string {
	var s string
	switch {
	case len(c.Peer) == 0:
		s = fmt.Sprintf("shape %s: peers, wrk and the stand-in API share every CPU; %d workers per peer", c.Shape, c.Workers)
	case c.Shape == shapePinned:
		s = fmt.Sprintf("shape pinned (a sidecar with a 1-CPU limit): each peer on CPU %s with %d worker; "+
			"wrk, the stand-in API and the runner on CPU %s", cpuListString(c.Peer), c.Workers, cpuListString(c.Load))
	default:
		s = fmt.Sprintf("shape %s: peers on CPU %s (%d workers each); wrk, the stand-in API and the runner on CPU %s",
			c.Shape, cpuListString(c.Peer), c.Workers, cpuListString(c.Load))
	}
	if c.Note != "" {
		s += " (" + c.Note + ")"
	}
	return s
}

// planCPUs turns the --peer-cpus flag into a plan. "pinned" (the default)
// gives the peer under test the last allowed CPU with one worker and the
// rest to the load side; "none" (or "unpinned") pins nothing and gives
// each peer a worker per CPU; "auto" gives the peers the upper half of the
// allowed CPUs; anything else is a CPU list for the peers, the load side
// taking the rest. Pinning needs at least two CPUs: with one, the plan is
// unpinned and says so.
func planCPUs(flag string, allowed []int) (cpuPlan, error) {
	unpinned := cpuPlan{Shape: shapeUnpinned, Workers: len(allowed)}
	switch {
	case flag == "none" || flag == shapeUnpinned:
		return unpinned, nil
	case (flag == shapePinned || flag == "auto") && len(allowed) < 2:
		unpinned.Note = fmt.Sprintf("--peer-cpus %s needs 2 CPUs, this machine allows %d", flag, len(allowed))
		return unpinned, nil
	case flag == shapePinned:
		n := len(allowed)
		return cpuPlan{Shape: shapePinned, Peer: allowed[n-1:], Load: slices.Clone(allowed[:n-1]), Workers: 1}, nil
	case flag == "auto":
		half := len(allowed) / 2
		return cpuPlan{Shape: shapeCustom, Peer: allowed[len(allowed)-half:], Load: allowed[:len(allowed)-half], Workers: half}, nil
	}
	peer, err := parseCPUList(flag)
	if err != nil {
		return cpuPlan{}, fmt.Errorf("--peer-cpus: %w", err)
	}
	var load []int
	for _, c := range allowed {
		if !slices.Contains(peer, c) {
			load = append(load, c)
		}
	}
	for _, c := range peer {
		if !slices.Contains(allowed, c) {
			return cpuPlan{}, fmt.Errorf("--peer-cpus: CPU %d is not among the allowed CPUs %s", c, cpuListString(allowed))
		}
	}
	if len(load) == 0 {
		return cpuPlan{}, fmt.Errorf("--peer-cpus %s leaves no CPU for wrk and the stand-in API; use none to share", flag)
	}
	return cpuPlan{Shape: shapeCustom, Peer: peer, Load: load, Workers: len(peer)}, nil
}

// loadWorkers is the stand-in API's worker count: one per load-side CPU, or
// as many as a peer gets when nothing is pinned.
func (c cpuPlan) loadWorkers() int {
	if len(c.Load) == 0 {
		return max(1, c.Workers)
	}
	return len(c.Load)
}

// pinSelf moves every thread of this runner onto cpus, so that its Go
// clients, the wan relay and the memory sampler run on the load side and
// not on the peer's CPU. Affinity is per thread on Linux and a new thread
// inherits its creator's, so every thread listed in /proc/self/task is set;
// the list is walked twice, to catch a thread started during the first
// walk by a thread not yet moved.
func pinSelf(cpus []int) error {
	var mask [16]uint64 // 1024 CPUs, the kernel's usual cpu_set_t
	for _, c := range cpus {
		if c < 0 || c >= len(mask)*64 {
			return fmt.Errorf("CPU %d out of range for the affinity mask", c)
		}
		mask[c/64] |= 1 << (c % 64)
	}
	for range 2 {
		tasks, err := filepath.Glob("/proc/self/task/[0-9]*")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(filepath.Base(t))
			if err != nil {
				continue
			}
			_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid),
				unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
			if errno != 0 && errno != syscall.ESRCH { // ESRCH: the thread ended meanwhile
				return fmt.Errorf("sched_setaffinity(%d): %w", tid, errno)
			}
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

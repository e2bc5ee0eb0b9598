package main

import (
	"fmt"
	"slices"
)

// cpuPlan splits the machine between the proxies under test and the rest
// (wrk and the stand-in API). Every peer gets the same CPUs and the same
// number of workers, so none can win by using more cores.
type cpuPlan struct {
	Peer    []int // CPUs of the proxy under test; empty: not pinned
	Load    []int // CPUs of wrk and the stand-in API; empty: not pinned
	Workers int   // nginx worker_processes, HAProxy nbthread, GOMAXPROCS
}

// String describes the plan for the report header.
func (c cpuPlan) String() string {
	if len(c.Peer) == 0 {
		return fmt.Sprintf("not pinned, %d workers per peer", c.Workers)
	}
	return fmt.Sprintf("peers on CPU %s (%d workers each); wrk and stand-in API on CPU %s",
		cpuListString(c.Peer), c.Workers, cpuListString(c.Load))
}

// planCPUs turns the --peer-cpus flag into a plan. "auto" gives the peers
// the upper half of the allowed CPUs (at least one) and the rest to the
// load side, when there are at least two; "none" pins nothing; anything
// else is a CPU list for the peers, the load side taking the rest.
func planCPUs(flag string, allowed []int) (cpuPlan, error) {
	switch {
	case flag == "none" || (flag == "auto" && len(allowed) < 2):
		return cpuPlan{Workers: len(allowed)}, nil
	case flag == "auto":
		half := len(allowed) / 2
		return cpuPlan{Peer: allowed[len(allowed)-half:], Load: allowed[:len(allowed)-half], Workers: half}, nil
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
	return cpuPlan{Peer: peer, Load: load, Workers: len(peer)}, nil
}

// loadWorkers is the stand-in API's worker count: one per load-side CPU, or
// as many as a peer gets when nothing is pinned.
func (c cpuPlan) loadWorkers() int {
	if len(c.Load) == 0 {
		return max(1, c.Workers)
	}
	return len(c.Load)
}

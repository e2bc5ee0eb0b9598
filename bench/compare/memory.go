package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// memEvery is how often the sampler reads the peers' memory; memRescan is
// how many samples pass between two reads of the process groups'
// membership (a reload replaces nginx's and HAProxy's workers).
const (
	memEvery  = 50 * time.Millisecond
	memRescan = 20
)

// memSampler follows the resident memory of the peers of one scenario,
// from their start through warm-up and every measured run, and keeps each
// peer's peak of RssAnon and of RssFile, each summed over the peer's
// processes (nginx master and workers, HAProxy master and worker). The two
// peaks are kept apart: a pod's memory limit is spent on anonymous pages,
// while file-backed ones (the binary's text) are shared and reclaimable.
// VmHWM cannot tell them apart, hence the sampling.
type memSampler struct {
	groups []int // process group per peer; 0 for a peer that did not start
	stop   chan struct{}
	done   chan struct{}

	mu   sync.Mutex
	peak []memUse
	errs []error // first read error per peer
}

// sampleMemory starts sampling the process groups of ins (nil entries are
// skipped) until stop is called.
func sampleMemory(ins []*instance) *memSampler {
	s := &memSampler{groups: make([]int, len(ins)), stop: make(chan struct{}), done: make(chan struct{}),
		peak: make([]memUse, len(ins)), errs: make([]error, len(ins))}
	for i, in := range ins {
		if in != nil {
			s.groups[i] = in.proc.pgid()
		}
	}
	go s.loop()
	return s
}

func (s *memSampler) loop() {
	defer close(s.done)
	tick := time.NewTicker(memEvery)
	defer tick.Stop()
	var members map[int][]int
	for n := 0; ; n++ {
		if n%memRescan == 0 {
			members = groupMembers()
		}
		if !s.sample(members) {
			members = groupMembers() // a process left: see who is there now
		}
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// sample reads every peer's processes once and raises the peaks; it
// reports false when a process it expected was gone.
func (s *memSampler) sample(members map[int][]int) bool {
	complete := true
	for i, g := range s.groups {
		if g == 0 {
			continue
		}
		var sum memUse
		for _, pid := range members[g] {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				complete = false // exited; the next rescan drops it
				continue
			}
			m, err := parseMemStatus(string(b))
			if errors.Is(err, errNoMemory) {
				continue // exiting: it holds no memory any more
			}
			if err != nil {
				s.mu.Lock()
				if s.errs[i] == nil {
					s.errs[i] = fmt.Errorf("process %d: %w", pid, err)
				}
				s.mu.Unlock()
				continue
			}
			sum.Anon += m.Anon
			sum.File += m.File
		}
		s.mu.Lock()
		s.peak[i].Anon = max(s.peak[i].Anon, sum.Anon)
		s.peak[i].File = max(s.peak[i].File, sum.File)
		s.mu.Unlock()
	}
	return complete
}

// record stops the sampler and writes each peer's peaks into the median
// figures of its row; rows must be in the order of the instances given to
// sampleMemory.
func (s *memSampler) record(rows []row) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range rows {
		if s.groups[i] == 0 {
			continue
		}
		rows[i].Median.AnonMiB = float64(s.peak[i].Anon) / (1 << 20)
		rows[i].Median.FileMiB = float64(s.peak[i].File) / (1 << 20)
		if s.errs[i] != nil && rows[i].Err == "" {
			rows[i].Err = "memory: " + s.errs[i].Error()
		}
	}
}

// groupMembers maps each process group to its processes' pids, from one
// walk of /proc; an unreadable /proc gives an empty map (no samples).
func groupMembers() map[int][]int {
	stats, err := scanProcs()
	if err != nil {
		return nil
	}
	m := map[int][]int{}
	for _, st := range stats {
		m[st.PGRP] = append(m[st.PGRP], st.PID)
	}
	return m
}

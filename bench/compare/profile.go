package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// profileSeq numbers the profiles of a run.
var profileSeq atomic.Int64

// profile takes, with --cpuprofile, a CPU profile of this proxy (in) while
// a measured run of about d goes on: its admin port's /debug/pprof/profile
// (PAYRAILS_PROXY_DEBUG_PPROF=1, set by proxyArgv), saved in the folder as
// NNN-peer.pprof. The returned function waits for the profile to be
// written. Other peers, and runs without the flag, take none.
func (b *bench) profile(ctx context.Context, in *instance, d time.Duration) func() {
	if b.opts.cpuProfiles == "" || in.Tool != "" {
		return func() {}
	}
	secs := max(int(d/time.Second)-1, 1) // inside the run: the warm-up and the tail are not the load's
	path := filepath.Join(b.opts.cpuProfiles, fmt.Sprintf("%03d-%s.pprof", profileSeq.Add(1), in.Name))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := fetchProfile(ctx, in.admin, secs, path); err != nil {
			b.progress("cpuprofile of %s: %v", in.Name, err)
		}
	})
	return wg.Wait
}

// fetchProfile saves admin's CPU profile of secs seconds to path.
func fetchProfile(ctx context.Context, admin string, secs int, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(secs+30) * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

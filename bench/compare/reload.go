package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// reloadWait bounds how long a peer may take to complete a reload (or this
// proxy to take a new certificate).
const reloadWait = 30 * time.Second

// pollEvery is how often a reload's completion is checked.
const pollEvery = 5 * time.Millisecond

// poll calls check every pollEvery until it reports done, returns an
// error, ctx ends or limit passes; the timeout error names what was
// awaited and the last state check described.
func poll(ctx context.Context, limit time.Duration, what string, check func() (done bool, state string, err error)) error {
	deadline := time.Now().Add(limit)
	for {
		done, state, err := check()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done within %s (%s)", what, limit, state)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// reloadNginx: SIGHUP to the master (what nginx -s reload sends) makes it
// read the configuration and certificate files, start new workers and
// stop the old ones gracefully.
func reloadNginx(ctx context.Context, in *instance) error {
	return in.replaceWorkers(ctx, syscall.SIGHUP, in.cpus.Workers)
}

// reloadHAProxy: SIGUSR2 to the master of master-worker mode (what
// systemctl reload haproxy sends) makes it re-execute itself, start a new
// worker with the new files and soft-stop the old one.
func reloadHAProxy(ctx context.Context, in *instance) error {
	return in.replaceWorkers(ctx, syscall.SIGUSR2, 1)
}

// replaceWorkers sends sig to the peer's master process and returns once
// the reload is complete: none of the workers of before is left (so no
// request can reach one), want new ones run, and each waits in
// epoll_wait(2) for work, that is, has finished starting. The request
// timed next is then the first a new worker serves.
func (in *instance) replaceWorkers(ctx context.Context, sig syscall.Signal, want int) error {
	before, err := in.workers()
	if err != nil {
		return err
	}
	var old []int
	for _, w := range before {
		old = append(old, w.PID)
	}
	if err := syscall.Kill(in.proc.pgid(), sig); err != nil {
		return fmt.Errorf("signalling %s: %w", in.Name, err)
	}
	return poll(ctx, reloadWait, in.Name+" reload", func() (bool, string, error) {
		if in.proc.exited() {
			return false, "", fmt.Errorf("%s exited during its reload:\n%s", in.Name, in.proc.logTail())
		}
		cur, err := in.workers()
		if err != nil {
			return false, err.Error(), nil
		}
		state := fmt.Sprintf("workers before %v, now %v", old, cur)
		if len(cur) != want {
			return false, state, nil
		}
		for _, w := range cur {
			if slices.Contains(old, w.PID) || !idleInPoll(w) {
				return false, state, nil
			}
		}
		return true, state, nil
	})
}

// workers are the peer's processes other than the master (the group
// leader).
func (in *instance) workers() ([]procStat, error) {
	stats, err := groupStats(in.proc.pgid())
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(stats, func(s procStat) bool { return s.PID == in.proc.pgid() }), nil
}

// idleInPoll reports whether process st sleeps in epoll_wait(2): state S
// and /proc/PID/wchan naming the epoll wait. Where the kernel hides wchan
// (it reads "0"), state S alone is taken.
func idleInPoll(st procStat) bool {
	if st.State != "S" {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", st.PID))
	if err != nil {
		return false // gone
	}
	return wchanIsPoll(string(b))
}

// wchanIsPoll reports whether a /proc/PID/wchan value is an epoll wait
// (do_epoll_wait, ep_poll), or hidden ("0", empty).
func wchanIsPoll(wchan string) bool {
	w := strings.TrimSpace(wchan)
	return w == "" || w == "0" || strings.Contains(w, "epoll") || w == "ep_poll"
}

// reloadStunnel: SIGHUP makes stunnel read its configuration and
// certificate files again, close its listening socket and bind it anew; it
// logs "Service [api] (FD=n) bound to ADDR" (at info, the global log
// level of stunnelConf) when the socket listens again, the last step.
func reloadStunnel(ctx context.Context, in *instance) error {
	mark := "bound to " + in.addr
	countIn := func() (bound, failed int, err error) {
		b, err := os.ReadFile(in.proc.logPath)
		s := string(b)
		return strings.Count(s, mark), strings.Count(s, "Failed to reload"), err
	}
	bound, failed, err := countIn()
	if err != nil {
		return err
	}
	if err := syscall.Kill(in.proc.pgid(), syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling %s: %w", in.Name, err)
	}
	return poll(ctx, reloadWait, in.Name+" reload", func() (bool, string, error) {
		b, f, err := countIn()
		switch {
		case err != nil:
			return false, "", err
		case f > failed:
			return false, "", fmt.Errorf("stunnel could not reload:\n%s", in.proc.logTail())
		}
		return b > bound, fmt.Sprintf("%q logged %d times, %d before the reload", mark, b, bound), nil
	})
}

// reloadCaddy runs caddy reload, which posts the configuration to the
// admin API's /load and returns once Caddy runs it (--force: the
// configuration text is the same, only the certificate files changed).
func reloadCaddy(ctx context.Context, in *instance) error {
	_, err := runOnce(ctx, reloadWait, in.cpus.Load, in.tool, "reload", "--config", in.confPath,
		"--adapter", "caddyfile", "--address", in.admin, "--force")
	return err
}

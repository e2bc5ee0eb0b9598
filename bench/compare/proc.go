package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a stopped process group gets between SIGTERM and
// SIGKILL.
const stopGrace = 3 * time.Second

// proc is a child started in its own process group, so that it and every
// process it forks (nginx workers) are measured and stopped together. Its
// output goes to a log file, shown when it fails.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the child has been reaped
	waitErr error         // valid after done is closed
}

// procSet owns every long-running child: stopAll stops those still running.
// It is safe for concurrent use.
type procSet struct {
	mu    sync.Mutex
	procs []*proc
}

// start runs args[0] with args[1:], pinned to cpus when cpus is not empty
// (through taskset, which execs the program under the same pid), its
// stdout and stderr appended to logPath. env entries are added to the
// runner's environment.
func (s *procSet) start(name string, cpus []int, logPath string, env []string, args ...string) (*proc, error) {
	if len(cpus) > 0 {
		args = append([]string{"taskset", "-c", cpuListString(cpus)}, args...)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: opening log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// Own group: Ctrl-C at the terminal reaches only the runner, which then
	// stops each group itself. Pdeathsig: a runner killed with SIGKILL takes
	// the child (the group leader) with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", name, args[0], err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// stopAll stops every child still running, most recent first.
func (s *procSet) stopAll() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
}

// pgid is the process group of the child and of everything it forked.
func (p *proc) pgid() int { return p.cmd.Process.Pid }

// exited reports whether the child has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the whole group, then SIGKILL after stopGrace, and
// waits for the child to be reaped. It is idempotent.
func (p *proc) stop() {
	_ = syscall.Kill(-p.pgid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
	}
	// Whatever is left of the group (workers of a leader that already
	// exited included) gets SIGKILL.
	_ = syscall.Kill(-p.pgid(), syscall.SIGKILL)
	<-p.done
}

// logTail returns the last lines the child wrote.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// waitListening polls addr until it accepts a TCP connection, the child
// exits, ctx ends, or timeout passes.
func (p *proc) waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before listening on %s:\n%s", p.name, p.waitErr, addr, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %s:\n%s", p.name, addr, timeout, p.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runOnce runs a short-lived command to completion (wrk, the build) in its
// own process group, pinned to cpus when given, and returns its combined
// output. It is stopped when ctx ends or after limit.
func runOnce(ctx context.Context, limit time.Duration, cpus []int, args ...string) (string, error) {
	if len(cpus) > 0 {
		args = append([]string{"taskset", "-c", cpuListString(cpus)}, args...)
	}
	var out strings.Builder
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("%s: %w:\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String(), nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return out.String(), ctx.Err()
	case <-timer.C:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return out.String(), fmt.Errorf("%s: still running after %s, killed", args[0], limit)
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. Another process could take it before the caller binds it; on this
// benchmark machine nothing else is expected to.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// cpuListString formats CPUs for taskset -c.
func cpuListString(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

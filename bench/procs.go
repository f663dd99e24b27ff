//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// proc is a child process of the benchmark. Its methods may be called from
// any goroutine.
type proc struct {
	// name says what the process is, in errors.
	name string
	// cmd is the running command.
	cmd *exec.Cmd
	// started is the time just before the fork.
	started time.Time
	// done is closed when the process has exited and err is set.
	done chan struct{}
	// err is what cmd.Wait returned; read it only after done is closed.
	err error
}

// startProc starts cmd, inside ns when ns is not nil (forked from a thread
// that entered it, as `ip netns exec` does), else in the benchmark's own
// namespace. The child gets SIGKILL if the benchmark dies. The forking
// thread stays locked and alive until the child exits, because the kernel
// sends the parent-death signal when that thread ends; then it is
// discarded, so no goroutine ever runs in the namespace by accident.
func startProc(ns *netNS, name string, cmd *exec.Cmd) (*proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	startErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if ns != nil {
			if err := unix.Setns(int(ns.file.Fd()), unix.CLONE_NEWNET); err != nil {
				startErr <- fmt.Errorf("setns: %w", err)
				return
			}
		}
		p.started = time.Now()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-startErr; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits for the process to exit and returns its error. When ctx ends
// first, the process is killed and wait still waits (at most 5 s) for it.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.pid())
	}
}

// stop sends SIGTERM, waits up to grace for the process to exit, then
// kills it. It returns an error if the process had to be killed or exited
// with a failure after SIGTERM. It may be called more than once.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		var exit *exec.ExitError
		if errors.As(p.err, &exit) && exit.Sys().(syscall.WaitStatus).Signaled() {
			return nil // killed by the SIGTERM we sent, as ip and nats are
		}
		return p.err
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("%s (pid %d) did not stop within %v of SIGTERM; killed", p.name, p.pid(), grace)
}

// alive returns an error if the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) exited: %v", p.name, p.pid(), p.err)
	default:
		return nil
	}
}

// cpuTime returns the CPU time (utime+stime, every thread) that process pid
// has used, from /proc/PID/stat, in steps of clockTick.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// execTime returns the CPU time that process pid's live threads have used,
// to the nanosecond: the sum of se.sum_exec_runtime (in ms) of
// /proc/PID/task/*/sched. utime and stime come in 10 ms ticks, too coarse
// for `ip monitor` over a burst, and this kernel keeps no schedstats.
// Threads that have exited are missing; the processes measured keep theirs.
func execTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/sched", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("/proc/%d/task/*/sched: none (%v)", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			return 0, err
		}
		found := false
		for line := range strings.Lines(string(b)) {
			v, ok := strings.CutPrefix(line, "se.sum_exec_runtime")
			if !ok {
				continue
			}
			_, v, _ = strings.Cut(v, ":")
			ms, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", t, err)
			}
			sum += time.Duration(ms * 1e6)
			found = true
		}
		if !found {
			return 0, fmt.Errorf("%s: no se.sum_exec_runtime", t)
		}
	}
	return sum, nil
}

// runqWait returns the time that process pid's live threads have spent
// runnable but waiting for a CPU: the sum of the second field of
// /proc/PID/task/*/schedstat (ns). When it grows with a path's latency,
// the machine, not the path, made the wait.
func runqWait(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("/proc/%d/task/*/schedstat: none (%v)", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0, fmt.Errorf("%s: %q", t, b)
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", t, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// switches returns how many times process pid's live threads have left
// the CPU: voluntary_ctxt_switches (to sleep) plus
// nonvoluntary_ctxt_switches (preempted) of /proc/PID/task/*/status. It
// is returned as a Duration of that many nanoseconds, to be summed by
// cpuTimes.
func switches(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("/proc/%d/task/*/status: none (%v)", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			return 0, err
		}
		for line := range strings.Lines(string(b)) {
			for _, f := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if v, ok := strings.CutPrefix(line, f); ok {
					n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					if err != nil {
						return 0, fmt.Errorf("%s: %w", t, err)
					}
					sum += time.Duration(n)
				}
			}
		}
	}
	return sum, nil
}

// cpuTimes returns the CPU time of every process in ps together, as
// measured by f (cpuTime or execTime).
func cpuTimes(f func(int) (time.Duration, error), ps ...*proc) (time.Duration, error) {
	var sum time.Duration
	for _, p := range ps {
		d, err := f(p.pid())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.name, err)
		}
		sum += d
	}
	return sum, nil
}

// statusKiB returns a field in kB of /proc/PID/status, such as VmHWM (the
// peak resident set size) or VmRSS.
func statusKiB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		return strconv.Atoi(v)
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

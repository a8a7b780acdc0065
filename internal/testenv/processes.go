package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
)

// processes is a set of long-running child processes, each in a process group of its own,
// stopped in the reverse of their start order: what Cluster and Flux run.
type processes struct {
	procs    []*component // in start order
	stopOnce sync.Once
	stopErr  error
}

// launch starts bin with args in dir with env, its output appended to the log file logPath,
// and records it as name.
func (ps *processes) launch(name, bin, dir, logPath string, env []string, args ...string) (*component, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childSysProcAttr(true)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &component{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	ps.procs = append(ps.procs, p)
	return p, nil
}

// stopAll stops the processes, last started first (SIGTERM to each process group, SIGKILL
// after stopGrace), then removes dir, the temp dir of what, once: later calls return the
// first result.
func (ps *processes) stopAll(dir, what string) error {
	ps.stopOnce.Do(func() {
		var errs []error
		for i := len(ps.procs) - 1; i >= 0; i-- {
			if err := ps.procs[i].stop(stopGrace); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s dir: %w", what, err))
		}
		ps.stopErr = errors.Join(errs...)
	})
	return ps.stopErr
}

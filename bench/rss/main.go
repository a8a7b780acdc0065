// Command rss runs a command and writes its peak resident set size and wall time to a file.
//
//	rss OUT COMMAND [ARG...]
//
// It exists because the benchmark harness cannot read a child's peak RSS itself: Go starts
// children with vfork (CLONE_VM), and when the child calls exec, Linux records the high-water
// RSS of the memory it leaves, the parent's, in the child's maximum RSS. This program uses
// only the standard library, so what it passes on that way is its own few megabytes; the
// COMMAND's maximum RSS (getrusage through wait4, the largest process of its tree) is then
// its own. OUT receives "MAXRSS_BYTES WALL_NANOSECONDS CPU_NANOSECONDS\n" (CPU: user +
// system time of COMMAND and the children it waited for); the exit code is COMMAND's.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: rss OUT COMMAND [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// If the harness kills this process, the command dies too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if code < 0 {
			code = 128 + 9
		}
	case err != nil:
		fmt.Fprintf(os.Stderr, "rss: %v\n", err)
		os.Exit(127)
	}
	var maxRSS int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if err := os.WriteFile(os.Args[1], fmt.Appendf(nil, "%d %d %d\n", maxRSS, wall.Nanoseconds(), cpu.Nanoseconds()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "rss: %v\n", err)
		os.Exit(127)
	}
	os.Exit(code)
}

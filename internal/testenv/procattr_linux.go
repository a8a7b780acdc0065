package testenv

import "syscall"

// childSysProcAttr returns the process attributes of a child server
// process: in its own process group if group is set (so it can be
// signalled with everything it starts, and a terminal's Ctrl-C reaches only
// the test binary), and SIGKILLed by the kernel when the thread that
// started it dies, so a crashed or killed parent leaves nothing running.
func childSysProcAttr(group bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: group, Pdeathsig: syscall.SIGKILL}
}

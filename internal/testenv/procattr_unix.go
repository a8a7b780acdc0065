//go:build unix && !linux

package testenv

import "syscall"

// childSysProcAttr returns the process attributes of a child server
// process: in its own process group if group is set. Outside Linux there is
// no parent-death signal, so children of a killed parent keep running.
func childSysProcAttr(group bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: group}
}

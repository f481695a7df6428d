package azurite

import "syscall"

// procAttr makes the kernel kill Azurite if the test binary dies without
// stopping it (a panic, a timeout, a kill).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

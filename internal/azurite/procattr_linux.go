package azurite

import "syscall"

// procAttr makes the kernel kill Azurite if its parent dies without
// stopping it (a panic, a timeout, a kill), and gives it its own process
// group when asked.
func procAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: ownGroup}
}

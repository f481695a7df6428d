//go:build !linux

package azurite

import "syscall"

// procAttr: elsewhere than Linux, Azurite runs as a plain child.
func procAttr(bool) *syscall.SysProcAttr { return nil }

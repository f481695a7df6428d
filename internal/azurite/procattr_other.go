//go:build !linux

package azurite

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }

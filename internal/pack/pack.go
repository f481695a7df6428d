// Package pack holds kvwatch's default configuration and rule pack,
// embedded in the binary, and the pack's rule tests.
package pack

import (
	"embed"
	_ "embed"
)

// Config is the default kvwatch.yaml.
//
//go:embed kvwatch.yaml
var Config []byte

// Tests holds the default pack's rule tests (tests/*.yaml).
//
//go:embed tests
var Tests embed.FS

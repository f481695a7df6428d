package stats

import "github.com/kvwatch/kvwatch/internal/audit"

// PositionOf exposes the collector's position derivation to tests.
func PositionOf(s audit.Source) (string, int64) {
	var p audit.Streams
	return p.Position(&s)
}

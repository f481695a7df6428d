package config

import (
	"errors"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Day and Week are the units "d" and "w" of a Duration: 24h and 7d. Days
// are always 24 hours: windows are measured in event time, not on a
// calendar.
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond,
	"us": time.Microsecond,
	"µs": time.Microsecond,
	"ms": time.Millisecond,
	"s":  time.Second,
	"m":  time.Minute,
	"h":  time.Hour,
	"d":  Day,
	"w":  Week,
}

var (
	errDurationNegative = errors.New("must not be negative")
	errDurationUnit     = errors.New(`is missing a unit (s, m, h, d or w; e.g. "90s", "5m", "1h30m", "7d")`)
	errDurationSyntax   = errors.New(`is not a duration (write e.g. "90s", "5m", "1h30m", "7d" or "2w")`)
	errDurationRange    = errors.New("is too long")
)

// ParseDuration reads a duration as kvwatch.yaml writes it: what
// time.ParseDuration accepts ("90s", "5m", "1h30m", "1.5h") plus the units
// d (24h) and w (7d), freely combined ("1w2d", "1d12h"), or a bare "0".
// Negative durations are rejected.
func ParseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, errDurationSyntax
	}
	if s[0] == '-' {
		if d, err := ParseDuration(s[1:]); err == nil && d != 0 {
			return 0, errDurationNegative
		}
		return 0, errDurationSyntax
	}
	var total time.Duration
	for rest := s; rest != ""; {
		// The number: digits, optionally a fraction.
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		intPart := rest[:i]
		fracPart := ""
		if i < len(rest) && rest[i] == '.' {
			j := i + 1
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			fracPart = rest[i+1 : j]
			i = j
		}
		if intPart == "" && fracPart == "" {
			return 0, errDurationSyntax
		}
		// The unit: everything up to the next digit or dot.
		j := i
		for j < len(rest) && rest[j] != '.' && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		unitName := rest[i:j]
		rest = rest[j:]
		if unitName == "" {
			return 0, errDurationUnit
		}
		unit, ok := durationUnits[unitName]
		if !ok {
			return 0, errDurationSyntax
		}
		v, ok := scaleDuration(intPart, fracPart, unit)
		if !ok || total > math.MaxInt64-v {
			return 0, errDurationRange
		}
		total += v
	}
	return total, nil
}

// scaleDuration returns int.frac × unit, reporting overflow.
func scaleDuration(intPart, fracPart string, unit time.Duration) (time.Duration, bool) {
	var n int64
	for _, c := range intPart {
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if n > math.MaxInt64/int64(unit) {
		return 0, false
	}
	v := n * int64(unit)
	// The fraction, to nanosecond precision (extra digits are dropped).
	scale := int64(unit)
	var f int64
	for _, c := range fracPart {
		if scale < 10 {
			break
		}
		scale /= 10
		f += int64(c-'0') * scale
	}
	if v > math.MaxInt64-f {
		return 0, false
	}
	return time.Duration(v + f), true
}

// FormatDuration writes d the way ParseDuration reads it, with the largest
// units that fit exactly: "2w", "1d12h", "1h30m", "90ms", "0".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	if d%time.Second != 0 {
		return d.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"w", Week}, {"d", Day}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if n := d / u.d; n > 0 {
			b.WriteString(itoa(int64(n)))
			b.WriteString(u.name)
			d -= n * u.d
		}
	}
	return b.String()
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}

// UnmarshalYAML reads a Duration with ParseDuration, for code that decodes
// with yaml.Unmarshal directly rather than through Parse. A null leaves the
// Duration unset.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return errors.New("duration: expected a string such as \"5m\"")
	}
	if n.ShortTag() == nullTag {
		*d = Duration{}
		return nil
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return errors.New("duration " + quote(n.Value) + " " + err.Error())
	}
	*d = Duration{Duration: v, Set: true}
	return nil
}

// MarshalYAML writes a set Duration as FormatDuration does and an unset one
// as null, so that a File written out reads back the same.
func (d Duration) MarshalYAML() (any, error) {
	if !d.Set {
		return nil, nil
	}
	return FormatDuration(d.Duration), nil
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/config"
)

// errHelp says -h or --help was asked for and the usage was printed: the
// command did nothing else, and kvwatch exits 0.
var errHelp = errors.New("help shown")

// flags is a subcommand's flag set with the usage --help prints.
type flags struct {
	*flag.FlagSet
	synopsis string // "kvwatch rules check [--config FILE] [FILE]"
	about    string // what it does, a few lines
	args     []string
}

func newFlags(name, synopsis, about string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse reports errors itself
	fs.Usage = func() {}
	return &flags{FlagSet: fs, synopsis: synopsis, about: about}
}

// usage writes the full usage: synopsis, what it does, every flag.
func (f *flags) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n", f.synopsis)
	if f.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.Trim(f.about, "\n"))
	}
	has := false
	f.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		f.SetOutput(w)
		f.PrintDefaults()
		f.SetOutput(io.Discard)
	}
}

// parse reads flags anywhere among args (flags after a path count too, so
// no flag is ever taken for a path) and keeps the rest in f.args. "--"
// ends the flags; "-" is an argument (standard input). -h or --help
// prints the usage on stdout and returns errHelp; a bad flag, or an
// argument that looks like a flag, is a usageError naming it.
func (f *flags) parse(args []string, stdout io.Writer) error {
	f.args = nil
	for {
		err := f.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			f.usage(stdout)
			return errHelp
		}
		if err != nil {
			return usageError{fmt.Errorf("%s: %w (see %s --help)", f.Name(), err, "kvwatch "+f.Name())}
		}
		rest := f.Args()
		if len(rest) == 0 {
			return nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			f.args = append(f.args, rest...) // after "--" everything is an argument
			return nil
		}
		f.args = append(f.args, rest[0])
		args = rest[1:]
	}
}

// arg returns the i-th argument, "" when there are fewer.
func (f *flags) arg(i int) string {
	if i < len(f.args) {
		return f.args[i]
	}
	return ""
}

// noArgs refuses arguments for a command that takes none.
func (f *flags) noArgs() error {
	if len(f.args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q (see kvwatch %s --help)", f.Name(), f.args, f.Name())}
	}
	return nil
}

// isHelp reports whether a group command (rules, alerts, ...) was asked
// for its usage rather than given a subcommand.
func isHelp(args []string) bool {
	return len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help")
}

// groupUsage answers a group command with no or an unknown subcommand:
// its usage on stdout and exit 0 when asked for help, else on stderr as a
// usage error.
func groupUsage(args []string, usage string, stdout io.Writer) error {
	if isHelp(args) {
		fmt.Fprint(stdout, usage)
		return errHelp
	}
	if len(args) == 0 {
		return usageError{errors.New("a subcommand is needed\n\n" + strings.TrimRight(usage, "\n"))}
	}
	return usageError{fmt.Errorf("unknown subcommand %q\n\n%s", args[0], strings.TrimRight(usage, "\n"))}
}

// timeHelp lists the forms parseTime accepts, for flag help and errors.
const timeHelp = "RFC 3339 (2026-03-01T22:00:00Z), a date (2026-03-01, midnight UTC), now, today, yesterday, or an age such as -2h, \"2h ago\" or -7d"

// parseTime reads a point in time as people type it: RFC 3339 (with or
// without fractions), a date (midnight UTC), "now", "today", "yesterday"
// (midnight UTC), or an age before now: "-2h", "2h ago", "-7d".
func parseTime(s string, now time.Time) (time.Time, error) {
	v := strings.TrimSpace(s)
	now = now.UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch strings.ToLower(v) {
	case "now":
		return now, nil
	case "today":
		return midnight, nil
	case "yesterday":
		return midnight.AddDate(0, 0, -1), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	age := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(v, "-"), "ago"))
	if age != "" && (strings.HasPrefix(v, "-") || strings.HasSuffix(v, "ago")) {
		if d, err := config.ParseDuration(age); err == nil && d >= 0 {
			return now.Add(-d), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: give %s", s, timeHelp)
}

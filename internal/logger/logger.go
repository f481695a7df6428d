// Package logger builds kvwatch's zerolog logger: JSON lines on stdout for
// the Functions host, or a readable console form when stderr is a terminal.
package logger

import (
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Options choose where and how the logger writes.
type Options struct {
	Level   string    // debug, info, warn, error; info when empty or unknown
	Console bool      // force the console form
	JSON    bool      // force JSON even on a terminal
	Out     io.Writer // JSON destination; os.Stdout when nil
	Err     io.Writer // console destination; os.Stderr when nil
}

// New returns a logger for opts. The caller passes it down; there is no
// global logger.
func New(opts Options) zerolog.Logger {
	out, errw := opts.Out, opts.Err
	if out == nil {
		out = os.Stdout
	}
	if errw == nil {
		errw = os.Stderr
	}
	var w io.Writer = out
	tty := false
	if f, ok := errw.(*os.File); ok {
		tty = IsTerminal(f)
	}
	console := opts.Console || (tty && !opts.JSON)
	if console {
		w = zerolog.ConsoleWriter{Out: errw, TimeFormat: time.TimeOnly, NoColor: !tty}
	}
	lvl, err := zerolog.ParseLevel(opts.Level)
	if err != nil || opts.Level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

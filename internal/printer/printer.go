// Package printer writes what the pipeline produces for a person or a
// program to read: text lines with every attacker-controlled value quoted
// when it holds anything but plain characters, or one JSON object per line.
package printer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

// Format is an output format.
type Format string

// Formats.
const (
	Text Format = "text"
	JSON Format = "json"
)

// ParseFormat validates a --output value.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case Text, JSON:
		return Format(s), nil
	}
	return "", fmt.Errorf("unknown output format %q (want text or json)", s)
}

// Events prints normalized events; it is a pipeline.Stage.
type Events struct {
	mu     sync.Mutex
	w      *bufio.Writer
	format Format
}

// NewEvents returns a printer of events to w.
func NewEvents(w io.Writer, f Format) *Events {
	return &Events{w: bufio.NewWriterSize(w, 64<<10), format: f}
}

// Consume implements pipeline.Stage.
func (p *Events) Consume(_ context.Context, events []audit.Event) (pipeline.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range events {
		if err := p.write(&events[i]); err != nil {
			return pipeline.Result{}, err
		}
	}
	return pipeline.Result{}, nil
}

// Flush writes buffered output.
func (p *Events) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Flush()
}

func (p *Events) write(e *audit.Event) error {
	if p.format == JSON {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("print event: %w", err)
		}
		b = append(b, '\n')
		_, err = p.w.Write(b)
		return err
	}
	_, err := io.WriteString(p.w, EventLine(e)+"\n")
	return err
}

// EventLine is the one-line text form of an event.
func EventLine(e *audit.Event) string {
	b := make([]byte, 0, 160)
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, ' ')
	b = appendSafe(b, e.Vault)
	b = append(b, ' ')
	b = appendSafe(b, e.Operation)
	if e.ObjectName != "" {
		b = append(b, ' ')
		b = appendSafe(b, e.ObjectType+"/"+e.ObjectName)
	}
	b = append(b, ' ')
	b = append(b, e.Outcome...)
	if e.HTTPStatus != 0 {
		b = append(b, '(')
		b = strconv.AppendInt(b, int64(e.HTTPStatus), 10)
		b = append(b, ')')
	}
	b = append(b, " caller="...)
	name := e.Caller.Display()
	b = appendSafe(b, name)
	if e.CallerIP != "" {
		b = append(b, " ip="...)
		b = appendSafe(b, e.CallerIP)
	}
	if c := e.Config; c != nil {
		b = append(b, " config:"...)
		if c.NetworkDefaultAction != "" {
			b = append(b, " network="...)
			b = appendSafe(b, c.NetworkDefaultAction)
		}
		if c.PublicNetworkAccess != "" {
			b = append(b, " public="...)
			b = appendSafe(b, c.PublicNetworkAccess)
		}
		if c.PurgeProtection != nil {
			b = append(b, " purgeProtection="...)
			b = strconv.AppendBool(b, *c.PurgeProtection)
		}
		if c.RBACAuthorization != nil {
			b = append(b, " rbac="...)
			b = strconv.AppendBool(b, *c.RBACAuthorization)
		}
	}
	if len(e.Truncated) > 0 {
		// Values cut to their bound end in "…#<hash>": say which.
		b = append(b, " truncated="...)
		for i, f := range e.Truncated {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendSafe(b, f)
		}
	}
	return string(b)
}

// appendSafe appends s as is when it is non-empty and made only of
// printable, non-space characters and no quotes; otherwise quoted with Go
// escapes, so no log content can move the cursor, color the terminal or
// forge a line.
func appendSafe(b []byte, s string) []byte {
	if s == "" {
		return append(b, `""`...)
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || r == '"' || r == '\\' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return strconv.AppendQuote(b, s)
		}
		i += n
	}
	return append(b, s...)
}

// Safe returns s in the form appendSafe writes it.
func Safe(s string) string { return string(appendSafe(nil, s)) }

// Duration formats a duration for summaries.
func Duration(d time.Duration) string { return d.Round(time.Millisecond).String() }

// Clean keeps s readable as one line of text: spaces and quotes stay,
// while control, format and invalid characters are written as Go escapes
// (\n, \x1b, \u202e), so log content cannot forge lines or drive the
// terminal.
func Clean(s string) string {
	ok := true
	for _, r := range s {
		if r == utf8.RuneError || (!unicode.IsPrint(r) && r != ' ') {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (!unicode.IsPrint(r) && r != ' ') {
			q := strconv.QuoteToASCII(s[i : i+n])
			b = append(b, q[1:len(q)-1]...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

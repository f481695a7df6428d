package printer

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/finding"
)

// Findings prints findings; it is a detect.Sink. Text output is held
// until Flush and printed in event-time order (replay reads files in path
// order, not time order); JSON is written as it comes.
type Findings struct {
	mu     sync.Mutex
	w      *bufio.Writer
	format Format
	n      int
	held   []finding.Finding
	seen   map[string]bool
}

// NewFindings returns a printer of findings to w.
func NewFindings(w io.Writer, f Format) *Findings {
	return &Findings{w: bufio.NewWriterSize(w, 32<<10), format: f}
}

// Found implements detect.Sink.
func (p *Findings) Found(_ context.Context, fs []finding.Finding) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	for i := range fs {
		if p.seen[fs[i].ID] {
			continue // handed on again: printed already
		}
		p.seen[fs[i].ID] = true
		p.n++
		if p.format == JSON {
			b, err := json.Marshal(&fs[i])
			if err != nil {
				return fmt.Errorf("print finding: %w", err)
			}
			if _, err := p.w.Write(append(b, '\n')); err != nil {
				return err
			}
			continue
		}
		p.held = append(p.held, fs[i])
	}
	return nil
}

// Count returns how many findings were printed.
func (p *Findings) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// Flush writes buffered output.
func (p *Findings) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.SortStableFunc(p.held, func(a, b finding.Finding) int {
		return cmp.Or(a.FirstEvent.Compare(b.FirstEvent), cmp.Compare(a.Rule, b.Rule))
	})
	for i := range p.held {
		if _, err := io.WriteString(p.w, FindingText(&p.held[i])); err != nil {
			return err
		}
	}
	p.held = p.held[:0]
	return p.w.Flush()
}

// FindingText is the text form of a finding: a header line and indented
// detail lines, every log-derived value escaped.
func FindingText(f *finding.Finding) string {
	var b strings.Builder
	at := f.FirstEvent
	if at.IsZero() {
		at = f.WindowStart
	}
	fmt.Fprintf(&b, "%s %-8s %s  %s\n", at.UTC().Format("2006-01-02T15:04Z"),
		strings.ToUpper(f.Severity.String()), f.Rule, f.Title)
	fmt.Fprintf(&b, "    %s\n", Clean(f.Summary))
	var g []string
	for _, p := range f.Group {
		g = append(g, p.Field+"="+Safe(p.Value))
	}
	if len(g) > 0 {
		fmt.Fprintf(&b, "    group: %s\n", strings.Join(g, " "))
	}
	if !f.FirstEvent.IsZero() {
		fmt.Fprintf(&b, "    events: %s .. %s", f.FirstEvent.UTC().Format(time.TimeOnly), f.LastEvent.UTC().Format(time.TimeOnly))
		if f.Threshold > 0 {
			fmt.Fprintf(&b, "  count %d, threshold %d", f.Count, f.Threshold)
		}
		if f.Baseline != nil {
			fmt.Fprintf(&b, "  baseline mean %.1f sd %.1f", f.Baseline.Mean, f.Baseline.StdDev)
		}
		b.WriteByte('\n')
	}
	for _, t := range []struct {
		name string
		cs   []finding.Count
	}{{"objects", f.TopObjects}, {"ips", f.TopIPs}, {"operations", f.TopOperations}} {
		if len(t.cs) == 0 {
			continue
		}
		parts := make([]string, len(t.cs))
		for i, c := range t.cs {
			parts[i] = fmt.Sprintf("%s (%d)", Safe(c.Value), c.Count)
		}
		fmt.Fprintf(&b, "    %s: %s\n", t.name, strings.Join(parts, ", "))
	}
	return b.String()
}

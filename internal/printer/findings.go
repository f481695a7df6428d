package printer

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/finding"
)

// Findings prints findings; it is a detect.Sink. Text output is held
// until Flush and printed in event-time order (replay reads files in path
// order, not time order); JSON is written as it comes.
//
// A finding handed on again (an incident that grew) is printed again only
// when Updates says it tells something new: as an "UPDATE n" line, at the
// time of its new evidence, naming what changed ("+VaultDelete,
// +VaultPurge"), in text; as the finding again with its version and
// changes, in JSON.
//
// A finding marked routine (its group fires routinely, and delivery would
// not alert it) is written in JSON, "routine": true; in text it is only
// counted, in a line after the others.
type Findings struct {
	mu      sync.Mutex
	w       *bufio.Writer
	format  Format
	n       int
	held    []held
	seen    map[string]bool
	routine map[string]bool // text: routine findings not printed
	// Updates says what a finding handed on again changes; nil: a finding
	// is printed once, the first time.
	Updates Updater
}

// Updater says which message a finding makes: version 1 the first time,
// a later version with its changes when it tells something new, 0 when
// it repeats known facts (delivery.Incidents).
type Updater interface {
	Tell(f *finding.Finding) (version int, changes []string)
}

// held is a finding, or an update of one, waiting for Flush.
type held struct {
	f       finding.Finding
	at      time.Time
	version int // > 1: an update
	changes []string
}

// Update is the JSON form of an update: the finding as handed on again,
// its version and what changed.
type Update struct {
	*finding.Finding
	Version int      `json:"version"`
	Changes []string `json:"changes"`
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
		f := &fs[i]
		if f.Routine {
			// Once, and never as an update: it tells nothing to alert on.
			if p.seen[f.ID] || p.routine[f.ID] {
				continue
			}
			if p.routine == nil {
				p.routine = map[string]bool{}
			}
			p.routine[f.ID] = true
			if p.format == JSON {
				if err := p.writeJSON(f); err != nil {
					return err
				}
			}
			continue
		}
		version, changes := 1, []string(nil)
		if p.Updates != nil {
			version, changes = p.Updates.Tell(f)
		}
		if p.seen[f.ID] {
			if p.Updates == nil || version <= 1 {
				continue // handed on again: nothing new to print
			}
			if p.format == JSON {
				if err := p.writeJSON(Update{Finding: f, Version: version, Changes: changes}); err != nil {
					return err
				}
				continue
			}
			p.held = append(p.held, held{f: *f, at: updateTime(f), version: version, changes: changes})
			continue
		}
		p.seen[f.ID] = true
		p.n++
		if p.format == JSON {
			if err := p.writeJSON(f); err != nil {
				return err
			}
			continue
		}
		at := f.FirstEvent
		if at.IsZero() {
			at = f.WindowStart
		}
		p.held = append(p.held, held{f: *f, at: at})
	}
	return nil
}

func (p *Findings) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("print finding: %w", err)
	}
	_, err = p.w.Write(append(b, '\n'))
	return err
}

// updateTime is when an update's new evidence is: its last event (the
// finding handed on again may keep the first event of the incident).
func updateTime(f *finding.Finding) time.Time {
	if !f.LastEvent.IsZero() {
		return f.LastEvent
	}
	return f.WindowStart
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
	slices.SortStableFunc(p.held, func(a, b held) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.f.Rule, b.f.Rule), cmp.Compare(a.version, b.version))
	})
	for i := range p.held {
		h := &p.held[i]
		text := FindingText(&h.f)
		if h.version > 1 {
			text = UpdateText(&h.f, h.at, h.version, h.changes)
		}
		if _, err := io.WriteString(p.w, text); err != nil {
			return err
		}
	}
	p.held = p.held[:0]
	n := 0
	for id := range p.routine {
		if !p.seen[id] { // above its routine later: printed
			n++
		}
	}
	if n > 0 && p.format != JSON {
		if _, err := fmt.Fprintf(p.w, "(%d findings of groups that fire routinely not shown: recorded, not alerted; --output json lists them)\n", n); err != nil {
			return err
		}
	}
	return p.w.Flush()
}

// UpdateText is the text form of an update of a finding: a header line
// naming the version and what changed, the finding's ID and its evidence
// as handed on again.
func UpdateText(f *finding.Finding, at time.Time, version int, changes []string) string {
	var b strings.Builder
	cs := make([]string, len(changes))
	for i, c := range changes {
		cs[i] = Clean(c)
	}
	fmt.Fprintf(&b, "%s %-8s %s  %s\n", at.UTC().Format("2006-01-02T15:04Z"),
		"UPDATE "+strconv.Itoa(version), f.Rule, strings.Join(cs, ", "))
	fmt.Fprintf(&b, "    %s\n", Clean(f.Summary))
	if !f.FirstEvent.IsZero() {
		fmt.Fprintf(&b, "    events: %s .. %s\n", f.FirstEvent.UTC().Format(time.TimeOnly), f.LastEvent.UTC().Format(time.TimeOnly))
	}
	if len(f.TopOperations) > 0 {
		parts := make([]string, len(f.TopOperations))
		for i, c := range f.TopOperations {
			parts[i] = fmt.Sprintf("%s (%d)", Safe(c.Value), c.Count)
		}
		fmt.Fprintf(&b, "    operations: %s\n", strings.Join(parts, ", "))
	}
	return b.String()
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

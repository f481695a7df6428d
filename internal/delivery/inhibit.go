package delivery

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// Inhibition, after Alertmanager's inhibit rules (inhibit/inhibit.go): one
// incident, one message. When rules fire on the same evidence (one
// VaultPatch that weakens a vault is also an administrative operation; one
// sweep of secrets is a listing followed by reads, many different secrets
// and a burst), the alert of a target rule is recorded in the outbox as
// inhibited by the source's, and the source's alert names it (Related).
//
// A source inhibits a target when both agree on every equal field and the
// target brings nothing the source did not report: each of its reportable
// operations is among the source's operations. Sources are the alerts of
// the same Found (the usual case: one batch raises all of them), else the
// last alert of a source rule with the same equal values within that
// rule's cooldown (a target raised by a later batch), whose severity must
// then be at least the target's: a message sent cannot be raised any more.
// In one Found the source's alert takes the highest severity of what it
// folds in.

// InhibitRule is one inhibition.
type InhibitRule struct {
	Sources []string // rule id globs
	Targets []string // rule id globs
	Equal   []string // event fields both must agree on
}

// SourceMark is the last alert of a source rule, kept under the
// inhibition's key and the equal values (Cooldown.Source).
type SourceMark struct {
	Rule       string           `json:"rule"`
	Alert      string           `json:"alert"`
	Severity   finding.Severity `json:"severity"`
	Last       time.Time        `json:"last"` // the alert's last event
	Until      time.Time        `json:"until"`
	Operations []string         `json:"operations,omitempty"`
}

func globMatch(patterns []string, id string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, _ := path.Match(p, id)
		return ok
	})
}

// field is a finding's value of an event field: its group's, else its
// vault, else its example event's.
func field(f *finding.Finding, name string) string {
	for _, p := range f.Group {
		if p.Field == name {
			return p.Value
		}
	}
	if name == "vault" && f.Vault != "" {
		return f.Vault
	}
	if f.Example != nil {
		return f.Example.Field(name)
	}
	return ""
}

// equalKey is the key of a finding's equal values under inhibition i.
func equalKey(i int, r *InhibitRule, f *finding.Finding) string {
	var b strings.Builder
	b.WriteString("inhibit|")
	b.WriteString(strconv.Itoa(i))
	for _, name := range r.Equal {
		b.WriteByte('|')
		b.WriteString(strconv.Quote(field(f, name)))
	}
	return b.String()
}

// covers reports whether source finding s covers target finding t under
// r: equal values, and t's reportable operations among s's operations.
func covers(r *InhibitRule, s, t *finding.Finding) bool {
	for _, name := range r.Equal {
		if field(s, name) != field(t, name) {
			return false
		}
	}
	ops := operations(s)
	for _, op := range reportable(t) {
		if !slices.Contains(ops, op) {
			return false
		}
	}
	return true
}

// inhibit decides which alerts are inhibited, and by what: it returns, by
// alert ID, "rule (alert ID)" of the source. Sources of the same call get
// the alerts they fold in as Related, and the highest severity.
func (d *Dispatcher) inhibit(ctx context.Context, alerts []*alert.Alert) (map[string]string, error) {
	if len(d.o.Inhibits) == 0 || len(alerts) == 0 {
		return nil, nil
	}
	// A target's direct source in this call, by index.
	src := make([]int, len(alerts))
	for ti, t := range alerts {
		src[ti] = -1
	find:
		for ri := range d.o.Inhibits {
			r := &d.o.Inhibits[ri]
			if !globMatch(r.Targets, t.Rule) {
				continue
			}
			for si, s := range alerts {
				if si == ti || !globMatch(r.Sources, s.Rule) || globMatch(r.Targets, s.Rule) && src[si] == ti {
					continue
				}
				if allCovered(r, s, t) {
					src[ti] = si
					break find
				}
			}
		}
	}
	out := map[string]string{}
	for ti, t := range alerts {
		// The source that is not itself inhibited (a chain: listing
		// inhibits mass read, which inhibits burst) takes the target.
		root, seen := ti, map[int]bool{}
		for src[root] >= 0 && !seen[root] {
			seen[root] = true
			root = src[root]
		}
		if root == ti || seen[root] {
			continue
		}
		s := alerts[root]
		out[t.ID] = s.Rule + " (alert " + s.ID + ")"
		s.Related = append(s.Related, alert.Related{Rule: t.Rule, Title: t.Title, Severity: t.Severity, Summary: t.Summary,
			Group: t.Group, Period: t.Lead().Period, Alert: t.ID})
		s.Severity = max(s.Severity, t.Severity)
	}
	// Targets no alert of this call covers: an earlier source's mark.
	for _, t := range alerts {
		if out[t.ID] != "" {
			continue
		}
		by, err := d.markedSource(ctx, t)
		if err != nil {
			return nil, err
		}
		if by != "" {
			out[t.ID] = by
		}
	}
	return out, nil
}

// allCovered reports whether every finding of target t is covered by one
// of source s's.
func allCovered(r *InhibitRule, s, t *alert.Alert) bool {
	for i := range t.Findings {
		ok := false
		for j := range s.Findings {
			if covers(r, &s.Findings[j], &t.Findings[i]) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// markedSource returns the earlier source alert that inhibits t, "" if
// none: every finding of t must be covered by a mark of one inhibition.
func (d *Dispatcher) markedSource(ctx context.Context, t *alert.Alert) (string, error) {
	for ri := range d.o.Inhibits {
		r := &d.o.Inhibits[ri]
		if !globMatch(r.Targets, t.Rule) {
			continue
		}
		by := ""
		for i := range t.Findings {
			f := &t.Findings[i]
			c, err := d.o.Outbox.Cooldown(ctx, equalKey(ri, r, f))
			if err != nil {
				return "", fmt.Errorf("delivery: inhibit: %w", err)
			}
			m := c.Source
			at := f.FirstEvent
			if at.IsZero() {
				at = f.WindowStart
			}
			if m == nil || m.Rule == t.Rule || at.After(m.Until) || f.Severity > m.Severity || t.Severity > m.Severity {
				by = ""
				break
			}
			covered := true
			for _, op := range reportable(f) {
				if !slices.Contains(m.Operations, op) {
					covered = false
					break
				}
			}
			if !covered {
				by = ""
				break
			}
			by = m.Rule + " (alert " + m.Alert + ")"
		}
		if by != "" {
			return by, nil
		}
	}
	return "", nil
}

// markSources records each alert of a source rule under its equal values,
// for targets raised by later batches. A write that loses to another
// writer is dropped: theirs is as good.
func (d *Dispatcher) markSources(ctx context.Context, alerts []*alert.Alert) error {
	for ri := range d.o.Inhibits {
		r := &d.o.Inhibits[ri]
		for _, a := range alerts {
			if !globMatch(r.Sources, a.Rule) {
				continue
			}
			base := d.o.Cooldowns[a.Rule]
			if base <= 0 {
				base = DefaultCooldown
			}
			for i := range a.Findings {
				f := &a.Findings[i]
				ops := slices.Clone(operations(f))
				m := &SourceMark{Rule: a.Rule, Alert: a.ID, Severity: a.Severity, Last: f.LastEvent,
					Until: f.LastEvent.Add(base), Operations: ops}
				if err := d.setMark(ctx, equalKey(ri, r, f), m); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (d *Dispatcher) setMark(ctx context.Context, key string, m *SourceMark) error {
	for i := 0; i < 4; i++ {
		c, err := d.o.Outbox.Cooldown(ctx, key)
		if err != nil {
			return fmt.Errorf("delivery: inhibit: %w", err)
		}
		if old := c.Source; old != nil && old.Rule == m.Rule && old.Until.After(m.Until) {
			return nil // a later alert of the same rule marked it already
		}
		c.Source, c.Last = m, m.Last
		switch err := d.o.Outbox.SetCooldown(ctx, key, c); {
		case err == nil:
			return nil
		case !errors.Is(err, ErrConflict):
			return fmt.Errorf("delivery: inhibit: %w", err)
		}
	}
	return nil
}

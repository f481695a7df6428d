package delivery

import (
	"context"
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

// markShard is the shard a mark of inhibition r lives in: the vault of
// its equal values when they include the vault (its source alerts', as a
// rule grouped by vault keeps its state in its vault's shard), else "".
func markShard(r *InhibitRule, f *finding.Finding) string {
	if slices.Contains(r.Equal, "vault") {
		return field(f, "vault")
	}
	return ""
}

// inhibit decides which alerts are inhibited, and by what: it returns, by
// alert ID, "rule (alert ID)" of the source. Sources of the same call get
// the alerts they fold in as Related, and the highest severity.
func (d *Dispatcher) inhibit(ctx context.Context, snap *Snapshot, alerts []*alert.Alert) (map[string]string, error) {
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
	// Targets no alert of this call covers: an earlier source's mark,
	// read together for all of them.
	var rest []*alert.Alert
	var refs []Ref
	for _, t := range alerts {
		if out[t.ID] != "" {
			continue
		}
		for ri := range d.o.Inhibits {
			r := &d.o.Inhibits[ri]
			if !globMatch(r.Targets, t.Rule) {
				continue
			}
			if len(rest) == 0 || rest[len(rest)-1] != t {
				rest = append(rest, t)
			}
			for i := range t.Findings {
				f := &t.Findings[i]
				refs = append(refs, Ref{markShard(r, f), equalKey(ri, r, f)})
			}
		}
	}
	if len(refs) == 0 {
		return out, nil
	}
	if err := d.o.Outbox.Load(ctx, snap, Query{Read: refs}); err != nil {
		return nil, fmt.Errorf("delivery: inhibit: %w", err)
	}
	for _, t := range rest {
		if by := d.markedSource(snap, t); by != "" {
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
// The marks are in snap.
func (d *Dispatcher) markedSource(snap *Snapshot, t *alert.Alert) string {
	for ri := range d.o.Inhibits {
		r := &d.o.Inhibits[ri]
		if !globMatch(r.Targets, t.Rule) {
			continue
		}
		by := ""
		for i := range t.Findings {
			f := &t.Findings[i]
			m := snap.Cooldowns[equalKey(ri, r, f)].Source
			at := alertAt(f)
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
			return by
		}
	}
	return ""
}

// A markWrite is a mark to record, and the source alerts it comes from.
type markWrite struct {
	key, shard string
	c          Cooldown
	sources    []string
}

// markSources returns the marks of the alerts of source rules under their
// equal values, for targets raised by later batches: written with those
// alerts (or, kept in another shard, after them). A later alert of the
// same rule that marked a key already keeps its mark.
func (d *Dispatcher) markSources(ctx context.Context, snap *Snapshot, alerts []*alert.Alert) ([]*markWrite, error) {
	type src struct {
		ri int
		a  *alert.Alert
		f  *finding.Finding
	}
	var srcs []src
	var refs []Ref
	for ri := range d.o.Inhibits {
		r := &d.o.Inhibits[ri]
		for _, a := range alerts {
			if !globMatch(r.Sources, a.Rule) {
				continue
			}
			for i := range a.Findings {
				f := &a.Findings[i]
				srcs = append(srcs, src{ri, a, f})
				refs = append(refs, Ref{markShard(r, f), equalKey(ri, r, f)})
			}
		}
	}
	if len(srcs) == 0 {
		return nil, nil
	}
	if err := d.o.Outbox.Load(ctx, snap, Query{Keys: refs}); err != nil {
		return nil, fmt.Errorf("delivery: inhibit: %w", err)
	}
	byKey := map[string]*markWrite{}
	var out []*markWrite
	for i, s := range srcs {
		r := &d.o.Inhibits[s.ri]
		base := d.o.Cooldowns[s.a.Rule]
		if base <= 0 {
			base = DefaultCooldown
		}
		m := &SourceMark{Rule: s.a.Rule, Alert: s.a.ID, Severity: s.a.Severity, Last: s.f.LastEvent,
			Until: s.f.LastEvent.Add(base), Operations: slices.Clone(operations(s.f))}
		key := refs[i].Key
		w := byKey[key]
		c := snap.Cooldowns[key]
		if w != nil {
			c = w.c
		}
		if old := c.Source; old != nil && old.Rule == m.Rule && old.Until.After(m.Until) {
			continue // a later alert of the same rule marked it already
		}
		c.Source, c.Last = m, m.Last
		if w == nil {
			w = &markWrite{key: key, shard: markShard(r, s.f)}
			byKey[key] = w
			out = append(out, w)
		}
		w.c = c
		if !slices.Contains(w.sources, s.a.ID) {
			w.sources = append(w.sources, s.a.ID)
		}
	}
	return out, nil
}

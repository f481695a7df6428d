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
	// Held is when the alert's own wait for a source ends, if it waits
	// (Options.InhibitWait): until then targets it inhibits are named in it.
	Held time.Time `json:"held,omitempty"`
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
// viaMark, if not nil, gets the source alert of targets inhibited by an
// earlier source's mark.
func (d *Dispatcher) inhibit(ctx context.Context, snap *Snapshot, alerts []*alert.Alert, viaMark map[string]string) (map[string]string, error) {
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
		s.Related = append(s.Related, related(t))
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
		if by, m := d.markedSource(snap, t); by != "" {
			out[t.ID] = by
			if viaMark != nil && m.Held.After(d.o.Now()) {
				viaMark[t.ID] = m.Alert
			}
		}
	}
	return out, nil
}

// related is how a source's alert names target alert t.
func related(t *alert.Alert) alert.Related {
	return alert.Related{Rule: t.Rule, Title: t.Title, Severity: t.Severity, Summary: t.Summary,
		Group: t.Group, Period: t.Lead().Period, Alert: t.ID}
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
func (d *Dispatcher) markedSource(snap *Snapshot, t *alert.Alert) (string, *SourceMark) {
	for ri := range d.o.Inhibits {
		r := &d.o.Inhibits[ri]
		if !globMatch(r.Targets, t.Rule) {
			continue
		}
		by := ""
		var mark *SourceMark
		for i := range t.Findings {
			f := &t.Findings[i]
			m := snap.Cooldowns[equalKey(ri, r, f)].Source
			mark = m
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
			return by, mark
		}
	}
	return "", nil
}

// nameInHeldSources adds the targets of this round inhibited by the mark
// of a source alert that is still held (waiting for its own source,
// Options.InhibitWait) to that alert's Related, so that the message that
// finally names the source names them too: it returns the source entries
// to write back, each with the targets of this round it names (written
// with one of them in its shard, else after them). A source on its way
// already is left.
func (d *Dispatcher) nameInHeldSources(ctx context.Context, snap *Snapshot, alerts []*alert.Alert, viaMark map[string]string,
	covered []*heldCover) (map[string]*Entry, map[string][]string, error) {
	if len(viaMark) == 0 {
		return nil, nil, nil
	}
	taken := map[string]bool{}
	for _, c := range covered {
		taken[c.entry.Alert.ID] = true
	}
	var refs []Ref
	for _, a := range alerts {
		if src := viaMark[a.ID]; src != "" && !taken[src] {
			refs = append(refs, Ref{Shard(a.Lead()), src})
		}
	}
	if len(refs) == 0 {
		return nil, nil, nil
	}
	if err := d.o.Outbox.Load(ctx, snap, Query{Entries: refs}); err != nil {
		return nil, nil, fmt.Errorf("delivery: inhibit: %w", err)
	}
	puts, names := map[string]*Entry{}, map[string][]string{}
	for _, a := range alerts {
		src := viaMark[a.ID]
		if src == "" || taken[src] {
			continue
		}
		e := puts[src]
		if e == nil {
			e = snap.Entries[src]
			if e == nil || !waiting(e) || !e.Receivers[receiverNames(e)[0]].Next.After(d.o.Now()) {
				continue
			}
			e = clone(e)
			al := *e.Alert
			al.Related = slices.Clone(al.Related)
			e.Alert = &al
			puts[src] = e
		}
		e.Alert.Related = append(e.Alert.Related, related(a))
		e.Alert.Related = append(e.Alert.Related, a.Related...)
		names[src] = append(names[src], a.ID)
	}
	return puts, names, nil
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
// rows are the rows this round writes already: a mark is added to them.
// heldUntil are the alerts of this round that wait for a source.
func (d *Dispatcher) markSources(ctx context.Context, snap *Snapshot, alerts []*alert.Alert, rows map[string]Cooldown,
	heldUntil map[string]time.Time) ([]*markWrite, error) {
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
			Until: s.f.LastEvent.Add(base), Operations: slices.Clone(operations(s.f)), Held: heldUntil[s.a.ID]}
		key := refs[i].Key
		w := byKey[key]
		c, ok := rows[key]
		if !ok {
			c = snap.Cooldowns[key]
		}
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

// Held targets (Options.InhibitWait). A target's source is not always
// raised first: a sweep's reads on one partition can make a mass-read
// alert a batch before the listing on another partition makes the
// listing-then-read alert. So an alert of a target rule that nothing
// inhibits is held: its receivers' first attempt waits InhibitWait, and
// it is noted (HeldTarget) in its own shard under heldKey of each
// inhibition it is a target of and its findings' equal values. A source
// alert recorded while the target waits, that covers it as a source of
// the same round would, takes it in: the held entry is written back
// inhibited, in the source's unit when both live in one shard (so a
// sender that claimed it first makes the unit conflict, and it is decided
// again), else right after the source's unit is written (a target grouped
// without its vault, such as reads across vaults): if a sender claimed it
// meanwhile it is sent, and the source's message has named it too.

// HeldTarget is an alert of a target rule waiting for a source.
type HeldTarget struct {
	Alert string    `json:"alert"`
	Rule  string    `json:"rule"`
	Until time.Time `json:"until"` // sent then unless a source covers it
}

// maxHeld bounds the held targets noted under one key: at the bound the
// one that waits least is dropped (it is sent alone when its wait ends).
const maxHeld = 16

// heldKey names the row, in shard, noting the targets of inhibition i
// held with f's equal values, when the inhibition's mark row is in
// another shard.
func heldKey(shard string, i int, r *InhibitRule, f *finding.Finding) string {
	return "held|" + strconv.Quote(shard) + "|" + equalKey(i, r, f)
}

// heldRow is where target finding f, held, is noted under inhibition i:
// the inhibition's mark row when it lives in f's shard (a target grouped
// by the vault: the row a round reads for the mark anyway), else a row of
// its own in f's shard.
func heldRow(i int, r *InhibitRule, f *finding.Finding) Ref {
	if sh := markShard(r, f); sh == Shard(f) {
		return Ref{sh, equalKey(i, r, f)}
	}
	return Ref{Shard(f), heldKey(Shard(f), i, r, f)}
}

// heldRefs are the rows a target finding f would be noted under.
func (d *Dispatcher) heldRefs(f *finding.Finding) []Ref {
	if d.o.InhibitWait <= 0 {
		return nil
	}
	var refs []Ref
	for ri := range d.o.Inhibits {
		if r := &d.o.Inhibits[ri]; globMatch(r.Targets, f.Rule) {
			refs = append(refs, heldRow(ri, r, f))
		}
	}
	return refs
}

// sourceHeldRefs are the rows of held targets a source finding f could
// take in: read with the round's first load, which reads what it must
// in one go (coverHeld then finds them in the snapshot).
func (d *Dispatcher) sourceHeldRefs(f *finding.Finding) []Ref {
	if d.o.InhibitWait <= 0 {
		return nil
	}
	var refs []Ref
	for ri := range d.o.Inhibits {
		if r := &d.o.Inhibits[ri]; globMatch(r.Sources, f.Rule) {
			refs = append(refs, sourceRows(ri, r, f)...)
		}
	}
	return refs
}

// sourceRows are the rows targets held with source finding f's equal
// values are noted in: the mark row, and the own rows of targets in shard
// "" (grouped without the vault) when the mark row is elsewhere.
func sourceRows(i int, r *InhibitRule, f *finding.Finding) []Ref {
	refs := []Ref{{markShard(r, f), equalKey(i, r, f)}}
	if refs[0].Shard != "" {
		refs = append(refs, Ref{"", heldKey("", i, r, f)})
	}
	return refs
}

// holdKeys returns the rows (in a's shard) held alert a is noted under;
// none if a is no inhibition's target, or if it reports an operation of
// the administrative, delete, purge, backup or restore kinds: those reach
// the user at once (a source covering one fires on the same record, so
// in the same batch).
func (d *Dispatcher) holdKeys(a *alert.Alert) []string {
	var keys []string
	for i := range a.Findings {
		if len(reportable(&a.Findings[i])) > 0 {
			return nil
		}
	}
	for i := range a.Findings {
		for _, r := range d.heldRefs(&a.Findings[i]) {
			if !slices.Contains(keys, r.Key) {
				keys = append(keys, r.Key)
			}
		}
	}
	return keys
}

// hold notes held alert a under c (a row of one of its keys), dropping
// what waited out at now.
func hold(c Cooldown, a *alert.Alert, until, now time.Time) Cooldown {
	held := slices.DeleteFunc(slices.Clone(c.Held), func(h HeldTarget) bool { return !h.Until.After(now) || h.Alert == a.ID })
	held = append(held, HeldTarget{Alert: a.ID, Rule: a.Rule, Until: until})
	if len(held) > maxHeld {
		slices.SortFunc(held, func(x, y HeldTarget) int { return y.Until.Compare(x.Until) })
		held = held[:maxHeld]
	}
	c.Last = now
	c.Held = held
	return c
}

// A heldCover is a held target a source alert of this round takes in.
type heldCover struct {
	entry  *Entry       // the target's entry, inhibited, to write back
	source *alert.Alert // the source alert naming it
	key    string       // the row the hold was noted under, in the entry's shard
	row    Cooldown     // that row without it
	late   bool         // the entry lives in another shard than the source
}

// coverHeld finds the held targets the source alerts of this round
// (those not inhibited themselves) cover, marks their entries inhibited
// by the source, and adds them to the source's Related. The rows of
// covers in their source's shard are left, without them, in rows.
func (d *Dispatcher) coverHeld(ctx context.Context, snap *Snapshot, alerts []*alert.Alert, inhibited map[string]string,
	now time.Time, rows map[string]Cooldown, rowShard map[string]string) ([]*heldCover, error) {
	if d.o.InhibitWait <= 0 || len(d.o.Inhibits) == 0 {
		return nil, nil
	}
	type cand struct {
		r     *InhibitRule
		a     *alert.Alert
		key   string
		shard string
	}
	var cands []cand
	var refs []Ref
	seen := map[string]bool{}
	inRound := map[string]bool{}
	for _, a := range alerts {
		inRound[a.ID] = true
	}
	for ri := range d.o.Inhibits {
		r := &d.o.Inhibits[ri]
		for _, a := range alerts {
			if inhibited[a.ID] != "" || !globMatch(r.Sources, a.Rule) {
				continue
			}
			for i := range a.Findings {
				f := &a.Findings[i]
				for _, ref := range sourceRows(ri, r, f) {
					if !seen[ref.Key] {
						seen[ref.Key] = true
						cands = append(cands, cand{r, a, ref.Key, ref.Shard})
						refs = append(refs, ref)
					}
				}
			}
		}
	}
	if len(cands) == 0 {
		return nil, nil
	}
	if err := d.o.Outbox.Load(ctx, snap, Query{Read: refs}); err != nil {
		return nil, fmt.Errorf("delivery: inhibit: %w", err)
	}
	row := func(k string) Cooldown {
		if c, ok := rows[k]; ok {
			return c
		}
		return snap.Cooldowns[k]
	}
	var entries []Ref
	for _, c := range cands {
		for _, h := range row(c.key).Held {
			if h.Until.After(now) && !inRound[h.Alert] {
				entries = append(entries, Ref{c.shard, h.Alert})
			}
		}
	}
	if len(entries) == 0 {
		return nil, nil
	}
	if err := d.o.Outbox.Load(ctx, snap, Query{Entries: entries}); err != nil {
		return nil, fmt.Errorf("delivery: inhibit: %w", err)
	}
	taken := map[string]bool{}
	var out []*heldCover
	for _, c := range cands {
		cd := row(c.key)
		keep := cd.Held[:0:0]
		var mine []*heldCover
		for _, h := range cd.Held {
			e := snap.Entries[h.Alert]
			if !h.Until.After(now) || e == nil || !waiting(e) {
				continue // waited out, or gone its way: forget it
			}
			if taken[h.Alert] || inRound[h.Alert] || h.Rule == c.a.Rule || !allCovered(c.r, c.a, e.Alert) {
				keep = append(keep, h)
				continue
			}
			taken[h.Alert] = true
			e = clone(e)
			e.InhibitedBy = c.a.Rule + " (alert " + c.a.ID + ")"
			for _, at := range e.Receivers {
				at.State = Muted
			}
			t := e.Alert
			// It names what it took in itself (a mass read naming the
			// burst it inhibited): the source names them all.
			c.a.Related = append(c.a.Related, related(t))
			c.a.Related = append(c.a.Related, t.Related...)
			c.a.Severity = max(c.a.Severity, t.Severity)
			mine = append(mine, &heldCover{entry: e, source: c.a, key: c.key, late: c.shard != Shard(c.a.Lead())})
		}
		if len(mine) == 0 {
			continue
		}
		cd.Held = keep
		for _, m := range mine {
			m.row = cd
		}
		if !mine[0].late {
			rows[c.key], rowShard[c.key] = cd, c.shard
		}
		out = append(out, mine...)
	}
	return out, nil
}

// waiting reports whether no receiver of e has been tried or claimed yet:
// it can still be taken in, as if it had never been recorded to send.
func waiting(e *Entry) bool {
	for _, r := range e.Receivers {
		if r.State != Pending || r.Attempts > 0 || !r.Lease.IsZero() {
			return false
		}
	}
	return len(e.Receivers) > 0
}

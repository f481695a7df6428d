package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// How Found decides a batch's findings: in rounds, each of a few requests
// whatever the number of findings. A round loads the state the findings
// need (Outbox.Load: the cooldowns of their keys, their decisions; the
// Table outbox answers from its view of each shard, caught up with one
// query per shard), decides every finding from it (cooldown, incident,
// grouping, inhibition, group wait), and commits the outcome in units
// (Outbox.Commit): the rows one decision writes — the cooldowns of the
// keys it read, the decisions of its findings, the alerts they make, the
// marks of source alerts — all of one shard, written together or not at
// all, and only if nothing they were decided from changed since the load
// (the Table outbox packs a shard's units in entity-group transactions
// that insert the log entry after the one the load saw). A unit that
// meets another writer's change (another instance, a retry of the same
// batch) writes nothing, and its
// findings are decided again in the next round from fresh state: so each
// finding is decided once, and a held-back finding is counted once, under
// retries, redeliveries and instances.

const (
	// maxAlertFindings bounds the findings one alert carries: an alert's
	// findings are decided in one unit with their keys' cooldowns, and a
	// unit must fit a transaction. More of one rule and vault handed on
	// together make several alerts.
	maxAlertFindings = 30
	// maxKeyFindings bounds the findings of one key a round decides; the
	// rest wait for the next round of the same call.
	maxKeyFindings = 40
	// maxConflictRounds bounds the rounds in a row that commit nothing,
	// every unit meeting another writer's change (each after a random
	// wait of up to 640 ms: another instance writing a big batch holds a
	// partition for a few transactions in a row); past it Found fails and
	// the host retries the batch. maxRounds bounds them all.
	maxConflictRounds = 20
	maxRounds         = 100
	// maxFresh bounds the entries kept for the sender between rounds.
	maxFresh = 2000
)

// Found implements detect.Sink: it decides, for every finding, whether
// it opens an incident (an alert), adds a fact the user was not told of
// to the incident of its rule and group (an update, sent whatever the
// cooldown), or repeats known facts (held back by the cooldown, or, for a
// finding decided before, dropped), folds the alerts of rules that fired
// on the same evidence into one (inhibition), and writes the alerts to the
// outbox. It sends nothing and waits for no receiver: a Sender (woken at
// once) or Flush delivers them. It is idempotent: a retried batch changes
// nothing.
func (d *Dispatcher) Found(ctx context.Context, fs []finding.Finding) error {
	seen := make(map[string]bool, len(fs))
	todo := make([]finding.Finding, 0, len(fs))
	for _, f := range fs {
		if !seen[f.ID] { // twice in one batch: the first stands
			seen[f.ID] = true
			todo = append(todo, f)
		}
	}
	var added []*Entry
	stuck := 0
	for round := 0; len(todo) > 0; round++ {
		r, err := d.round(ctx, todo)
		if err != nil {
			return err
		}
		added = append(added, r.added...)
		if len(r.redo) > 0 && !r.progress {
			stuck++
		} else {
			stuck = 0
		}
		if stuck == maxConflictRounds || round == maxRounds {
			return fmt.Errorf("delivery: %d findings: too many concurrent writers", len(r.redo)+len(r.later))
		}
		if stuck > 0 {
			// Every unit met another writer's change: wait a moment, a
			// random one, so that writers going round in step part.
			t := time.NewTimer(rand.N(10 * time.Millisecond << min(stuck, 6)))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		todo = append(r.redo, r.later...)
	}
	d.handOff(added)
	return nil
}

// handOff keeps the entries a Found recorded for the sender, which sends
// those due without reading them back, and wakes it.
func (d *Dispatcher) handOff(es []*Entry) {
	if len(es) == 0 {
		return
	}
	d.freshMu.Lock()
	for _, e := range es {
		if e.Pending() && e.Version != "" {
			d.fresh = append(d.fresh, clone(e))
		}
	}
	if n := len(d.fresh); n > maxFresh { // no sender takes them: the outbox has them
		d.fresh = append(d.fresh[:0:0], d.fresh[n-maxFresh:]...)
	}
	d.freshMu.Unlock()
	select {
	case d.recorded <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// takeFresh returns the entries handed off since the last call.
func (d *Dispatcher) takeFresh() []*Entry {
	d.freshMu.Lock()
	defer d.freshMu.Unlock()
	es := d.fresh
	d.fresh = nil
	return es
}

type roundResult struct {
	added    []*Entry
	progress bool // some unit was committed
	// redo are findings of units that met another writer's change; later
	// findings this round had no room for.
	redo, later []finding.Finding
}

// round decides fs once: load, decide, commit.
func (d *Dispatcher) round(ctx context.Context, fs []finding.Finding) (roundResult, error) {
	var res roundResult
	byKey := map[string][]finding.Finding{}
	shardOf := map[string]string{}
	var keys []string
	for _, f := range fs {
		k := alert.CooldownKey(&f)
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
			shardOf[k] = Shard(&f)
		}
		byKey[k] = append(byKey[k], f)
	}
	slices.Sort(keys)
	for _, k := range keys {
		g := byKey[k]
		slices.SortFunc(g, byEventTime)
		if len(g) > maxKeyFindings {
			res.later = append(res.later, g[maxKeyFindings:]...)
			byKey[k] = g[:maxKeyFindings]
		}
	}

	snap := &Snapshot{}
	var q Query
	for _, k := range keys {
		q.Keys = append(q.Keys, Ref{shardOf[k], k})
		for _, f := range byKey[k] {
			q.Decisions = append(q.Decisions, Ref{shardOf[k], f.ID})
			// The marks an alert of it would be inhibited by, read now
			// rather than once the alerts are made: the outbox reads
			// before it fixes the head its commit is checked against.
			for ri := range d.o.Inhibits {
				if r := &d.o.Inhibits[ri]; globMatch(r.Targets, f.Rule) {
					q.Read = append(q.Read, Ref{markShard(r, &f), equalKey(ri, r, &f)})
				}
			}
			q.Read = append(q.Read, d.heldRefs(&f)...)
			q.Read = append(q.Read, d.sourceHeldRefs(&f)...)
		}
	}
	if err := d.o.Outbox.Load(ctx, snap, q); err != nil {
		return res, fmt.Errorf("delivery: %w", err)
	}
	// A finding decided before is a repeat unless its facts grew; whether
	// they add to what the user was told, its key's cooldown says: read
	// it if the outbox does not know it (a key assumed absent that exists
	// is found out only by a write, and a repeat writes nothing).
	decided := map[string]bool{}
	var need []Ref
	for _, k := range keys {
		needs := false
		for _, f := range byKey[k] {
			dec, ok := snap.Decisions[f.ID]
			decided[f.ID] = ok && (dec.Suppressed || dec.Alert != "")
			if decided[f.ID] && (dec.Facts == "" || dec.Facts != facts(&f)) {
				needs = true
			}
		}
		if needs && snap.Unknown[k] {
			need = append(need, Ref{shardOf[k], k})
		}
	}
	if len(need) > 0 {
		if err := d.o.Outbox.Load(ctx, snap, Query{Read: need}); err != nil {
			return res, fmt.Errorf("delivery: %w", err)
		}
	}

	var p *plan
	for {
		var deferred []finding.Finding
		var err error
		p, deferred, err = d.plan(ctx, snap, byKey, keys, shardOf, decided)
		if err != nil {
			return res, err
		}
		if len(deferred) == 0 {
			break
		}
		res.later = append(res.later, deferred...)
		drop := map[string]bool{}
		for _, f := range deferred {
			drop[f.ID] = true
		}
		for _, k := range keys {
			byKey[k] = slices.DeleteFunc(byKey[k], func(f finding.Finding) bool { return drop[f.ID] })
		}
	}
	if len(p.units) == 0 {
		return res, nil
	}

	units := make([]*Unit, len(p.units))
	for i, u := range p.units {
		units[i] = &u.Unit
	}
	errs, err := d.o.Outbox.Commit(ctx, snap, units)
	if err != nil {
		return res, fmt.Errorf("delivery: outbox: %w", err)
	}
	committed := map[*planUnit]bool{}
	for i, u := range p.units {
		switch {
		case errs[i] == nil:
			committed[u] = true
			res.progress = true
			res.added = append(res.added, u.Add...)
			d.logRecorded(u)
		case errors.Is(errs[i], ErrConflict):
			res.redo = append(res.redo, u.findings...)
		default:
			return res, fmt.Errorf("delivery: outbox: %w", errs[i])
		}
	}
	// Marks kept in another shard than their source alerts', written once
	// those are: a mark that loses to another writer is dropped, theirs
	// is as good.
	var late []*Unit
	for _, u := range p.late {
		if !slices.ContainsFunc(u.sources, func(s *planUnit) bool { return !committed[s] }) {
			late = append(late, &u.Unit)
		}
	}
	if len(late) > 0 {
		if _, err := d.o.Outbox.Commit(ctx, snap, late); err != nil {
			d.o.Log.Warn().Err(err).Msg("delivery: recording inhibition marks failed; later targets of these alerts are sent")
		}
	}
	return res, nil
}

func byEventTime(a, b finding.Finding) int {
	return cmp.Or(a.FirstEvent.Compare(b.FirstEvent), cmp.Compare(a.ID, b.ID))
}

// logRecorded says what became of a unit's alerts that were not simply
// recorded to be sent.
func (d *Dispatcher) logRecorded(u *planUnit) {
	for _, e := range u.Add {
		a := e.Alert
		switch {
		case e.InhibitedBy != "":
			d.o.Log.Info().Str("alert", a.ID).Str("rule", a.Rule).Str("inhibited_by", e.InhibitedBy).Msg("alert inhibited")
		case e.MutedBy != "":
			d.o.Log.Info().Str("alert", a.ID).Str("rule", a.Rule).Str("muted_by", e.MutedBy).Msg("alert muted")
		case len(e.Receivers) == 0:
			d.o.Log.Warn().Str("alert", a.ID).Str("rule", a.Rule).Msg("alert matches no route: recorded, sent nowhere")
		}
	}
}

// plan is a round's outcome, ready to commit.
type plan struct {
	units []*planUnit
	// late are marks kept in another shard than their sources: written
	// after those.
	late []*planUnit
}

type planUnit struct {
	Unit
	findings []finding.Finding // decided by this unit: again if it conflicts
	sources  []*planUnit       // late marks: the units of their source alerts
}

// plan decides the findings of keys from snap. When a unit would not fit
// a transaction it returns, instead, findings to leave for the next round.
func (d *Dispatcher) plan(ctx context.Context, snap *Snapshot, byKey map[string][]finding.Finding, keys []string,
	shardOf map[string]string, decided map[string]bool) (*plan, []finding.Finding, error) {
	now := d.o.Now()
	var alerting []finding.Finding
	var updates []*alert.Alert
	repeat, suppressed := map[string]int{}, map[string]int{}
	incident := map[string]string{}
	rows := map[string]Cooldown{} // cooldown, group and mark rows to write
	rowShard := map[string]string{}
	decisions := map[string]Decision{}
	keyOf := map[string]string{} // finding ID → cooldown key
	// A decision is inserted once: a finding decided routine before and
	// handed on above its routine now (finding.Routine false) is decided
	// like a new one, and its routine decision stays.
	undecided := func(id string) bool { _, ok := snap.Decisions[id]; return !ok }
	for _, k := range keys {
		group := byKey[k]
		// Findings of groups that fire routinely (finding.Routine: the
		// rule's routine) are recorded, not alerted, and no cooldown's
		// business.
		group = slices.DeleteFunc(slices.Clone(group), func(f finding.Finding) bool {
			if !f.Routine {
				return false
			}
			keyOf[f.ID] = k
			if undecided(f.ID) {
				decisions[f.ID] = routineDecision(&f, now)
			}
			return true
		})
		if len(group) == 0 {
			continue
		}
		vs, c, changed := d.verdicts(group, decided, snap.Cooldowns[k])
		if changed {
			rows[k], rowShard[k] = c, shardOf[k]
		}
		for i := range group {
			f := group[i]
			keyOf[f.ID] = k
			switch v := vs[i]; v.what {
			case opens:
				alerting = append(alerting, f)
				repeat[f.ID], suppressed[f.ID], incident[f.ID] = v.repeat, v.suppressed, v.incident
			case updates_:
				a := alert.New([]finding.Finding{f}, now)
				a.Incident, a.Version, a.Changes = v.incident, v.version, v.changes
				a.ID = alert.UpdateID(v.incident, v.version)
				updates = append(updates, a)
			case holds:
				if undecided(f.ID) {
					decisions[f.ID] = Decision{Suppressed: true, At: now, Facts: facts(&f)}
				}
			}
		}
	}
	alerts := d.group(alerting, repeat, suppressed)
	for _, a := range alerts {
		a.Incident, a.Version = incident[a.Lead().ID], 1
	}
	alerts = append(alerts, updates...)
	viaMark := map[string]string{}
	inhibited, err := d.inhibit(ctx, snap, alerts, viaMark)
	if err != nil {
		return nil, nil, err
	}
	covered, err := d.coverHeld(ctx, snap, alerts, inhibited, now, rows, rowShard)
	if err != nil {
		return nil, nil, err
	}
	named, namers, err := d.nameInHeldSources(ctx, snap, alerts, viaMark, covered)
	if err != nil {
		return nil, nil, err
	}

	uf := unionFind{}
	var adds []*Entry
	// While a Sender runs, the alerts this round records that are due go
	// out claimed by this process: the Sender takes them as written,
	// without a claim of its own, and no other instance's sender takes
	// them meanwhile (a process that stops before sending leaves them to
	// the first sender after the lease).
	lease := d.preclaim(now.Add(d.o.Lease))
	joined := map[string]*Entry{} // open entries (group wait) this round adds to
	heldUntil := map[string]time.Time{}
	for _, a := range alerts {
		by := inhibited[a.ID]
		node := "a:" + a.ID
		uf.add(node)
		for _, f := range a.Findings {
			uf.union(node, "k:"+keyOf[f.ID])
		}
		target := a.ID
		if d.o.GroupWait > 0 && !a.IsUpdate() && by == "" {
			into, err := d.joinOpen(ctx, snap, a, joined)
			if err != nil {
				return nil, nil, err
			}
			if into != nil {
				target = into.Alert.ID
				uf.union(node, "e:"+target)
			}
		}
		if target == a.ID {
			e := d.entry(a)
			if by != "" {
				e.InhibitedBy = by
				for _, r := range e.Receivers {
					r.State = Muted
				}
			}
			if d.o.GroupWait > 0 {
				for _, r := range e.Receivers {
					r.Next = a.Created.Add(d.o.GroupWait)
				}
			}
			held := false
			if by == "" && e.MutedBy == "" && len(e.Receivers) > 0 {
				// a target nothing covers yet waits for a source.
				until := a.Created.Add(d.o.InhibitWait)
				for _, k := range d.holdKeys(a) {
					c, ok := rows[k]
					if !ok {
						c = snap.Cooldowns[k]
					}
					rows[k], rowShard[k] = hold(c, a, until, now), Shard(a.Lead())
					uf.union(node, "k:"+k)
					held = true
				}
				if held {
					for _, r := range e.Receivers {
						r.Next = maxTime(r.Next, until)
					}
					heldUntil[a.ID] = until
				}
			}
			if lease != "" && !held {
				for _, r := range e.Receivers {
					if r.State == Pending {
						r.Lease, r.LeaseBy = now.Add(d.o.Lease), lease
					}
				}
			}
			adds = append(adds, e)
			if d.o.GroupWait > 0 && !a.IsUpdate() && by == "" {
				// a opens the group of its rule and vault.
				gk := groupKey(a)
				c, ok := rows[gk]
				if !ok {
					c = snap.Cooldowns[gk]
				}
				c.Last, c.LastFinding = a.Created, a.ID
				rows[gk], rowShard[gk] = c, Shard(a.Lead())
				uf.union(node, "k:"+gk)
			}
		}
		for _, f := range a.Findings {
			if !decided[f.ID] && undecided(f.ID) {
				decisions[f.ID] = Decision{Alert: target, At: now, Facts: facts(&f)}
			}
		}
	}
	for _, c := range covered {
		if !c.late {
			uf.union("a:"+c.source.ID, "e:"+c.entry.Alert.ID)
			uf.union("a:"+c.source.ID, "k:"+c.key)
		}
	}
	alertShard := map[string]string{}
	for _, a := range alerts {
		alertShard[a.ID] = Shard(a.Lead())
	}
	lateNamed := map[string]bool{} // named by targets of other shards only
	for src, ids := range namers {
		lateNamed[src] = true
		for _, id := range ids {
			if alertShard[id] == EntryShard(named[src]) {
				uf.union("a:"+id, "e:"+src)
				lateNamed[src] = false
			}
		}
	}
	marks, err := d.markSources(ctx, snap, alerts, rows, heldUntil)
	if err != nil {
		return nil, nil, err
	}
	var lateMarks []*markWrite
	for _, m := range marks {
		inUnit := !slices.ContainsFunc(m.sources, func(id string) bool { return alertShard[id] != m.shard })
		if !inUnit {
			lateMarks = append(lateMarks, m)
			continue
		}
		rows[m.key], rowShard[m.key] = m.c, m.shard
		for _, id := range m.sources {
			uf.union("k:"+m.key, "a:"+id)
		}
	}

	// The units: keys, alerts, open entries and marks that share a row
	// are decided together.
	lateKey := map[string]bool{}
	for _, m := range lateMarks {
		lateKey[m.key] = true
	}
	units := map[string]*planUnit{}
	var order []string
	unitOf := func(node, shard string) (*planUnit, error) {
		root := uf.find(node)
		u, ok := units[root]
		if !ok {
			u = &planUnit{Unit: Unit{Shard: shard, Cooldowns: map[string]Cooldown{}, Decisions: map[string]Decision{}}}
			units[root] = u
			order = append(order, root)
		}
		if u.Shard != shard {
			return nil, fmt.Errorf("delivery: internal error: a unit spans shards %q and %q", u.Shard, shard)
		}
		return u, nil
	}
	rowKeys := make([]string, 0, len(rows))
	for k := range rows {
		if !lateKey[k] {
			rowKeys = append(rowKeys, k)
		}
	}
	slices.Sort(rowKeys)
	for _, k := range rowKeys {
		u, err := unitOf("k:"+k, rowShard[k])
		if err != nil {
			return nil, nil, err
		}
		u.Cooldowns[k] = rows[k]
	}
	ids := make([]string, 0, len(decisions))
	for id := range decisions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		k := keyOf[id]
		u, err := unitOf("k:"+k, shardOf[k])
		if err != nil {
			return nil, nil, err
		}
		u.Decisions[id] = decisions[id]
	}
	for _, e := range adds {
		u, err := unitOf("a:"+e.Alert.ID, EntryShard(e))
		if err != nil {
			return nil, nil, err
		}
		u.Add = append(u.Add, e)
	}
	joinedIDs := make([]string, 0, len(joined))
	for id := range joined {
		joinedIDs = append(joinedIDs, id)
	}
	slices.Sort(joinedIDs)
	for _, id := range joinedIDs {
		u, err := unitOf("e:"+id, EntryShard(joined[id]))
		if err != nil {
			return nil, nil, err
		}
		u.Put = append(u.Put, joined[id])
	}
	namedIDs := make([]string, 0, len(named))
	for id := range named {
		namedIDs = append(namedIDs, id)
	}
	slices.Sort(namedIDs)
	for _, id := range namedIDs {
		if lateNamed[id] {
			continue
		}
		u, err := unitOf("e:"+id, EntryShard(named[id]))
		if err != nil {
			return nil, nil, err
		}
		u.Put = append(u.Put, named[id])
	}
	for _, c := range covered {
		if c.late {
			continue
		}
		u, err := unitOf("e:"+c.entry.Alert.ID, EntryShard(c.entry))
		if err != nil {
			return nil, nil, err
		}
		u.Put = append(u.Put, c.entry)
	}
	for _, k := range keys {
		if len(byKey[k]) == 0 || !uf.has("k:"+k) {
			continue // nothing written: nothing to decide again
		}
		u, err := unitOf("k:"+k, shardOf[k])
		if err != nil {
			return nil, nil, err
		}
		u.findings = append(u.findings, byKey[k]...)
	}
	p := &plan{}
	for _, root := range order {
		u := units[root]
		if u.Rows() > MaxUnitRows {
			// Too much for one transaction: the later half of its
			// findings waits for the next round.
			fs := slices.Clone(u.findings)
			slices.SortFunc(fs, byEventTime)
			return nil, fs[len(fs)/2:], nil
		}
		p.units = append(p.units, u)
	}

	// Late marks: by shard, in units of their own.
	byShard := map[string]*planUnit{}
	for _, m := range lateMarks {
		u := byShard[m.shard]
		if u == nil || u.Rows() >= MaxUnitRows {
			u = &planUnit{Unit: Unit{Shard: m.shard, Cooldowns: map[string]Cooldown{}}}
			byShard[m.shard] = u
			p.late = append(p.late, u)
		}
		u.Cooldowns[m.key] = m.c
		for _, id := range m.sources {
			u.after(units[uf.find("a:"+id)])
		}
	}
	// Held targets in another shard than the source taking them in: by
	// key, in units of their own, after the source's.
	heldUnits := map[string]*planUnit{}
	for _, c := range covered {
		if !c.late {
			continue
		}
		u := heldUnits[c.key]
		if u == nil {
			u = &planUnit{Unit: Unit{Shard: EntryShard(c.entry), Cooldowns: map[string]Cooldown{c.key: c.row}}}
			heldUnits[c.key] = u
			p.late = append(p.late, u)
		}
		u.Put = append(u.Put, c.entry)
		u.after(units[uf.find("a:"+c.source.ID)])
	}
	for _, id := range namedIDs {
		if !lateNamed[id] {
			continue
		}
		u := &planUnit{Unit: Unit{Shard: EntryShard(named[id]), Put: []*Entry{named[id]}}}
		for _, t := range namers[id] {
			u.after(units[uf.find("a:"+t)])
		}
		p.late = append(p.late, u)
	}
	return p, nil, nil
}

// after makes late unit u wait for unit s (nil: none) to be written.
func (u *planUnit) after(s *planUnit) {
	if s != nil && !slices.Contains(u.sources, s) {
		u.sources = append(u.sources, s)
	}
}

// unionFind joins the nodes of a round (keys, alerts, entries) that must
// be written together.
type unionFind map[string]string

func (u unionFind) add(n string) {
	if _, ok := u[n]; !ok {
		u[n] = n
	}
}

func (u unionFind) has(n string) bool { _, ok := u[n]; return ok }

func (u unionFind) find(n string) string {
	u.add(n)
	for u[n] != n {
		u[n] = u[u[n]]
		n = u[n]
	}
	return n
}

func (u unionFind) union(a, b string) {
	ra, rb := u.find(a), u.find(b)
	if ra != rb {
		u[rb] = ra
	}
}

// groupKey names the open group of a rule and vault (group wait).
func groupKey(a *alert.Alert) string { return "group|" + a.Rule + "|" + a.Vault }

// joinOpen returns the open alert of a's rule and vault, with a's
// findings added, if one was created within the group wait, nothing was
// sent from it yet and it has room for them (maxAlertFindings); nil when a
// must stand alone. The group's alert keeps
// its ID; findings already in it are not added again. joined holds the
// open alerts this round adds to.
func (d *Dispatcher) joinOpen(ctx context.Context, snap *Snapshot, a *alert.Alert, joined map[string]*Entry) (*Entry, error) {
	shard := Shard(a.Lead())
	gk := groupKey(a)
	if err := d.o.Outbox.Load(ctx, snap, Query{Read: []Ref{{shard, gk}}}); err != nil {
		return nil, fmt.Errorf("delivery: group: %w", err)
	}
	c := snap.Cooldowns[gk]
	if c.LastFinding == "" || a.Created.Sub(c.Last) >= d.o.GroupWait || c.LastFinding == a.ID {
		return nil, nil
	}
	e := joined[c.LastFinding]
	if e == nil {
		if err := d.o.Outbox.Load(ctx, snap, Query{Entries: []Ref{{shard, c.LastFinding}}}); err != nil {
			return nil, fmt.Errorf("delivery: outbox: %w", err)
		}
		if e = snap.Entries[c.LastFinding]; e == nil {
			return nil, nil
		}
		for _, r := range e.Receivers {
			if r.State != Pending || r.Attempts > 0 || !r.Lease.IsZero() {
				return nil, nil // already on its way: a new alert
			}
		}
		e = clone(e)
	}
	have := map[string]bool{}
	for _, f := range e.Alert.Findings {
		have[f.ID] = true
	}
	fs := append([]finding.Finding(nil), e.Alert.Findings...)
	for _, f := range a.Findings {
		if !have[f.ID] {
			fs = append(fs, f)
		}
	}
	if len(fs) > maxAlertFindings {
		return nil, nil // full: a new alert
	}
	merged := alert.New(fs, e.Alert.Created)
	merged.ID, merged.Repeat = e.Alert.ID, max(e.Alert.Repeat, a.Repeat)
	merged.Suppressed = e.Alert.Suppressed + a.Suppressed
	merged.Incident, merged.Version = e.Alert.Incident, e.Alert.Version
	e.Alert = merged
	joined[e.Alert.ID] = e
	return e, nil
}

// What the cooldown decided about one finding.
type verdict struct {
	what       verdictKind
	repeat     int // opens: the reminder it is
	suppressed int // opens: findings held back since the last alert
	incident   string
	version    int      // updates: the incident's message it is
	changes    []string // updates: what it adds
}

type verdictKind int

const (
	drops    verdictKind = iota // a decided finding repeating known facts: nothing
	holds                       // a new finding repeating known facts within the cooldown
	opens                       // a new incident's first message (or a reminder)
	updates_                    // an update of the key's incident
)

// verdicts decides, for one key's findings (in event-time order) and the
// key's cooldown c, which open an incident, which update the key's
// incident and which repeat what the user was told; it returns the
// cooldown that results and whether it changed. A finding within the
// current interval of the last alert, or decided before, makes a message
// only with a new fact (an update); otherwise it is held back (or
// dropped). The interval doubles (up to MaxReminder) while the condition
// keeps coming back, and resets when it stays away.
func (d *Dispatcher) verdicts(group []finding.Finding, decided map[string]bool, c Cooldown) ([]verdict, Cooldown, bool) {
	rule := group[0].Rule
	base := d.o.Cooldowns[rule]
	if base <= 0 {
		base = DefaultCooldown
	}
	policy, ok := d.o.Updates[rule]
	if !ok {
		policy = DefaultUpdatePolicy
	}
	vs := make([]verdict, len(group))
	changed := false
	for i := range group {
		f := &group[i]
		at := f.FirstEvent
		if at.IsZero() {
			at = f.WindowStart
		}
		t := c.Told
		if c.LastFinding == f.ID && (t == nil || t.Facts == facts(f)) {
			// The very facts of the key's last message, made of this
			// finding and committed with its decision: nothing new.
			vs[i] = verdict{what: drops}
			continue
		}
		interval := min(base<<min(c.Repeat, 20), max(d.o.MaxReminder, base))
		within := !c.Last.IsZero() && at.Sub(c.Last) < interval && c.Last.Sub(at) < interval
		if decided[f.ID] || within {
			// The incident the user was told of goes on: a new fact is
			// an update, sent at once; known facts are a repeat.
			if t != nil && !f.Period.Before(t.Opened) {
				if ch, next := changes(t, f, policy); len(ch) > 0 {
					c.Told, c.LastFinding, changed = next, f.ID, true
					vs[i] = verdict{what: updates_, incident: next.Incident, version: next.Version, changes: ch}
					continue
				}
			}
			if decided[f.ID] {
				vs[i] = verdict{what: drops}
				continue
			}
			c.Suppressed++
			changed = true
			vs[i] = verdict{what: holds}
			continue
		}
		if !c.Last.IsZero() && at.Sub(c.Last) < 2*interval {
			c.Repeat++ // the condition keeps coming back: remind, less often
		} else {
			c.Repeat = 0
		}
		vs[i] = verdict{what: opens, repeat: c.Repeat, suppressed: c.Suppressed, incident: f.ID}
		c.Last, c.LastFinding, c.Suppressed, c.Told = at, f.ID, 0, newTold(f)
		changed = true
	}
	return vs, c, changed
}

// group makes one alert per rule and vault of the findings that alert (of
// at most maxAlertFindings findings each).
func (d *Dispatcher) group(fs []finding.Finding, repeat, suppressed map[string]int) []*alert.Alert {
	type gk struct{ rule, vault, shard string }
	by := map[gk][]finding.Finding{}
	var order []gk
	for _, f := range fs {
		k := gk{f.Rule, f.Vault, Shard(&f)}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], f)
	}
	var out []*alert.Alert
	for _, k := range order {
		g := by[k]
		slices.SortFunc(g, byEventTime)
		for len(g) > 0 {
			part := g[:min(len(g), maxAlertFindings)]
			g = g[len(part):]
			a := alert.New(part, d.o.Now())
			for _, f := range part {
				a.Repeat = max(a.Repeat, repeat[f.ID])
				a.Suppressed += suppressed[f.ID]
			}
			out = append(out, a)
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// alertAt is when an alert's finding happened, for cooldowns.
func alertAt(f *finding.Finding) time.Time {
	if f.FirstEvent.IsZero() {
		return f.WindowStart
	}
	return f.FirstEvent
}

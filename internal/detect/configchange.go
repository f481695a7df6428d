package detect

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// A config_change rule keeps, per group (a vault), the configurations its
// records carried, in the group's BlockMeta entity: Values[t] holds the
// configuration seen at event time t (unix seconds) as JSON. Only a
// configuration that differs from the one before it in event time is kept,
// and only the newest maxConfigs: what every record is judged against is
// the configuration last seen before it. Adding one is idempotent (a set
// member under its time), so the entity needs no input positions. The
// configurations a batch's records are judged against (from the one before
// its earliest record on) are kept while the batch is applied, up to
// maxConfigsBatch: a batch is judged as the same records cut into smaller
// batches would be.
const (
	maxConfigs      = 8
	maxConfigsBatch = 256
)

// configValue is the value a configuration contributes: its JSON ("" when
// the event carries none).
func configValue(c *audit.VaultConfig) string {
	if c == nil {
		return ""
	}
	b, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	return string(b)
}

// configBefore returns the configuration last seen before t, "" if none.
func configBefore(e *state.Entity, t int64) string {
	if e == nil {
		return ""
	}
	best, have := int64(0), false
	for slot := range e.Values {
		if slot < t && (!have || slot > best) {
			best, have = slot, true
		}
	}
	if !have || len(e.Values[best]) == 0 {
		return ""
	}
	return slices.Max(e.Values[best])
}

// addConfig records configuration v seen at t unless the one seen before it
// is the same; it keeps the newest maxConfigs, and every one from the last
// seen before batchFirst on (up to maxConfigsBatch). It reports a change.
func addConfig(e *state.Entity, t int64, v string, batchFirst int64) bool {
	if configBefore(e, t) == v {
		return false
	}
	if !insertAt(e, t, v) {
		return false
	}
	keep := batchFirst
	for slot := range e.Values {
		if slot < batchFirst && (keep == batchFirst || slot > keep) {
			keep = slot
		}
	}
	for len(e.Values) > maxConfigs {
		oldest := int64(0)
		first := true
		for slot := range e.Values {
			if first || slot < oldest {
				oldest, first = slot, false
			}
		}
		if oldest >= keep && len(e.Values) <= maxConfigsBatch {
			break
		}
		delete(e.Values, oldest)
	}
	return true
}

// evalConfigChange judges every configuration of the batch against the one
// seen before it: loosening transitions raise a finding at the rule's
// severity; a weak configuration with nothing before it (the vault's first
// sighting) is reported once, as such, at a lower severity; an unchanged or
// hardened one raises nothing.
func (en *Engine) evalConfigChange(w *groupWork, ents map[state.Key]*state.Entity, events []audit.Event, out *candidates) {
	r := w.rule
	meta := ents[state.Key{Rule: r.ID, Group: w.group, Block: state.BlockMeta}]
	cd := int64(r.Cooldown / time.Second)
	idx := make([]int, len(w.contribs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return compareInt64(w.contribs[a].t, w.contribs[b].t)
	})
	for _, i := range idx {
		c := &w.contribs[i]
		e := &events[c.ev]
		before := configBefore(meta, c.t)
		if before == c.value {
			continue
		}
		var changes []string
		sev := r.Severity
		first := before == ""
		if first {
			changes = rules.Weaknesses(e.Config)
			sev = max(finding.Low, r.Severity-2)
		} else {
			var b audit.VaultConfig
			if json.Unmarshal([]byte(before), &b) != nil {
				continue
			}
			changes = rules.Loosened(&b, e.Config)
		}
		if len(changes) == 0 {
			continue
		}
		value := strings.Join(changes, "; ")
		if first {
			value = "first seen: " + value
		}
		k := handedKey{w.ri, w.group, period(c.t, cd), value}
		if en.known(k, 1, func() []string { return []string{e.Operation} }) {
			continue
		}
		f := en.newFinding(w, k.period, value)
		f.Severity = sev
		f.Value = value
		f.Count = 1
		ev := evidence(w, events, []int{i})
		ev.fill(&f)
		f.WindowStart, f.WindowEnd = f.FirstEvent, f.LastEvent
		who := e.Caller.Display()
		if who == "" {
			who = "an unknown caller"
		}
		where := ""
		if f.Vault != "" {
			where = " on " + f.Vault
		}
		switch {
		case first:
			f.Summary = fmt.Sprintf("%s: first configuration seen%s is weak (%s), seen in a %s by %s", r.Title, where, strings.Join(changes, ", "), e.Operation, who)
		case e.Operation == "VaultGet":
			f.Summary = fmt.Sprintf("%s%s: %s, seen in a VaultGet by %s (the change itself was not logged)", r.Title, where, strings.Join(changes, ", "), who)
		default:
			f.Summary = fmt.Sprintf("%s%s: %s, by %s (%s)", r.Title, where, strings.Join(changes, ", "), who, e.Operation)
		}
		out.add(f, k)
	}
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// insertAt adds configuration v to the sorted values e keeps at slot t
// (a copy: entities are shared until written); false if it is there.
func insertAt(e *state.Entity, t int64, v string) bool {
	if e.Values == nil {
		e.Values = map[int64][]string{}
	}
	vs := e.Values[t]
	i, found := slices.BinarySearch(vs, v)
	if found {
		return false
	}
	e.Values[t] = slices.Insert(slices.Clone(vs), i, v)
	return true
}

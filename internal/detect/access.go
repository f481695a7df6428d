package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/groupkey"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// An access_grant rule follows the principals a vault's access policies
// grant. Its state has two parts:
//
//   - per vault (the rule's group), in the BlockMeta entity, the access
//     policies' object ids of the configurations seen (VaultGet, VaultPut,
//     VaultPatch: audit.VaultConfig.PolicyObjectIDs), each with the
//     operation and caller that carried it, under its event time in Values.
//     A configuration is kept only when its object ids differ from those of
//     the one before it; those within the rule's window and lateness of the
//     newest are kept, with the one before them, at most maxGrantConfigs.
//     Adding one is idempotent (a set member under its time): no input
//     positions.
//   - per vault and principal (groupkey of both), in time blocks, the
//     principal's `then` events counted per bucket (Counts2), applied
//     exactly once by input position as sequence rules count theirs.
//
// A grant is an object id in a configuration's list that the configuration
// before it did not hold (the first configuration seen of a vault grants
// nothing: it is where knowledge starts); a removal is the reverse. Both are
// derived from the kept configurations whenever the vault or the principal
// has news, so the same records give the same grants whatever the batching
// and, within the lateness, whatever the order. With `then` a grant fires
// once the principal's events in the window from the grant's bucket (the
// sequence rules' window) reach count; without `then` it fires when the
// same object id is removed again within the window (Sentinel's access
// policy manipulation hunt). The finding's group is the vault and its
// value the principal's object id. A vault with more access policies than
// audit.MaxConfigList has the rest counted, not listed: grants past the
// 64th are not seen.
const maxGrantConfigs = 64

// grantConfig is one configuration an access_grant rule keeps.
type grantConfig struct {
	IDs []string `json:"p"`             // the access policies' object ids, sorted
	Op  string   `json:"op,omitempty"`  // the operation that carried them
	By  string   `json:"by,omitempty"`  // its caller, as shown
	OID string   `json:"oid,omitempty"` // its caller's object id
}

// grantValue is the value a configuration event contributes: its access
// policies' object ids and who carried them, "" when it carries no policy
// list (a record that does not say).
func grantValue(e *audit.Event) string {
	c := e.Config
	if c == nil || c.AccessPolicies == nil {
		return ""
	}
	ids := slices.Clone(c.PolicyObjectIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if ids == nil {
		ids = []string{}
	}
	b, err := json.Marshal(grantConfig{IDs: ids, Op: e.Operation, By: e.Caller.Display(), OID: e.Caller.ObjectID})
	if err != nil {
		return ""
	}
	return string(b)
}

// granteeGroup is the group of a principal's events on a vault: the
// vault's group key and the object id, encoded by groupkey.
func granteeGroup(vault, oid string) string {
	b := groupkey.AppendValue(nil, vault)
	b = append(b, groupkey.Sep)
	return string(groupkey.AppendValue(b, oid))
}

// grantContrib turns an event's contribution to an access_grant rule into
// the group it changes: a configuration's to the vault's group (g), with
// its value; a `then` event's to the caller's group on the vault. ok is
// false when the event contributes nothing (no policy list, no object id).
func grantContrib(e *audit.Event, g string, c *contrib) (string, bool) {
	if c.second {
		oid := strings.ToLower(e.Caller.ObjectID)
		if oid == "" {
			return "", false
		}
		return granteeGroup(g, oid), true
	}
	c.value = grantValue(e)
	return g, c.value != ""
}

func parseGrantConfig(v string) (grantConfig, bool) {
	var c grantConfig
	if json.Unmarshal([]byte(v), &c) != nil {
		return c, false
	}
	return c, true
}

// grantConfigBefore returns the configuration kept last before t, "" if none.
func grantConfigBefore(e *state.Entity, t int64) string {
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

func sameIDs(a, b string) bool {
	x, ok1 := parseGrantConfig(a)
	y, ok2 := parseGrantConfig(b)
	return ok1 && ok2 && slices.Equal(x.IDs, y.IDs)
}

// addGrantConfig keeps configuration v seen at t unless the one kept before
// it lists the same object ids, and forgets what no grant judged later
// needs: configurations older than keep seconds before the newest and
// than batchFrom (a window before the batch's earliest event), but the last of them (what the next is judged
// against), and past maxGrantConfigs (maxConfigsBatch while the batch
// needs them) the oldest. It reports a change.
func addGrantConfig(e *state.Entity, t int64, v string, keep, batchFrom int64) bool {
	if b := grantConfigBefore(e, t); b != "" && sameIDs(b, v) {
		return false
	}
	if !insertAt(e, t, v) {
		return false
	}
	slots := make([]int64, 0, len(e.Values))
	for s := range e.Values {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	// What the batch's events judge grants with stays until the batch is
	// judged (from the one before batchFrom on, up to maxConfigsBatch): a
	// batch judges as the same records cut smaller.
	cut := min(slots[len(slots)-1]-keep, batchFrom)
	drop := 0
	for drop+1 < len(slots) && slots[drop+1] < cut {
		drop++ // slots[drop+1] is old too: slots[drop] is not needed
	}
	if slots[drop] < batchFrom {
		drop = max(drop, len(slots)-maxConfigsBatch)
	} else {
		drop = max(drop, len(slots)-maxGrantConfigs)
	}
	for _, s := range slots[:drop] {
		delete(e.Values, s)
	}
	return true
}

// grantChange is an object id granted or removed by a configuration.
type grantChange struct {
	id      string
	t       int64
	removed bool
	cfg     grantConfig // the configuration that made the change
}

// grantChanges derives the grants and removals of a vault's kept
// configurations, in time order.
func grantChanges(meta *state.Entity) []grantChange {
	if meta == nil || len(meta.Values) < 2 {
		return nil
	}
	slots := make([]int64, 0, len(meta.Values))
	for s := range meta.Values {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	var out []grantChange
	var prev *grantConfig
	for _, s := range slots {
		vs := meta.Values[s]
		if len(vs) == 0 {
			continue
		}
		c, ok := parseGrantConfig(slices.Max(vs))
		if !ok {
			continue
		}
		if prev != nil {
			for _, id := range c.IDs {
				if _, found := slices.BinarySearch(prev.IDs, id); !found {
					out = append(out, grantChange{id: id, t: s, cfg: c})
				}
			}
			for _, id := range prev.IDs {
				if _, found := slices.BinarySearch(c.IDs, id); !found {
					out = append(out, grantChange{id: id, t: s, removed: true, cfg: c})
				}
			}
		}
		prev = &c
	}
	return out
}

// grantCand is one grant an access_grant rule judges in a batch.
type grantCand struct {
	vault string
	g     grantChange
}

// evalAccessGrants judges the grants the batch's access_grant groups touch:
// a vault's configurations judge the grants they made (and, without
// `then`, the grants their removals end), a principal's events the grants
// of that principal they follow. Each grant is judged once per batch, with
// the evidence of every group of the batch that touches it.
func (en *Engine) evalAccessGrants(ctx context.Context, groups []*groupWork, ents map[state.Key]*state.Entity, events []audit.Event, out *candidates) error {
	if len(groups) == 0 {
		return nil
	}
	bs := int64(en.settings.Bucket / time.Second)
	type touch struct {
		vault   *groupWork            // the vault's configurations in the batch
		grantee map[string]*groupWork // the principals' events, by object id
	}
	byRule := map[int]map[string]*touch{}
	var ris []int
	for _, w := range groups {
		vt := byRule[w.ri]
		if vt == nil {
			vt = map[string]*touch{}
			byRule[w.ri] = vt
			ris = append(ris, w.ri)
		}
		vault, oid := w.group, ""
		if w.contribs[0].second {
			parts := groupkey.Split(w.group, 2)
			vault, oid = parts[0], parts[1]
		}
		t := vt[vault]
		if t == nil {
			t = &touch{grantee: map[string]*groupWork{}}
			vt[vault] = t
		}
		if oid == "" {
			t.vault = w
		} else {
			t.grantee[oid] = w
		}
	}
	slices.Sort(ris)
	for _, ri := range ris {
		r := en.rules[ri]
		n := int64(r.Window / en.settings.Bucket)
		win := int64(r.Window / time.Second)
		cd := int64(r.Cooldown / time.Second)
		vaults := make([]string, 0, len(byRule[ri]))
		for v := range byRule[ri] {
			vaults = append(vaults, v)
		}
		slices.Sort(vaults)
		var cands []grantCand
		for _, v := range vaults {
			t := byRule[ri][v]
			changes := grantChanges(ents[state.Key{Rule: r.ID, Group: v, Block: state.BlockMeta}])
			// A configuration at t can make or unmake the grant of the next
			// configuration kept after it, and end grants up to a window
			// before it.
			from := int64(math.MaxInt64)
			if t.vault != nil {
				for _, c := range t.vault.contribs {
					from = min(from, c.t)
				}
				if r.Then == nil {
					from -= win
				}
			}
			for _, g := range changes {
				if g.removed {
					continue
				}
				judge := g.t >= from
				if gw := t.grantee[g.id]; gw != nil && !judge && r.Then != nil {
					bg := floorDiv(g.t, bs)
					for _, c := range gw.contribs {
						if b := floorDiv(c.t, bs); b >= bg && b < bg+n {
							judge = true
							break
						}
					}
				}
				if judge {
					cands = append(cands, grantCand{vault: v, g: g})
				}
			}
		}
		// The principals' blocks the grants need that the batch did not read.
		if r.Then != nil {
			var missing []state.Key
			for _, c := range cands {
				bg := floorDiv(c.g.t, bs)
				for b := floorDiv(bg*bs, blockSec); b <= floorDiv((bg+n-1)*bs, blockSec); b++ {
					k := state.Key{Rule: r.ID, Group: granteeGroup(c.vault, c.g.id), Block: b}
					if _, ok := ents[k]; !ok && !slices.Contains(missing, k) {
						missing = append(missing, k)
					}
				}
			}
			if len(missing) > 0 {
				got, err := en.store.Get(ctx, missing)
				if err != nil {
					return fmt.Errorf("read state: %w", err)
				}
				for _, k := range missing {
					ents[k] = got[k] // nil when absent: not read again
				}
			}
		}
		for _, c := range cands {
			en.judgeGrant(ri, c, byRule[ri][c.vault].vault, byRule[ri][c.vault].grantee[c.g.id],
				grantChangesOf(ents, r, c.vault), ents, events, n, win, cd, out)
		}
	}
	return nil
}

func grantChangesOf(ents map[state.Key]*state.Entity, r *rules.Rule, vault string) []grantChange {
	return grantChanges(ents[state.Key{Rule: r.ID, Group: vault, Block: state.BlockMeta}])
}

// removalOf returns the first removal of g's object id after g, if it came
// within win seconds.
func removalOf(later []grantChange, g grantChange, win int64) (grantChange, bool) {
	for _, x := range later {
		if x.id != g.id {
			continue
		}
		if x.removed && x.t > g.t && x.t-g.t <= win {
			return x, true
		}
		if x.t > g.t {
			break // granted again, or removed too late
		}
	}
	return grantChange{}, false
}

// judgeGrant raises the finding of one grant when its condition holds.
func (en *Engine) judgeGrant(ri int, c grantCand, vw, gw *groupWork, changes []grantChange, ents map[state.Key]*state.Entity,
	events []audit.Event, n, win, cd int64, out *candidates) {
	r := en.rules[ri]
	bs := int64(en.settings.Bucket / time.Second)
	bg := floorDiv(c.g.t, bs)
	var count int64
	var rm grantChange
	if r.Then != nil {
		for b := bg; b < bg+n; b++ {
			if e := ents[state.Key{Rule: r.ID, Group: granteeGroup(c.vault, c.g.id), Block: floorDiv(b*bs, blockSec)}]; e != nil {
				count += e.Counts2[b]
			}
		}
		if count < int64(r.Count) {
			return
		}
	} else {
		i := slices.IndexFunc(changes, func(x grantChange) bool { return x.id == c.g.id && x.t == c.g.t && !x.removed })
		var ok bool
		if i < 0 {
			return
		}
		if rm, ok = removalOf(changes[i+1:], c.g, win); !ok {
			return
		}
		count = 1
	}
	// Evidence: the configurations that granted (and removed) it, and the
	// principal's events in the window, as far as this batch holds them.
	ew := &groupWork{rule: r, ri: ri, group: c.vault}
	if vw != nil {
		for _, x := range vw.contribs {
			if x.t == c.g.t || (rm.t != 0 && x.t == rm.t) {
				ew.contribs = append(ew.contribs, x)
			}
		}
	}
	if gw != nil && r.Then != nil {
		for _, x := range gw.contribs {
			if b := floorDiv(x.t, bs); b >= bg && b < bg+n {
				ew.contribs = append(ew.contribs, x)
			}
		}
	}
	if len(ew.contribs) == 0 && vw != nil {
		// The configurations that revealed the grant (one kept between
		// others, arriving late).
		ew.contribs = append(ew.contribs, vw.contribs...)
	}
	if len(ew.contribs) == 0 {
		return
	}
	idx := make([]int, len(ew.contribs))
	for i := range idx {
		idx[i] = i
	}
	// The operations that granted and removed are in state: the finding
	// names them whatever batch raises it.
	ops := func() []string {
		out := opsOf(ew, events, idx)
		for _, op := range []string{c.g.cfg.Op, rm.cfg.Op} {
			if op != "" && !slices.Contains(out, op) {
				out = append(out, op)
			}
		}
		slices.Sort(out)
		return out
	}
	k := handedKey{ri, c.vault, period(c.g.t, cd), c.g.id}
	if en.known(k, count, ops) {
		return
	}
	f := en.newFinding(ew, k.period, c.g.id)
	f.Value = c.g.id
	f.Count, f.Threshold = count, int64(r.Count)
	ev := evidence(ew, events, idx)
	ev.fill(&f)
	for _, op := range []string{c.g.cfg.Op, rm.cfg.Op} {
		if op != "" && !slices.ContainsFunc(f.TopOperations, func(x finding.Count) bool { return x.Value == op }) {
			f.TopOperations = append(f.TopOperations, finding.Count{Value: op, Count: 1})
		}
	}
	f.Operations = ops()
	f.Window = r.Window
	f.WindowStart = time.Unix(bg*bs, 0).UTC()
	f.WindowEnd = time.Unix((bg+n)*bs, 0).UTC()
	// The grantee as the batch names it, else its object id.
	who := c.g.id
	for _, x := range ew.contribs {
		if e := &events[x.ev]; x.second && e.Caller.Display() != "" {
			who = e.Caller.Display()
			break
		}
	}
	by := c.g.cfg.By
	if by == "" {
		by = "an unknown caller"
	}
	self := ""
	if c.g.cfg.OID != "" && strings.EqualFold(c.g.cfg.OID, c.g.id) {
		self = " (granted itself)"
	}
	at := time.Unix(c.g.t, 0).UTC().Format("15:04:05")
	if r.Then != nil {
		did := ""
		if ops := opsOf(ew, events, secondIdx(ew)); len(ops) > 0 {
			did = " (" + strings.Join(ops, ", ") + ")"
		}
		f.Summary = fmt.Sprintf("%s on %s: %s was granted access by %s%s (%s at %s), then made %d matching requests within %s%s",
			r.Title, c.vault, who, by, self, c.g.cfg.Op, at, count, fmtDur(r.Window), did)
	} else {
		rmBy := rm.cfg.By
		if rmBy == "" {
			rmBy = "an unknown caller"
		}
		f.Summary = fmt.Sprintf("%s on %s: %s was added to the access policies by %s%s (%s at %s) and removed by %s (%s) %s later",
			r.Title, c.vault, who, by, self, c.g.cfg.Op, at, rmBy, rm.cfg.Op, fmtGap(time.Duration(rm.t-c.g.t)*time.Second))
	}
	out.add(f, k)
}

// secondIdx lists a group's `then` contributions.
func secondIdx(w *groupWork) []int {
	var idx []int
	for i, c := range w.contribs {
		if c.second {
			idx = append(idx, i)
		}
	}
	if idx == nil {
		return []int{} // opsOf reads nil as all
	}
	return idx
}

// fmtGap shows a duration as fmtDur does when it is whole minutes, else in
// full ("9m30s").
func fmtGap(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmtDur(d)
	}
	return d.String()
}

package detect

import (
	"slices"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
)

// A window still over its threshold is raised again by every batch that
// adds to it, with the same finding ID. Sinks are idempotent by finding ID,
// so handing such a repeat on changes nothing the user sees; building it
// (evidence, KQL, summary, its JSON encoding) and recording it again is
// pure cost, and with many callers it is most of the cost of detection.
//
// So the engine remembers, per process and bounded, what it handed to the
// sink successfully: check before, record after success (as Alertmanager's
// notification log does). A candidate whose finding was handed on already
// is skipped before its evidence is built, unless its facts grew: its count
// is above the count last handed on (a sink that shows the newest count of
// an incident, as the tests of exactly-once counting read it, still sees
// every count; a window that stays over its threshold while the batches add
// to later windows of its period, the usual case, is skipped), or it holds
// an operation not handed on with it before (a VaultDelete after the
// VaultPatch that raised the finding: an incident grows by what it does,
// not only by how much). A finding
// is marked handed only once sink.Found returned nil: a batch retried after
// the sink failed hands its findings on again, exactly as before.

// handedKey names a finding within an engine: rule (by index), group,
// period start and value, the inputs of its ID (finding.NewID) without
// hashing them.
type handedKey struct {
	ri     int
	group  string
	period int64
	value  string
}

// handedState is what the engine knows of one finding.
type handedState struct {
	recorded bool  // the store answered AddFinding for its ID
	count    int64 // the count a sink accepted last; 0: never handed on
	// ops are the operations handed on with it, sorted (at most
	// finding.MaxOperations).
	ops []string
}

// maxHanded bounds Engine.handed; at the bound the memory is cleared, and a
// forgotten finding costs one more building and handing on.
const maxHanded = 1 << 16

type handedMemo struct {
	sync.Mutex
	m map[handedKey]handedState
	// seeded holds the mark entities (marks.go) whose content is in m,
	// by key: a mark entity is never changed in place (marks are not
	// updated state.InPlace), so the same pointer brings nothing new.
	seeded map[state.Key]*state.Entity
}

// known reports whether a candidate finding can be skipped: it was handed
// on, its count is not above the count handed on, and its operations
// (ops, called only when the rest holds) were all handed on with it.
func (en *Engine) known(k handedKey, count int64, ops func() []string) bool {
	en.handed.Lock()
	s, ok := en.handed.m[k]
	en.handed.Unlock()
	if !ok || s.count == 0 || count > s.count {
		return false
	}
	for _, op := range ops() {
		if _, found := slices.BinarySearch(s.ops, op); !found {
			return false
		}
	}
	return true
}

// wasRecorded reports whether the store answered AddFinding for k.
func (en *Engine) wasRecorded(k handedKey) bool {
	en.handed.Lock()
	defer en.handed.Unlock()
	return en.handed.m[k].recorded
}

// remember records what happened to the findings of keys: recorded, and,
// when handed, handed on with their counts.
func (en *Engine) remember(keys []handedKey, fs []finding.Finding, handed bool) {
	en.handed.Lock()
	defer en.handed.Unlock()
	if en.handed.m == nil || len(en.handed.m)+len(keys) > maxHanded {
		en.handed.m = make(map[handedKey]handedState)
		en.handed.seeded = nil
	}
	for i, k := range keys {
		s := en.handed.m[k]
		s.recorded = true
		if handed {
			s.count = max(s.count, fs[i].Count, 1)
			s.ops = unionSorted(s.ops, fs[i].Operations)
		}
		en.handed.m[k] = s
	}
}

// unionSorted returns the sorted union of two sorted lists, at most
// finding.MaxOperations long; a unchanged when b adds nothing.
func unionSorted(a, b []string) []string {
	var out []string
	for _, x := range b {
		if _, found := slices.BinarySearch(a, x); found {
			continue
		}
		if out == nil {
			out = slices.Clone(a)
		}
		if len(out) >= finding.MaxOperations {
			break
		}
		i, _ := slices.BinarySearch(out, x)
		out = slices.Insert(out, i, x)
	}
	if out == nil {
		return a
	}
	return out
}

// handedKeep is how long (seconds) after its period a finding of rule ri
// can still be raised from state: the rule's cooldown and state horizon,
// and a window block.
func (en *Engine) handedKeep(ri int) int64 {
	r := en.rules[ri]
	return int64((r.Cooldown + en.horizon[r.ID] + blockDur) / time.Second)
}

// forgetHandedBefore drops what the engine knows of findings whose period,
// plus the rule's cooldown and state horizon, ended before wm: their state
// is gone, so they are not raised again from it. (Forgetting one too early
// costs one more handing on, nothing else.)
func (en *Engine) forgetHandedBefore(wm int64) {
	en.handed.Lock()
	defer en.handed.Unlock()
	for k := range en.handed.m {
		if k.period+en.handedKeep(k.ri) < wm {
			delete(en.handed.m, k)
		}
	}
	for k := range en.handed.seeded {
		if en.pruneMark(k, wm) {
			delete(en.handed.seeded, k)
		}
	}
}

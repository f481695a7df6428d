package delivery

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/kvwatch/kvwatch/internal/finding"
)

// Brief says what a routine decision did not alert, so that what was
// learned as routine is reported, not invisible: digests and `kvwatch
// alerts list` count routine findings per rule and group from it. Values
// come from log records (the vault, the group, the caller): escape them
// wherever they are shown.
type Brief struct {
	Rule     string           `json:"rule"`
	Severity finding.Severity `json:"severity"`
	Vault    string           `json:"vault,omitempty"`
	Group    []finding.Pair   `json:"group,omitempty"`
	// Caller is the group's caller (routine rules group by it; else the
	// caller of the finding's example event), CallerName its UPN or name
	// when it has one.
	Caller     string    `json:"caller,omitempty"`
	CallerName string    `json:"callerName,omitempty"`
	Count      int64     `json:"count,omitempty"` // the finding's count when decided
	Period     time.Time `json:"period,omitzero"`
	FirstEvent time.Time `json:"firstEvent,omitzero"`
}

// routineDecision is the decision about a finding marked routine: recorded,
// not alerted, and saying what it was about.
func routineDecision(f *finding.Finding, now time.Time) Decision {
	return Decision{Routine: true, At: now, Facts: facts(f), Of: BriefOf(f)}
}

// BriefOf describes a finding for a routine decision.
func BriefOf(f *finding.Finding) *Brief {
	b := &Brief{Rule: f.Rule, Severity: f.Severity, Vault: f.Vault, Group: slices.Clone(f.Group), Count: f.Count,
		Period: f.Period, FirstEvent: f.FirstEvent}
	_, b.Caller = f.GroupCaller()
	if c := f.Example; c != nil && (b.Caller == "" || b.Caller == c.Caller.Key || b.Caller == c.Caller.ObjectID) {
		b.Caller = c.Caller.Key
		if n := c.Caller.Display(); n != b.Caller {
			b.CallerName = n
		}
	}
	return b
}

// RoutineDecision is a routine decision and the finding it is about.
type RoutineDecision struct {
	Finding string
	Decision
}

// RoutineLister is implemented by outboxes that list the routine decisions
// made in a time range (both outboxes do): digests and `kvwatch alerts
// list` report routine findings from them. A routine finding handed on
// later above its routine is alerted and its routine decision stays: the
// caller leaves out those whose finding an alert carries.
type RoutineLister interface {
	// RoutineDecisions lists the routine decisions made (Decision.At) in
	// [from, to), newest first, at most limit; truncated says there were
	// more.
	RoutineDecisions(ctx context.Context, from, to time.Time, limit int) (ds []RoutineDecision, truncated bool, err error)
}

var _ RoutineLister = (*Memory)(nil)

// RoutineDecisions implements RoutineLister.
func (m *Memory) RoutineDecisions(_ context.Context, from, to time.Time, limit int) ([]RoutineDecision, bool, error) {
	m.mu.Lock()
	var out []RoutineDecision
	for id, d := range m.decisions {
		if d.Routine && !d.At.Before(from) && d.At.Before(to) {
			out = append(out, RoutineDecision{Finding: id, Decision: d})
		}
	}
	m.mu.Unlock()
	SortRoutine(out)
	if len(out) > limit {
		return out[:max(limit, 0)], true, nil
	}
	return out, false, nil
}

// SortRoutine orders routine decisions newest first (ties by finding ID).
func SortRoutine(ds []RoutineDecision) {
	slices.SortFunc(ds, func(a, b RoutineDecision) int {
		return cmp.Or(b.At.Compare(a.At), cmp.Compare(a.Finding, b.Finding))
	})
}

package detect_test

import (
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
)

// Learning is per group: a vault first seen on day 9 learns its own callers
// for 7 days instead of reporting each of them as new, while a vault
// watched since day 0 reports a new caller on day 9.
func TestNewValueLearningIsPerGroup(t *testing.T) {
	h := newHarness(t, `
rules:
  - id: new-caller
    kind: new_value
    match: {families: [secret]}
    group_by: [vault]
    fields: [caller]
    learning: 7d
    horizon: 30d
`)
	on := func(v string) func(*audit.Event) { return func(e *audit.Event) { e.Vault = v } }
	day := 24 * time.Hour
	h.feed(t, []audit.Event{ev("a", t0, 1, on("kv-old"))})
	// Day 9: a new vault with 20 callers in two batches, and a new caller on
	// the old vault.
	var evs []audit.Event
	for i := range 20 {
		evs = append(evs, ev(string(rune('b'+i)), t0.Add(9*day+time.Duration(i)*time.Minute), int64(10+i), on("kv-new")))
	}
	h.feed(t, evs[:10])
	h.feed(t, append(evs[10:], ev("z", t0.Add(9*day), 40, on("kv-old"))))
	if got := h.ids(); len(got) != 1 || h.found[0].Value != "z" || h.found[0].Vault != "kv-old" {
		t.Fatalf("findings %v, want only z on kv-old", got)
	}
	// Day 17: the new vault has learned; a caller it never saw is new.
	h.feed(t, []audit.Event{ev("b", t0.Add(17*day), 50, on("kv-new")), ev("y", t0.Add(17*day), 51, on("kv-new"))})
	if len(h.found) != 2 || h.found[1].Value != "y" || h.found[1].Vault != "kv-new" {
		t.Fatalf("findings %v, want z on kv-old then y on kv-new", h.ids())
	}
}

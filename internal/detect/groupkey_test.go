package detect_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// Two (vault, caller) pairs whose values joined by a bare 0x1f give the
// same string never share a count, and each finding names its own vault
// and caller (group fields, summary, KQL).
func TestGroupKeysDoNotCollide(t *testing.T) {
	for _, tc := range []struct{ a, b [2]string }{
		{[2]string{"kv1\x1fa", "b"}, [2]string{"kv1", "a\x1fb"}},
		{[2]string{"kv1\x1f", "x"}, [2]string{"kv1", "\x1fx"}},
		{[2]string{"kv1\x1e", "\x1fx"}, [2]string{"kv1\x1e\x1f", "x"}},
	} {
		h := newHarness(t, thresholdRule)
		var evs []audit.Event
		for i := range 12 { // 6 each: neither pair reaches 10 on its own
			p := tc.a
			if i%2 == 1 {
				p = tc.b
			}
			evs = append(evs, ev(p[1], t0.Add(time.Duration(i)*time.Second), int64(i+1), func(e *audit.Event) { e.Vault = p[0] }))
		}
		h.feed(t, evs)
		if len(h.found) != 0 {
			t.Errorf("%q and %q: 6 reads each raised %v", tc.a, tc.b, h.ids())
		}
		// Four more for a: only a's group fires, with a's count and names.
		var more []audit.Event
		for i := range 4 {
			more = append(more, ev(tc.a[1], t0.Add(time.Duration(20+i)*time.Second), int64(20+i), func(e *audit.Event) { e.Vault = tc.a[0] }))
		}
		h.feed(t, more)
		if len(h.found) != 1 {
			t.Fatalf("%q: findings %v, want one", tc.a, h.ids())
		}
		f := h.found[0]
		want := []finding.Pair{{Field: "vault", Value: tc.a[0]}, {Field: "caller", Value: tc.a[1]}}
		if f.Count != 10 || len(f.Group) != 2 || f.Group[0] != want[0] || f.Group[1] != want[1] {
			t.Fatalf("%q: count %d group %q, want 10 and %q", tc.a, f.Count, f.Group, want)
		}
		if f.Vault != tc.a[0] {
			t.Errorf("%q: finding vault %q", tc.a, f.Vault)
		}
		if kql := finding.KQL(&f); !strings.Contains(kql, finding.Quote(tc.a[1])) {
			t.Errorf("%q: KQL does not filter on the caller:\n%s", tc.a, kql)
		}
	}
}

// A new_value rule's values of several fields are kept apart the same
// way, and shown to the user as the values, not the key.
func TestNewValueTuplesDoNotCollide(t *testing.T) {
	h := newHarness(t, `
rules:
  - id: new-caller-object
    kind: new_value
    match: {families: [secret]}
    group_by: [vault]
    fields: [caller, object_name]
    learning: 1h
    horizon: 30d
`)
	with := func(caller, object string, at time.Time, seq int64) audit.Event {
		return ev(caller, at, seq, func(e *audit.Event) { e.ObjectName = object })
	}
	h.feed(t, []audit.Event{with("a\x1fb", "c", t0, 1)})
	h.feed(t, []audit.Event{with("a", "b\x1fc", t0.Add(2*time.Hour), 2)})
	if len(h.found) != 1 {
		t.Fatalf("findings %v, want the second pair as new", h.ids())
	}
	if v := h.found[0].Value; v != "a / b\x1fc" {
		t.Errorf("value shown %q, want %q", v, "a / b\x1fc")
	}
}

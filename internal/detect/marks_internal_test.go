package detect

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kvwatch/kvwatch/internal/state"
)

// A mark entity stays within its stated bound (under 300 KB encoded,
// whatever the input: marks.go), and what it marks is exactly what a
// fresh engine takes back.
func TestMarkBounds(t *testing.T) {
	k := state.Key{Rule: markPrefix + "r", Group: "g", Block: 20000}
	items := map[state.Key][]markItem{}
	long := strings.Repeat("v", maxMarkValue)
	for i := range 2000 {
		var ops []string
		for j := range 40 {
			ops = append(ops, fmt.Sprintf("%03d%s", j, strings.Repeat("o", maxMarkOp-3)))
		}
		ops = append(ops, strings.Repeat("x", maxMarkOp+1)) // too long: not marked
		value := fmt.Sprintf("%04d%s", i, long[4:])
		items[k] = append(items[k], markItem{period: 20000*markDay + int64(i%24)*3600, count: int64(i + 1), value: value, ops: ops})
	}
	items[k] = append(items[k], markItem{period: 20000 * markDay, count: 1, value: long + "!"}) // too long: not marked
	e := &state.Entity{}
	if !markApply(items)(k, e) {
		t.Fatal("nothing marked")
	}
	if n := state.EncodedSize(e); n > 300<<10 {
		t.Errorf("a mark entity encodes to %d bytes, over 300 KB", n)
	}
	if len(e.Applied) != maxMarks {
		t.Errorf("%d findings marked, want the bound %d", len(e.Applied), maxMarks)
	}
	ops := 0
	for _, slot := range e.Values {
		ops += len(slot)
		for _, m := range slot {
			if strings.Contains(m, "xxxx") {
				t.Errorf("an operation over %d bytes was marked", maxMarkOp)
			}
		}
	}
	if ops != maxMarkOps {
		t.Errorf("%d operations marked, want the bound %d", ops, maxMarkOps)
	}
	// Marking the same again changes nothing.
	if markApply(items)(k, e) {
		t.Error("marking the same findings again changed the entity")
	}
}

// What one engine marks, another takes into its memory of what was handed
// on: the count, and the operations of each value, no other value's.
func TestMarksSeedAnotherEngine(t *testing.T) {
	en := &Engine{ruleIndex: map[string]int{"r": 0}, marks: true}
	k := state.Key{Rule: markPrefix + "r", Group: "g", Block: 20000}
	p := 20000*markDay + 3600
	e := &state.Entity{}
	markApply(map[state.Key][]markItem{k: {
		{period: p, count: 30, value: "", ops: []string{"SecretGet", "SecretList"}},
		{period: p, count: 1, value: "a", ops: []string{"VaultPatch"}},
		{period: p, count: 1, value: "ab", ops: []string{"VaultDelete"}},
	}})(k, e)
	en.seedMarks(map[state.Key]*state.Entity{k: e})
	for _, c := range []struct {
		value string
		count int64
		ops   []string
		known bool
	}{
		{"", 30, []string{"SecretGet"}, true},
		{"", 31, []string{"SecretGet"}, false},                 // grew
		{"", 20, []string{"SecretGet", "SecretDelete"}, false}, // an operation not handed on
		{"a", 1, []string{"VaultPatch"}, true},
		{"a", 1, []string{"VaultDelete"}, false}, // "ab"'s, not "a"'s
		{"ab", 1, []string{"VaultDelete"}, true},
		{"b", 1, nil, false},
	} {
		got := en.known(handedKey{0, "g", p, c.value}, c.count, func() []string { return c.ops })
		if got != c.known {
			t.Errorf("value %q count %d ops %v: known %v, want %v", c.value, c.count, c.ops, got, c.known)
		}
	}
	if !en.wasRecorded(handedKey{0, "g", p, ""}) {
		t.Error("a marked finding is not taken as recorded")
	}
}

package rules_test

import (
	"testing"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/rules"
)

// Pairs of (vault, caller) that a bare 0x1f join gave one key get two
// keys, and each key splits back into its own pair.
func TestGroupKeyInjective(t *testing.T) {
	r := &rules.Rule{GroupBy: []string{"vault", "caller"}}
	ev := func(vault, caller string) *audit.Event {
		return &audit.Event{Vault: vault, Caller: audit.Caller{Key: caller}}
	}
	for _, tc := range []struct{ a, b [2]string }{
		{[2]string{"kv1\x1fa", "b"}, [2]string{"kv1", "a\x1fb"}},
		{[2]string{"kv1\x1f", ""}, [2]string{"kv1", "\x1f"}},
		{[2]string{"kv1\x1e", "\x1fb"}, [2]string{"kv1\x1e\x1f", "b"}},
		{[2]string{"\x1e\x1f\x1e", "\x1f"}, [2]string{"\x1e", "\x1e\x1f\x1f"}},
	} {
		ka, kb := r.GroupKey(ev(tc.a[0], tc.a[1])), r.GroupKey(ev(tc.b[0], tc.b[1]))
		if ka == kb {
			t.Errorf("%q and %q share the group %q", tc.a, tc.b, ka)
		}
		for _, c := range []struct {
			key  string
			want [2]string
		}{{ka, tc.a}, {kb, tc.b}} {
			g := r.Group(c.key)
			if len(g) != 2 || g[0].Field != "vault" || g[0].Value != c.want[0] || g[1].Field != "caller" || g[1].Value != c.want[1] {
				t.Errorf("group %q splits into %q, want %q", c.key, g, c.want)
			}
		}
	}
	if k := r.GroupKey(ev("kv-prod", "alice")); k != "kv-prod\x1falice" {
		t.Errorf("ordinary values: key %q, want it unchanged from before", k)
	}
}

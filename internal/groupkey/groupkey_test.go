package groupkey_test

import (
	"slices"
	"testing"

	"github.com/kvwatch/kvwatch/internal/groupkey"
)

// Pairs that shared a key when values were joined by a bare 0x1f.
func TestNoCollisions(t *testing.T) {
	for _, tc := range []struct{ a, b [2]string }{
		{[2]string{"kv1\x1fa", "b"}, [2]string{"kv1", "a\x1fb"}},
		{[2]string{"kv1\x1f", "a"}, [2]string{"kv1", "\x1fa"}},
		{[2]string{"\x1f", ""}, [2]string{"", "\x1f"}},
		{[2]string{"kv1\x1e", "\x1fa"}, [2]string{"kv1\x1e\x1f", "a"}},
		{[2]string{"a\x1e", "b"}, [2]string{"a", "\x1eb"}},
		{[2]string{"a\x1e\x1f", "b"}, [2]string{"a", "\x1e\x1fb"}},
	} {
		ka, kb := groupkey.Join(tc.a[0], tc.a[1]), groupkey.Join(tc.b[0], tc.b[1])
		if ka == kb {
			t.Errorf("%q and %q share the key %q", tc.a, tc.b, ka)
		}
		for _, p := range [][2]string{tc.a, tc.b} {
			k := groupkey.Join(p[0], p[1])
			if got := groupkey.Split(k, 2); !slices.Equal(got, p[:]) {
				t.Errorf("%q: key %q splits into %q", p, k, got)
			}
		}
	}
}

func TestPlainValuesUnchanged(t *testing.T) {
	// Keys of ordinary values are what they were before escaping: state
	// written by an older version keeps its keys.
	if k := groupkey.Join("kv-payments-prod", "55e6f708-192a-43b4-85d6-e7f8091a2b3c"); k != "kv-payments-prod\x1f55e6f708-192a-43b4-85d6-e7f8091a2b3c" {
		t.Errorf("key %q", k)
	}
	if k := groupkey.Join("only\x1fone"); k != "only\x1fone" {
		t.Errorf("a one-value key is the value: %q", k)
	}
	if got := groupkey.Split("kv1", 3); !slices.Equal(got, []string{"kv1", "", ""}) {
		t.Errorf("short key: %q", got)
	}
}

func FuzzGroupKey(f *testing.F) {
	f.Add("kv1", "alice", "kv1", "bob")
	f.Add("kv1\x1fa", "b", "kv1", "a\x1fb")
	f.Add("\x1e", "\x1f", "\x1e\x1f", "")
	f.Add("", "", "", "\x1e")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		for _, n := range []int{2, 3} {
			x, y := []string{a, b, c}[:n], []string{c, d, a}[:n]
			kx, ky := groupkey.Join(x...), groupkey.Join(y...)
			if got := groupkey.Split(kx, n); !slices.Equal(got, x) {
				t.Fatalf("%q: key %q splits into %q", x, kx, got)
			}
			if (kx == ky) != slices.Equal(x, y) {
				t.Fatalf("%q and %q: keys %q and %q", x, y, kx, ky)
			}
			var buf []byte
			for i, v := range x {
				if i > 0 {
					buf = append(buf, groupkey.Sep)
				}
				buf = groupkey.AppendValue(buf, v)
			}
			if string(buf) != kx {
				t.Fatalf("AppendValue gives %q, Join %q", buf, kx)
			}
		}
	})
}

func BenchmarkJoin(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = groupkey.Join("kv-payments-prod", "55e6f708-192a-43b4-85d6-e7f8091a2b3c")
	}
}

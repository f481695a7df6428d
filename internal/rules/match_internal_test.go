package rules

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// hasFold answers as the case-insensitive search it replaces (every
// window of len(lit) bytes compared with strings.EqualFold), on ASCII and
// non-ASCII text and patterns, letters or not.
func TestHasFoldAsEqualFoldWindows(t *testing.T) {
	slow := func(s, lit string) bool {
		for i := 0; i+len(lit) <= len(s); i++ {
			if strings.EqualFold(s[i:i+len(lit)], lit) {
				return true
			}
		}
		return false
	}
	alphabet := []string{"a", "A", "b", "K", "k", "\u212a" /* Kelvin sign */, "s", "\u017f" /* long s */, "@", ".", "é", "É", "-", "0"}
	r := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 200_000 {
		s, lit := word(r.IntN(12)), word(1+r.IntN(3))
		if r.IntN(4) == 0 && len(s) > 0 { // often a pattern cut from the text
			i := r.IntN(len(s))
			lit = s[i:min(len(s), i+1+r.IntN(3))]
		}
		if got, want := hasFold(s, lit), slow(s, lit); got != want {
			t.Fatalf("hasFold(%q, %q) = %v, want %v", s, lit, got, want)
		}
	}
	for _, c := range []struct {
		s, lit string
		want   bool
	}{
		{"alice@contoso.com", "@", true},
		{"00000000-0000-0000-0000-000000000000", "@", false},
		{"Alice@Contoso.COM", "contoso", true},
		{"ALICE", "lic", true},
	} {
		if got := hasFold(c.s, c.lit); got != c.want {
			t.Errorf("hasFold(%q, %q) = %v, want %v", c.s, c.lit, got, c.want)
		}
	}
}

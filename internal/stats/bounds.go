package stats

import (
	"slices"
	"strings"

	"github.com/kvwatch/kvwatch/internal/state"
)

// boundMeta keeps a vault's identities within MaxSeen and MetaBytes: past
// either it forgets the least recently seen (ties: the greatest key) and
// their names.
func boundMeta(e *state.Entity) {
	names := map[string]int{} // key → encoded length of its name entry
	size := 0
	for _, n := range e.Values[vNames] {
		k, _, _ := strings.Cut(n, Sep)
		l := state.JSONStringLen(n) + 1
		names[k] = l
		size += l
	}
	if len(e.Seen) <= MaxSeen {
		for k, s := range e.Seen {
			size += state.SeenEntryLen(k, s)
		}
		if size <= MetaBytes {
			return
		}
	}
	type kl struct {
		k    string
		last int64
		n    int
	}
	all := make([]kl, 0, len(e.Seen))
	for k, s := range e.Seen {
		all = append(all, kl{k, s.Last, state.SeenEntryLen(k, s) + names[k]})
	}
	slices.SortFunc(all, func(a, b kl) int {
		if a.last != b.last {
			if a.last > b.last {
				return -1
			}
			return 1
		}
		return strings.Compare(a.k, b.k)
	})
	kept, bytes := 0, 0
	for kept < len(all) && kept < MaxSeen && bytes+all[kept].n <= MetaBytes {
		bytes += all[kept].n
		kept++
	}
	for _, x := range all[kept:] {
		delete(e.Seen, x.k)
	}
	if ns := e.Values[vNames]; len(ns) > 0 {
		out := ns[:0:0]
		for _, n := range ns {
			k, _, _ := strings.Cut(n, Sep)
			if _, ok := e.Seen[k]; ok {
				out = append(out, n)
			}
		}
		e.Values[vNames] = out
	}
}

package state

import (
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// MaxEntityBytes bounds one entity's JSON encoding (encoding/json of
// Entity, uncompressed). Every collection kept in one entity has a bound
// (a count and, where its members are strings from log records, a byte
// budget computed with JSONStringLen) chosen so that the entity at all its
// bounds, with worst-case strings, stays under it. It leaves room under
// Table Storage's entity limit of 1 MiB: the table store keeps at most
// 900 KiB of data per entity, and an incompressible entity of this size
// plus its format byte fits (see docs/architecture.md, "Bounds").
const MaxEntityBytes = 896 << 10

// JSONStringLen returns the length of s encoded as a JSON string by
// encoding/json, quotes included: plain printable ASCII costs a byte, a
// control character, an HTML-sensitive character (<, >, &) or an invalid
// UTF-8 byte up to six.
func JSONStringLen(s string) int {
	// What encoding/json's appendString writes, counted without encoding:
	// it runs on every value of a bounded collection at every update, so
	// it must not allocate.
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&':
				n++
			case c == '"', c == '\\', c == '\b', c == '\f', c == '\n', c == '\r', c == '\t':
				n += 2
			default:
				n += 6 // \u00XX
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6 // \ufffd, \u2028, \u2029
		default:
			n += size
		}
		i += size
	}
	return n
}

// SeenEntryLen is what one Seen entry, k: s, adds to an entity's encoding:
// `"k":{"f":s.First,"l":s.Last},`.
func SeenEntryLen(k string, s Span) int {
	return JSONStringLen(k) + len(`:{"f":,"l":},`) + digits(s.First) + digits(s.Last)
}

func digits(n int64) int {
	if n == 0 {
		return 1
	}
	d := 0
	if n < 0 {
		d, n = 1, -n // MinInt64 stays negative: 19 digits and the sign below
		if n < 0 {
			return 20
		}
	}
	for ; n > 0; n /= 10 {
		d++
	}
	return d
}

// EncodedSize returns the length of e's JSON encoding (tests, checks).
func EncodedSize(e *Entity) int {
	b, err := json.Marshal(e)
	if err != nil {
		return 0
	}
	return len(b)
}

// BoundSeen keeps at most maxN entries in seen whose Seen entries take at
// most maxBytes (by SeenEntryLen): past either bound it forgets the least
// recently seen first (smallest Last; ties: the greatest key first, so the
// choice does not depend on map order). It returns how many it forgot.
func BoundSeen(seen map[string]Span, maxN, maxBytes int) int {
	if len(seen) == 0 {
		return 0
	}
	size := 0
	if len(seen) <= maxN {
		// Most updates are far under the budget: an upper bound that needs
		// no look at the bytes (6 per byte at worst, 20 digits per number)
		// settles them.
		upper := 0
		for k := range seen {
			upper += 6*len(k) + 2 + len(`:{"f":,"l":},`) + 40
		}
		if upper <= maxBytes {
			return 0
		}
		for k, s := range seen {
			size += SeenEntryLen(k, s)
		}
		if size <= maxBytes {
			return 0
		}
	}
	type kl struct {
		k    string
		last int64
		n    int
	}
	all := make([]kl, 0, len(seen))
	for k, s := range seen {
		all = append(all, kl{k, s.Last, SeenEntryLen(k, s)})
	}
	// Newest first; keep a prefix.
	slices.SortFunc(all, func(a, b kl) int {
		switch {
		case a.last != b.last && a.last > b.last:
			return -1
		case a.last != b.last:
			return 1
		case a.k < b.k:
			return -1
		case a.k > b.k:
			return 1
		}
		return 0
	})
	kept, bytes := 0, 0
	for kept < len(all) && kept < maxN && bytes+all[kept].n <= maxBytes {
		bytes += all[kept].n
		kept++
	}
	for _, x := range all[kept:] {
		delete(seen, x.k)
	}
	return len(all) - kept
}

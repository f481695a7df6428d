// Package groupkey encodes a tuple of values (a rule's group_by values, a
// new_value rule's fields) as one string key, injectively whatever bytes
// the values hold: two different tuples of the same length never share a
// key, so two different (vault, caller) pairs never share a count.
//
// Values are joined by Sep (0x1f, the unit separator); a Sep or Esc
// (0x1e) byte inside a value is preceded by Esc. Values holding neither
// byte — every real one — are written as they are, so keys are what they
// were before escaping existed and cost no more to make. A tuple of one
// value is the value itself.
package groupkey

import "strings"

const (
	// Sep separates the values of a key.
	Sep = 0x1f
	// Esc precedes a Sep or Esc byte inside a value.
	Esc = 0x1e
)

// plain reports whether v holds no byte that must be escaped.
func plain(v string) bool {
	return strings.IndexByte(v, Sep) < 0 && strings.IndexByte(v, Esc) < 0
}

// AppendValue appends v to dst, escaped. Callers put Sep between values.
func AppendValue(dst []byte, v string) []byte {
	if plain(v) {
		return append(dst, v...)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == Sep || c == Esc {
			dst = append(dst, Esc)
		}
		dst = append(dst, v[i])
	}
	return dst
}

// Join returns the key of vals.
func Join(vals ...string) string {
	switch len(vals) {
	case 0:
		return ""
	case 1:
		return vals[0]
	}
	n := len(vals) - 1
	for _, v := range vals {
		n += len(v)
	}
	var buf [128]byte
	b := buf[:0]
	if n > len(buf) {
		b = make([]byte, 0, n+8)
	}
	for i, v := range vals {
		if i > 0 {
			b = append(b, Sep)
		}
		b = AppendValue(b, v)
	}
	return string(b)
}

// Split returns the n values of key (Join's inverse for n values). A key
// with fewer values gives empty ones for the rest; one with more (not
// made by Join) keeps the rest, unescaped, in the last.
func Split(key string, n int) []string {
	if n <= 1 {
		if n <= 0 {
			return nil
		}
		return []string{key}
	}
	out := make([]string, n)
	if strings.IndexByte(key, Esc) < 0 { // nothing escaped: cut at separators
		for i := 0; i < n-1; i++ {
			j := strings.IndexByte(key, Sep)
			if j < 0 {
				out[i] = key
				return out
			}
			out[i], key = key[:j], key[j+1:]
		}
		out[n-1] = key
		return out
	}
	var cur []byte
	f := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == Esc && i+1 < len(key):
			i++
			cur = append(cur, key[i])
		case c == Sep && f < n-1:
			out[f], cur, f = string(cur), cur[:0], f+1
		default:
			cur = append(cur, c)
		}
	}
	out[f] = string(cur)
	return out
}

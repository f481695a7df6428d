package state

import (
	"encoding/json"
	"slices"
	"strconv"
)

// JSONEncoder appends entities, deltas and keys as JSON, byte for byte as
// encoding/json.Marshal writes them (fields in order, empty ones omitted as
// their tags say, map keys sorted as encoding/json sorts them: by their
// string form), without reflection and without allocating beyond the
// output: the Table state journal encodes every change and, every few
// seconds, its whole view this way (FuzzJSONEncoder checks it against
// encoding/json). Strings other than ASCII are handed to encoding/json.
//
// A JSONEncoder holds scratch space for sorting map keys; the zero value
// is ready, and one must not be used by two goroutines at once.
type JSONEncoder struct {
	ints []int64
	strs []string
	num  []byte
}

// AppendKey appends k as encoding/json writes a Key.
func (x *JSONEncoder) AppendKey(b []byte, k Key) []byte {
	b = append(b, `{"Rule":`...)
	b = AppendJSONString(b, k.Rule)
	b = append(b, `,"Group":`...)
	b = AppendJSONString(b, k.Group)
	b = append(b, `,"Block":`...)
	b = strconv.AppendInt(b, k.Block, 10)
	return append(b, '}')
}

// AppendEntity appends e (null when nil).
func (x *JSONEncoder) AppendEntity(b []byte, e *Entity) []byte {
	if e == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	n := len(b)
	if len(e.Applied) > 0 {
		b = x.AppendStringInts(field(b, n, `"a":`), e.Applied)
	}
	if len(e.Counts) > 0 {
		b = x.appendIntInts(field(b, n, `"c":`), e.Counts)
	}
	if len(e.Counts2) > 0 {
		b = x.appendIntInts(field(b, n, `"c2":`), e.Counts2)
	}
	if len(e.Values) > 0 {
		b = appendIntMap(x, field(b, n, `"v":`), e.Values, appendStrings)
	}
	if len(e.Seen) > 0 {
		b = appendStringMap(x, field(b, n, `"s":`), e.Seen, func(b []byte, s Span) []byte { return appendSpan(b, s, false) })
	}
	if e.First != 0 {
		b = strconv.AppendInt(field(b, n, `"f":`), e.First, 10)
	}
	if len(e.Tally) > 0 {
		b = x.AppendStringInts(field(b, n, `"t":`), e.Tally)
	}
	return append(b, '}')
}

// AppendDelta appends d (null when nil).
func (x *JSONEncoder) AppendDelta(b []byte, d *Delta) []byte {
	if d == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	n := len(b)
	if len(d.Applied) > 0 {
		b = x.AppendStringInts(field(b, n, `"a":`), d.Applied)
	}
	if len(d.AppliedSet) > 0 {
		b = x.AppendStringInts(field(b, n, `"as":`), d.AppliedSet)
	}
	if len(d.AppliedGone) > 0 {
		b = appendStrings(field(b, n, `"ag":`), d.AppliedGone)
	}
	if len(d.Counts) > 0 {
		b = x.appendIntInts(field(b, n, `"c":`), d.Counts)
	}
	if len(d.CountsGone) > 0 {
		b = appendInts(field(b, n, `"cg":`), d.CountsGone)
	}
	if len(d.Counts2) > 0 {
		b = x.appendIntInts(field(b, n, `"c2":`), d.Counts2)
	}
	if len(d.Counts2Gone) > 0 {
		b = appendInts(field(b, n, `"c2g":`), d.Counts2Gone)
	}
	if len(d.Tally) > 0 {
		b = x.AppendStringInts(field(b, n, `"t":`), d.Tally)
	}
	if len(d.TallyGone) > 0 {
		b = appendStrings(field(b, n, `"tg":`), d.TallyGone)
	}
	if len(d.Values) > 0 {
		b = appendIntMap(x, field(b, n, `"v":`), d.Values, appendSlotDelta)
	}
	if len(d.Seen) > 0 {
		b = appendStringMap(x, field(b, n, `"s":`), d.Seen, func(b []byte, sd SpanDelta) []byte { return appendSpan(b, sd.Span, sd.Restart) })
	}
	if len(d.SeenGone) > 0 {
		b = appendStrings(field(b, n, `"sg":`), d.SeenGone)
	}
	if d.First != 0 {
		b = strconv.AppendInt(field(b, n, `"f":`), d.First, 10)
	}
	if d.FirstSet != nil {
		b = strconv.AppendInt(field(b, n, `"fs":`), *d.FirstSet, 10)
	}
	return append(b, '}')
}

func appendSlotDelta(b []byte, sd SlotDelta) []byte {
	b = append(b, '{')
	n := len(b)
	if len(sd.Added) > 0 {
		b = appendStrings(field(b, n, `"+":`), sd.Added)
	}
	if len(sd.Removed) > 0 {
		b = appendStrings(field(b, n, `"-":`), sd.Removed)
	}
	if sd.Sorted {
		b = append(field(b, n, `"o":`), "true"...)
	}
	if sd.Drop {
		b = append(field(b, n, `"x":`), "true"...)
	}
	if len(sd.Set) > 0 {
		b = appendStrings(field(b, n, `"=":`), sd.Set)
	}
	return append(b, '}')
}

// field appends a comma unless the object (whose first field would start
// at n) has none yet, then the field's name.
func field(b []byte, n int, name string) []byte {
	if len(b) > n {
		b = append(b, ',')
	}
	return append(b, name...)
}

func appendSpan(b []byte, s Span, restart bool) []byte {
	b = append(b, `{"f":`...)
	b = strconv.AppendInt(b, s.First, 10)
	b = append(b, `,"l":`...)
	b = strconv.AppendInt(b, s.Last, 10)
	if restart {
		b = append(b, `,"r":true`...)
	}
	return append(b, '}')
}

// appendStrings appends a []string: null when nil, as encoding/json.
func appendStrings(b []byte, vs []string) []byte {
	if vs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, v)
	}
	return append(b, ']')
}

func appendInts(b []byte, vs []int64) []byte {
	if vs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, v, 10)
	}
	return append(b, ']')
}

// AppendStringInts appends a map[string]int64 (null when nil).
func (x *JSONEncoder) AppendStringInts(b []byte, m map[string]int64) []byte {
	return appendStringMap(x, b, m, appendInt)
}

func (x *JSONEncoder) appendIntInts(b []byte, m map[int64]int64) []byte {
	return appendIntMap(x, b, m, appendInt)
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// appendStringMap appends m as encoding/json writes a map with string
// keys (sorted; null when nil), each value by val.
func appendStringMap[V any](x *JSONEncoder, b []byte, m map[string]V, val func([]byte, V) []byte) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, k := range sortedStrings(x, m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		b = val(b, m[k])
	}
	return append(b, '}')
}

// appendIntMap appends m as encoding/json writes a map with integer keys
// (quoted, in encoding/json's order; null when nil), each value by val.
func appendIntMap[V any](x *JSONEncoder, b []byte, m map[int64]V, val func([]byte, V) []byte) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, k := range sortedInts(x, m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = x.appendIntKey(b, k)
		b = val(b, m[k])
	}
	return append(b, '}')
}

// appendIntKey appends an integer map key and its colon: "123":.
func (x *JSONEncoder) appendIntKey(b []byte, k int64) []byte {
	b = append(b, '"')
	b = strconv.AppendInt(b, k, 10)
	return append(b, '"', ':')
}

// sortedStrings returns m's keys sorted, in scratch space the next call
// reuses.
func sortedStrings[V any](x *JSONEncoder, m map[string]V) []string {
	ks := x.strs[:0]
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	x.strs = ks[:0]
	return ks
}

// sortedInts returns m's keys in the order encoding/json writes them (by
// their decimal form as strings), in scratch space the next call reuses.
// That is numeric order when all are non-negative and as long (time
// buckets), which is checked before anything slower.
func sortedInts[V any](x *JSONEncoder, m map[int64]V) []int64 {
	ks := x.ints[:0]
	for k := range m {
		ks = append(ks, k)
	}
	x.ints = ks[:0]
	if len(ks) < 2 {
		return ks
	}
	slices.Sort(ks)
	if ks[0] < 0 || decimalWidth(ks[0]) != decimalWidth(ks[len(ks)-1]) {
		slices.SortFunc(ks, x.compareDecimal)
	}
	return ks
}

// decimalWidth is the number of characters of v in decimal.
func decimalWidth(v int64) int {
	n := 1
	if v < 0 {
		n++
		if v == -1<<63 {
			return 20
		}
		v = -v
	}
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

func (x *JSONEncoder) compareDecimal(a, b int64) int {
	x.num = strconv.AppendInt(x.num[:0], a, 10)
	n := len(x.num)
	x.num = strconv.AppendInt(x.num, b, 10)
	return compareBytes(x.num[:n], x.num[n:])
}

func compareBytes(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string exactly as encoding/json
// writes it (HTML characters escaped). ASCII is escaped here; a string with
// other bytes (UTF-8, or invalid UTF-8, which encoding/json replaces with
// U+FFFD) is handed to encoding/json.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			js, err := json.Marshal(s)
			if err != nil { // cannot happen for a string
				panic(err)
			}
			return append(b, js...)
		}
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

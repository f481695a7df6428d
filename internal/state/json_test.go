package state_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/kvwatch/kvwatch/internal/state"
)

// jsonSample builds an entity and a delta of every field and shape the
// JSON encoder handles (nil and empty maps and lists, nil value lists,
// negative and mixed-width keys, FirstSet 0) from a seed, with strings and
// keys from the fuzzer.
func jsonSample(r *rand.Rand, strs []string, ints []int64) (state.Key, *state.Entity, *state.Delta) {
	str := func() string { return strs[r.IntN(len(strs))] }
	num := func() int64 { return ints[r.IntN(len(ints))] }
	strList := func() []string {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		var vs []string
		for range r.IntN(4) + 1 {
			vs = append(vs, str())
		}
		return vs
	}
	intList := func() []int64 {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []int64{}
		}
		var vs []int64
		for range r.IntN(4) + 1 {
			vs = append(vs, num())
		}
		return vs
	}
	// Maps: nil, empty (omitted as nil is) or filled.
	strInts := func() map[string]int64 {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return map[string]int64{}
		}
		m := map[string]int64{}
		for range r.IntN(6) + 1 {
			m[str()] = num()
		}
		return m
	}
	intInts := func() map[int64]int64 {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return map[int64]int64{}
		}
		m := map[int64]int64{}
		for range r.IntN(6) + 1 {
			m[num()] = num()
		}
		return m
	}
	span := func() state.Span { return state.Span{First: num(), Last: num()} }
	e := &state.Entity{Applied: strInts(), Counts: intInts(), Counts2: intInts(), Tally: strInts()}
	if r.IntN(3) > 0 {
		e.Values = map[int64][]string{}
		for range r.IntN(4) {
			e.Values[num()] = strList()
		}
	}
	if r.IntN(3) > 0 {
		e.Seen = map[string]state.Span{}
		for range r.IntN(4) {
			e.Seen[str()] = span()
		}
	}
	if r.IntN(2) == 0 {
		e.First = num()
	}
	d := &state.Delta{Applied: strInts(), AppliedSet: strInts(), AppliedGone: strList(),
		Counts: intInts(), CountsGone: intList(), Counts2: intInts(), Counts2Gone: intList(),
		Tally: strInts(), TallyGone: strList(), SeenGone: strList()}
	if r.IntN(3) > 0 {
		d.Values = map[int64]state.SlotDelta{}
		for range r.IntN(4) {
			d.Values[num()] = state.SlotDelta{Added: strList(), Removed: strList(), Sorted: r.IntN(2) == 0,
				Drop: r.IntN(4) == 0, Set: strList()}
		}
	}
	if r.IntN(3) > 0 {
		d.Seen = map[string]state.SpanDelta{}
		for range r.IntN(4) {
			d.Seen[str()] = state.SpanDelta{Span: span(), Restart: r.IntN(2) == 0}
		}
	}
	if r.IntN(2) == 0 {
		d.First = num()
	}
	if r.IntN(2) == 0 {
		f := num()
		d.FirstSet = &f
	}
	return state.Key{Rule: str(), Group: str(), Block: num()}, e, d
}

func checkJSONEncoder(t *testing.T, seed uint64, a, b string, k1, k2 int64) {
	r := rand.New(rand.NewPCG(seed, uint64(k1)))
	strs := []string{a, b, a + b, "", "p:ns/hub/0", "kv1\x1fcaller-7", `q"\<>&`, "ü\u2028", "\xff"}
	ints := []int64{k1, k2, -k1, 0, 1, -1, 9, 10, 29923740, 29923741, -29923740, 1 << 62, -1 << 63}
	var x state.JSONEncoder
	for range 4 {
		k, e, d := jsonSample(r, strs, ints)
		for _, c := range []struct {
			what string
			v    any
			got  []byte
		}{
			{"key", k, x.AppendKey([]byte("["), k)[1:]},
			{"entity", e, x.AppendEntity(nil, e)},
			{"delta", d, x.AppendDelta(nil, d)},
			{"nil entity", (*state.Entity)(nil), x.AppendEntity(nil, nil)},
			{"nil delta", (*state.Delta)(nil), x.AppendDelta(nil, nil)},
		} {
			want, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(c.got) != string(want) {
				t.Fatalf("%s: JSONEncoder wrote\n%s\nencoding/json\n%s", c.what, c.got, want)
			}
		}
	}
}

// The JSON encoder writes entities, deltas and keys byte for byte as
// encoding/json does, whatever their strings (control characters, HTML
// characters, UTF-8, invalid UTF-8) and keys (widths, signs).
func TestJSONEncoder(t *testing.T) {
	for seed := range uint64(300) {
		checkJSONEncoder(t, seed, "a", "b\x00\n\t\"", int64(seed)-150, int64(seed)*1000)
	}
}

func FuzzJSONEncoder(f *testing.F) {
	f.Add(uint64(1), "a", "b", int64(3), int64(-12))
	f.Add(uint64(2), "kv\x1fc<&>", "\xe2\x80", int64(100), int64(99))
	f.Add(uint64(3), "\b\f\r\x7f", "ü\u2029", int64(-5), int64(-50))
	f.Fuzz(checkJSONEncoder)
}

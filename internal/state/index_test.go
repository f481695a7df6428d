package state

import (
	"math"
	"slices"
	"testing"
)

// A range is served from the index whatever its width, in block order.
func TestBlockIndexKeys(t *testing.T) {
	var x BlockIndex
	for _, b := range []int64{-1, 3, 5, 9} {
		x.Add(Key{Rule: "r", Group: "g", Block: b})
	}
	x.Add(Key{Rule: "r", Group: "h", Block: 5})
	x.Add(Key{Rule: "s", Group: "g", Block: 5})
	x.Remove(Key{Rule: "r", Group: "g", Block: 9})
	x.Remove(Key{Rule: "r", Group: "g", Block: 7}) // absent: nothing
	for _, c := range []struct {
		from, to int64
		want     []int64
	}{
		{3, 5, []int64{3, 5}},   // fewer blocks named than held: looked up
		{0, 100, []int64{3, 5}}, // more named: walked
		{-1, -1, []int64{-1}},   // a special block
		{6, 100, nil},           // none
		{5, 3, nil},             // an empty range
		{math.MinInt64, math.MaxInt64, []int64{-1, 3, 5}}, // the widest
	} {
		var got []int64
		x.Keys(Range{Rule: "r", Group: "g", From: c.from, To: c.to}, func(k Key) {
			if k.Rule != "r" || k.Group != "g" {
				t.Errorf("[%d,%d]: key %v of another group", c.from, c.to, k)
			}
			got = append(got, k.Block)
		})
		if !slices.Equal(got, c.want) {
			t.Errorf("[%d,%d]: blocks %v, want %v", c.from, c.to, got, c.want)
		}
	}
	x.Reset(map[Key]*Entity{{Rule: "r", Group: "g", Block: 1}: {}})
	n := 0
	x.Keys(Range{Rule: "r", Group: "g", From: math.MinInt64, To: math.MaxInt64}, func(Key) { n++ })
	x.Keys(Range{Rule: "r", Group: "h", From: math.MinInt64, To: math.MaxInt64}, func(Key) { n += 10 })
	if n != 1 {
		t.Errorf("after Reset, %d keys indexed (weighted), want the one", n)
	}
}

package state

import "slices"

// BlockIndex lists, per rule and group, the blocks that hold an entity,
// so that a store can serve a range of a group's blocks (RangeGetter) at
// the cost of the entities that exist. Its user keeps it in step with the
// entities it indexes; it is not safe for concurrent use.
type BlockIndex struct {
	m map[groupRef][]int64 // sorted
}

// groupRef names a rule's group.
type groupRef struct{ rule, group string }

// Add indexes k.
func (x *BlockIndex) Add(k Key) {
	if x.m == nil {
		x.m = map[groupRef][]int64{}
	}
	g := groupRef{k.Rule, k.Group}
	bs := x.m[g]
	i, found := slices.BinarySearch(bs, k.Block)
	if !found {
		x.m[g] = slices.Insert(bs, i, k.Block)
	}
}

// Remove forgets k.
func (x *BlockIndex) Remove(k Key) {
	g := groupRef{k.Rule, k.Group}
	bs := x.m[g]
	i, found := slices.BinarySearch(bs, k.Block)
	if !found {
		return
	}
	if len(bs) == 1 {
		delete(x.m, g)
		return
	}
	x.m[g] = slices.Delete(bs, i, i+1)
}

// Reset indexes the keys of m, and nothing else.
func (x *BlockIndex) Reset(m map[Key]*Entity) {
	x.m = make(map[groupRef][]int64, len(m)/4)
	for k := range m {
		g := groupRef{k.Rule, k.Group}
		x.m[g] = append(x.m[g], k.Block)
	}
	for _, bs := range x.m {
		slices.Sort(bs)
	}
}

// Keys calls fn with the indexed keys within r, in block order.
func (x *BlockIndex) Keys(r Range, fn func(Key)) {
	bs := x.m[groupRef{r.Rule, r.Group}]
	i, _ := slices.BinarySearch(bs, r.From)
	for ; i < len(bs) && bs[i] <= r.To; i++ {
		fn(Key{Rule: r.Rule, Group: r.Group, Block: bs[i]})
	}
}

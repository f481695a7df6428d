package state

// BlockIndex lists, per rule and group, the blocks that hold an entity,
// so that a store can serve a range of a group's blocks (RangeGetter) at
// the cost of the entities that exist. Its user keeps it in step with the
// entities it indexes; it is not safe for concurrent use.
type BlockIndex struct {
	m map[groupRef]map[int64]struct{}
}

// groupRef names a rule's group.
type groupRef struct{ rule, group string }

// Add indexes k.
func (x *BlockIndex) Add(k Key) {
	if x.m == nil {
		x.m = map[groupRef]map[int64]struct{}{}
	}
	g := groupRef{k.Rule, k.Group}
	bs := x.m[g]
	if bs == nil {
		bs = map[int64]struct{}{}
		x.m[g] = bs
	}
	bs[k.Block] = struct{}{}
}

// Remove forgets k.
func (x *BlockIndex) Remove(k Key) {
	g := groupRef{k.Rule, k.Group}
	if bs := x.m[g]; bs != nil {
		delete(bs, k.Block)
		if len(bs) == 0 {
			delete(x.m, g)
		}
	}
}

// Reset indexes the keys of m, and nothing else.
func (x *BlockIndex) Reset(m map[Key]*Entity) {
	x.m = make(map[groupRef]map[int64]struct{}, len(m)/4)
	for k := range m {
		x.Add(k)
	}
}

// Keys calls fn with the indexed keys within r, in no particular order:
// the group's blocks are walked when they are fewer than r names, else
// r's blocks are looked up.
func (x *BlockIndex) Keys(r Range, fn func(Key)) {
	bs := x.m[groupRef{r.Rule, r.Group}]
	if len(bs) == 0 || r.To < r.From {
		return
	}
	// (uint64: r.To-r.From overflows int64 for the widest ranges.)
	if uint64(len(bs))-1 <= uint64(r.To)-uint64(r.From) {
		for b := range bs {
			if b >= r.From && b <= r.To {
				fn(Key{Rule: r.Rule, Group: r.Group, Block: b})
			}
		}
		return
	}
	for b := r.From; b <= r.To; b++ {
		if _, ok := bs[b]; ok {
			fn(Key{Rule: r.Rule, Group: r.Group, Block: b})
		}
	}
}

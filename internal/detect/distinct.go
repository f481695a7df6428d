package detect

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
)

// A distinct window counts the values of its buckets. Evaluated batch by
// batch, the first window of a group fills a set from every bucket it
// covers: for a day-long window of 96 buckets of about 30 names each (a
// caller reading its secrets all day), some 3,000 map operations per
// group and batch, whatever the batch brought. That cost grows with the
// event time a group has been active, up to a day: the default pack on a
// tenant's traffic cost 27 µs a record over 42 minutes of it and 35 over 2
// hours, the distinct windows the most of the growth.
//
// A distinctIndex keeps, across batches, for one group of a distinct rule
// with a long window, each value's latest bucket, and per bucket how many
// values have it as their latest. Values in a window block are only ever
// added (detect's addValue, the journal's merges), so a block holding as
// many values as when it was indexed holds the same ones: a batch re-reads
// only the blocks whose size changed (those it or another instance wrote),
// and the distinct count of a window [st, end] that reaches past every
// indexed bucket is the number of values whose latest bucket is st or
// later — a suffix sum over the buckets, not a set. A window that ends
// before the newest indexed bucket (a late record's), or a group whose
// blocks are not all those indexed (one pruned), is counted the old way.

// indexMinBuckets: windows of fewer buckets are counted the old way (a
// 15-minute window fills 15 buckets of a value or two).
const indexMinBuckets = 32

// maxIndexed bounds the values the indexes hold, all groups together
// (about 60 bytes each): past it every index is dropped and rebuilt as its
// group is next evaluated.
const maxIndexed = 300_000

type distinctIndex struct {
	sizes map[int64]int    // block → the values it held when indexed
	last  map[string]int64 // value → the latest bucket holding it
	cnt   map[int64]int32  // bucket → values whose latest bucket it is
	maxB  int64            // the latest bucket indexed
	built bool
}

// distinctIndexes are the engine's indexes, by rule and group.
type distinctIndexes struct {
	mu      sync.Mutex
	m       map[gkey]*distinctIndex
	indexed int
	off     bool         // tests: every window counted the old way (no index, no scanSuffix)
	answers atomic.Int64 // window counts the indexes and scanSuffix gave (tests)
}

// suffix returns, for the buckets lo to hi of w's group (in units of the
// rule's bucket, bs seconds), the index's counts of values whose latest
// bucket is at or after each, in sc's buffer, and the latest bucket
// indexed; ok is false when the index cannot answer (the caller counts
// the old way). blocks are every block of the group in the range that
// exists, in order (series found them).
func (en *Engine) suffix(w *groupWork, blocks []block, lo, hi, bs int64, sc *scratch) (suf []int64, maxB int64, ok bool) {
	di := &en.distinct
	if di.off {
		return nil, 0, false
	}
	di.mu.Lock()
	defer di.mu.Unlock()
	if di.m == nil {
		di.m = map[gkey]*distinctIndex{}
	}
	k := gkey{w.ri, w.group}
	x := di.m[k]
	if x == nil {
		x = &distinctIndex{}
		di.m[k] = x
	}
	b0, b1 := floorDiv(lo*bs, blockSec), floorDiv(hi*bs, blockSec)
	// A block indexed in the range that is gone (pruned) leaves values
	// whose latest bucket the index cannot tell: rebuild.
	// Blocks before the range are forgotten: values only move their latest
	// bucket forward, so one that comes back into range (a late record's
	// window) is read again at no harm.
	if x.built {
		for blk := range x.sizes {
			if blk < b0 {
				delete(x.sizes, blk)
				continue
			}
			_, found := slices.BinarySearchFunc(blocks, blk, func(b block, t int64) int { return cmp.Compare(b.b, t) })
			if blk <= b1 && !found {
				di.indexed -= len(x.last)
				*x = distinctIndex{}
				break
			}
		}
	}
	if !x.built {
		x.sizes, x.last, x.cnt, x.maxB, x.built = map[int64]int{}, map[string]int64{}, map[int64]int32{}, lo-1, true
	}
	before := len(x.last)
	for _, bl := range blocks {
		blk, e := bl.b, bl.e
		size := 0
		for _, vs := range e.Values {
			size += len(vs)
		}
		if had, ok := x.sizes[blk]; ok && had == size {
			continue
		}
		x.sizes[blk] = size
		for fb, vs := range e.Values {
			b := en.ruleBucketOf(fb, bs)
			for _, v := range vs {
				old, seen := x.last[v]
				switch {
				case !seen:
					x.last[v] = b
					x.cnt[b]++
				case b > old:
					x.last[v] = b
					if x.cnt[old]--; x.cnt[old] == 0 {
						delete(x.cnt, old)
					}
					x.cnt[b]++
				default:
					continue
				}
				x.maxB = max(x.maxB, b)
			}
		}
	}
	di.indexed += len(x.last) - before
	if di.indexed > maxIndexed {
		di.m, di.indexed = map[gkey]*distinctIndex{k: x}, len(x.last)
	}
	suf = zeroed(sc.suffix, int(hi-lo+2))
	sc.suffix = suf
	for b, c := range x.cnt {
		if b >= lo && b <= hi {
			suf[b-lo] += int64(c)
		}
	}
	for i := len(suf) - 2; i >= 0; i-- {
		suf[i] += suf[i+1]
	}
	return suf, x.maxB, true
}

package tablestore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/kvwatch/kvwatch/internal/state"
)

// storeContract checks what detect relies on from any state.Store. It
// runs against state.Memory (the reference) and the Table store alike.
// countOnce counts one event in bucket of every entity, once per input
// position (stream, pos).
func countOnce(stream string, pos int64, bucket int64) state.ApplyFunc {
	return func(k state.Key, e *state.Entity) bool {
		if e.Absorbed(stream, pos) {
			return false
		}
		if e.Counts == nil {
			e.Counts = map[int64]int64{}
		}
		e.Counts[bucket]++
		e.MarkApplied(stream, pos)
		return true
	}
}

func storeContract(t *testing.T, newStore func(t *testing.T) state.Store) {
	ctx := context.Background()
	k1 := state.Key{Rule: "r1", Group: "g\x1fa", Block: 490000}
	k2 := state.Key{Rule: "r1", Group: "g\x1fa", Block: 490001}
	meta := state.Key{Rule: "r1", Group: "g\x1fa", Block: state.BlockMeta}
	rule := state.Key{Rule: "r1", Group: "", Block: -2}
	other := state.Key{Rule: "r2", Group: "it's/odd#?", Block: 7}

	// add applies one count per (stream, position) exactly once.
	add := countOnce

	t.Run("update creates, returns what it wrote, get reads it", func(t *testing.T) {
		s := newStore(t)
		keys := []state.Key{k1, k2, meta, rule, other, k1} // k1 twice: applied once
		got, err := s.Update(ctx, keys, add("p:0", 5, 1))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 5 {
			t.Fatalf("Update returned %d entities, want 5", len(got))
		}
		for _, k := range keys {
			if e := got[k]; e == nil || e.Counts[1] != 1 || e.Applied["p:0"] != 5 {
				t.Fatalf("Update returned %v for %v", canon(e), k)
			}
		}
		read, err := s.Get(ctx, append(keys, state.Key{Rule: "r1", Group: "g\x1fa", Block: 3}))
		if err != nil {
			t.Fatal(err)
		}
		if len(read) != 5 {
			t.Fatalf("Get returned %d entities, want 5 (absent keys left out)", len(read))
		}
		for _, k := range keys {
			if canon(read[k]) != canon(got[k]) {
				t.Fatalf("Get %v = %s, Update returned %s", k, canon(read[k]), canon(got[k]))
			}
		}
	})

	t.Run("the same input applied again changes nothing", func(t *testing.T) {
		s := newStore(t)
		for range 3 {
			if _, err := s.Update(ctx, []state.Key{k1, k2}, add("p:0", 5, 1)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Update(ctx, []state.Key{k1}, add("p:0", 6, 1)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, []state.Key{k1, k2})
		if err != nil {
			t.Fatal(err)
		}
		if got[k1].Counts[1] != 2 || got[k2].Counts[1] != 1 {
			t.Fatalf("counts %s %s, want 2 and 1", canon(got[k1]), canon(got[k2]))
		}
	})

	t.Run("unchanged missing entity is returned empty and not stored", func(t *testing.T) {
		s := newStore(t)
		got, err := s.Update(ctx, []state.Key{k1}, func(state.Key, *state.Entity) bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := got[k1]; !ok || canon(e) != canon(&state.Entity{}) {
			t.Fatalf("Update returned %v, want an empty entity", canon(got[k1]))
		}
		read, err := s.Get(ctx, []state.Key{k1})
		if err != nil {
			t.Fatal(err)
		}
		if len(read) != 0 {
			t.Fatalf("an unchanged entity was stored: %v", canon(read[k1]))
		}
	})

	t.Run("every field round-trips", func(t *testing.T) {
		s := newStore(t)
		want := &state.Entity{
			Applied: map[string]int64{"p:0": 9, "f:blob/PT1H.json": 3},
			Counts:  map[int64]int64{-3: 1, 29400000: 7},
			Counts2: map[int64]int64{29400001: 2},
			Values:  map[int64][]string{29400000: {"a", "b\x1fc", "ü"}},
			Seen:    map[string]state.Span{"10.0.0.1": {First: 100, Last: 200}},
			First:   1764000000,
		}
		if _, err := s.Update(ctx, []state.Key{meta}, func(_ state.Key, e *state.Entity) bool {
			*e = *want.Clone()
			return true
		}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, []state.Key{meta})
		if err != nil {
			t.Fatal(err)
		}
		if canon(got[meta]) != canon(want) {
			t.Fatalf("read back %s, want %s", canon(got[meta]), canon(want))
		}
	})

	t.Run("fn sees fresh state and a copy", func(t *testing.T) {
		s := newStore(t)
		first, err := s.Update(ctx, []state.Key{k1}, add("p:0", 1, 1))
		if err != nil {
			t.Fatal(err)
		}
		before := canon(first[k1])
		if _, err := s.Update(ctx, []state.Key{k1}, func(_ state.Key, e *state.Entity) bool {
			if e.Counts[1] != 1 {
				t.Errorf("fn saw %s, want the stored entity", canon(e))
			}
			e.Counts[1] = 100 // must not show in what the first Update returned
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if canon(first[k1]) != before {
			t.Fatalf("a later Update changed an entity returned before: %s", canon(first[k1]))
		}
	})

	t.Run("concurrent updates lose nothing", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					if _, err := s.Update(ctx, []state.Key{k1, meta}, add(fmt.Sprintf("p:%d", w), int64(i), 1)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, []state.Key{k1, meta})
		if err != nil {
			t.Fatal(err)
		}
		if got[k1].Counts[1] != 40 || got[meta].Counts[1] != 40 {
			t.Fatalf("counts %s / %s, want 40", canon(got[k1]), canon(got[meta]))
		}
	})

	t.Run("findings are added once", func(t *testing.T) {
		s := newStore(t)
		id := "0123456789abcdef01234567"
		for i, want := range []bool{true, false, false} {
			added, err := s.AddFinding(ctx, id, []byte(fmt.Sprintf(`{"try":%d}`, i)))
			if err != nil {
				t.Fatal(err)
			}
			if added != want {
				t.Fatalf("try %d: added %v, want %v", i, added, want)
			}
		}
		if added, err := s.AddFinding(ctx, "ff23456789abcdef01234567", []byte(`{}`)); err != nil || !added {
			t.Fatalf("another ID: added %v, %v", added, err)
		}
	})

	t.Run("prune deletes what drop selects", func(t *testing.T) {
		s := newStore(t)
		var keys []state.Key
		for _, g := range []string{"a", "b"} {
			for _, b := range []int64{-2, -1, 10, 20, 30} {
				keys = append(keys, state.Key{Rule: "r", Group: g, Block: b})
			}
		}
		if _, err := s.Update(ctx, keys, add("p:0", 1, 1)); err != nil {
			t.Fatal(err)
		}
		var offered []state.Key
		var mu sync.Mutex
		n, err := s.Prune(ctx, func(k state.Key) bool {
			mu.Lock()
			offered = append(offered, k)
			mu.Unlock()
			return k.Block >= 0 && k.Block < 25
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != 4 {
			t.Fatalf("pruned %d, want 4", n)
		}
		got, err := s.Get(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		var left []int64
		for _, k := range keys {
			if got[k] != nil {
				left = append(left, k.Block)
			}
		}
		if want := []int64{-2, -1, 30, -2, -1, 30}; !slices.Equal(left, want) {
			t.Fatalf("blocks left %v, want %v", left, want)
		}
		for _, k := range offered {
			if k.Group != "a" && k.Group != "b" || k.Rule != "r" {
				t.Fatalf("drop was offered %v", k)
			}
		}
		if n, err := s.Prune(ctx, func(k state.Key) bool { return k.Block >= 0 && k.Block < 25 }); err != nil || n != 0 {
			t.Fatalf("second prune: %d, %v", n, err)
		}
	})
}

func TestMemoryContract(t *testing.T) {
	storeContract(t, func(*testing.T) state.Store { return state.NewMemory() })
}

func TestTableContract(t *testing.T) {
	storeContract(t, func(t *testing.T) state.Store { return newStore(t, testPrefix(), Options{}) })
}

func TestTableContractNoCache(t *testing.T) {
	storeContract(t, func(t *testing.T) state.Store { return newStore(t, testPrefix(), Options{CacheEntries: -1}) })
}

// Two instances (two stores, two caches) on the same tables pass the
// contract's cross-instance parts: one's cached ETags go stale.
func TestTableContractTwoInstances(t *testing.T) {
	storeContract(t, func(t *testing.T) state.Store {
		p := testPrefix()
		a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
		return &alternating{stores: []state.Store{a, b}}
	})
}

// alternating sends each call to the next of its stores.
type alternating struct {
	mu     sync.Mutex
	n      int
	stores []state.Store
}

func (a *alternating) next() state.Store {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	return a.stores[a.n%len(a.stores)]
}

func (a *alternating) Update(ctx context.Context, keys []state.Key, fn state.ApplyFunc) (map[state.Key]*state.Entity, error) {
	return a.next().Update(ctx, keys, fn)
}
func (a *alternating) Get(ctx context.Context, keys []state.Key) (map[state.Key]*state.Entity, error) {
	return a.next().Get(ctx, keys)
}
func (a *alternating) AddFinding(ctx context.Context, id string, body []byte) (bool, error) {
	return a.next().AddFinding(ctx, id, body)
}
func (a *alternating) Prune(ctx context.Context, drop func(state.Key) bool) (int, error) {
	return a.next().Prune(ctx, drop)
}

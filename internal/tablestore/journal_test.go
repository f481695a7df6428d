package tablestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// newJournal returns a journal on fresh tables (prefix "": deleted when
// the test ends), or another instance on prefix's tables.
func newJournal(t testing.TB, prefix string, opts JournalOptions) (*Journal, string) {
	t.Helper()
	var s *Store
	if prefix == "" {
		prefix = testPrefix()
		s = newStore(t, prefix, Options{})
		t.Cleanup(func() { serviceClient(t).DeleteTable(context.Background(), prefix+JournalTable, nil) })
	} else {
		var err error
		if s, err = New(context.Background(), serviceClient(t), Options{Prefix: prefix, RetryBudget: 20 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	if opts.Direct == nil {
		opts.Direct = func(k state.Key) bool { return k.Rule == "_claim" }
	}
	j, err := s.Journal(context.Background(), serviceClient(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Wait)
	return j, prefix
}

// caughtUp folds every log into j's view.
func caughtUp(t *testing.T, j *Journal) *Journal {
	t.Helper()
	j.mu.Lock()
	j.listed = time.Time{} // the registry read again
	j.mu.Unlock()
	if err := j.withView(context.Background(), func() error { return j.catchUp(context.Background(), "") }); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJournalContract(t *testing.T) {
	storeContract(t, func(t *testing.T) state.Store { j, _ := newJournal(t, "", JournalOptions{}); return j })
}

// Two instances on the same tables, each call to the next: what one wrote
// the other reads (Fresh < 0: Get always reads the logs).
func TestJournalContractTwoInstances(t *testing.T) {
	storeContract(t, func(t *testing.T) state.Store {
		a, p := newJournal(t, "", JournalOptions{Fresh: -1, Registry: -1})
		b, _ := newJournal(t, p, JournalOptions{Fresh: -1, Registry: -1})
		return &alternating{stores: []state.Store{a, b}}
	})
}

// sameView fails unless the journal's view holds exactly the memory
// store's entities.
func sameView(t *testing.T, j *Journal, mem *state.Memory) {
	t.Helper()
	j.mu.Lock()
	got := make(map[state.Key]*state.Entity, len(j.view))
	for k, e := range j.view {
		got[k] = e
	}
	// The view's block index (GetRanges) names exactly the view's keys.
	indexed := 0
	groups := map[[2]string]bool{}
	for k := range j.view {
		groups[[2]string{k.Rule, k.Group}] = true
	}
	for g := range groups {
		j.index.Keys(state.Range{Rule: g[0], Group: g[1], From: math.MinInt64, To: math.MaxInt64}, func(k state.Key) {
			indexed++
			if _, ok := j.view[k]; !ok {
				t.Errorf("the view's index names %v, which the view does not hold", k)
			}
		})
	}
	if indexed != len(j.view) {
		t.Errorf("the view's index names %d of its %d entities", indexed, len(j.view))
	}
	j.mu.Unlock()
	// Marks of what was handed on (detect/marks.go) are kept only in a
	// store that defers updates: the memory store has none to compare.
	maps.DeleteFunc(got, func(k state.Key, _ *state.Entity) bool { return detect.IsMark(k) })
	keys := make([]state.Key, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	want, _ := mem.Get(context.Background(), keys)
	if len(got) != mem.Len() {
		t.Errorf("journal view holds %d entities (besides marks), memory %d", len(got), mem.Len())
	}
	n := 0
	for k, e := range got {
		if canon(e) != canon(want[k]) {
			if n++; n < 5 {
				t.Errorf("%v: journal %s\n memory %s", k, canon(e), canon(want[k]))
			}
		}
	}
}

// restored returns a fresh instance's view of prefix's journal.
func restored(t *testing.T, prefix string) *Journal {
	t.Helper()
	j, _ := newJournal(t, prefix, JournalOptions{})
	if err := j.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	return j
}

// Fed the same batches, delivered again whole and cut differently, the
// journal ends with exactly the memory store's state and findings, and so
// does a fresh instance restoring it from the logs, and from a snapshot.
func TestJournalRedeliveryExactlyOnce(t *testing.T) {
	evs := events(1, "0", 1200, t0, 50*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	for _, b := range batches(evs, 100) {
		ref.mustFeed(t, b)
	}
	if len(ref.found) < 3 {
		t.Fatalf("the scenario should raise findings, got %v", ref.ids())
	}
	j, prefix := newJournal(t, "", JournalOptions{CompactEntries: 1 << 30, CompactBytes: 1 << 30})
	h := newHarness(t, j)
	for i, b := range batches(evs, 100) {
		h.mustFeed(t, b)
		h.mustFeed(t, b) // redelivered whole
		if i > 0 {
			h.mustFeed(t, evs[i*100-50:i*100+50]) // a cut straddling two batches
		}
	}
	h.mustFeed(t, evs) // everything again, in one batch
	sameView(t, j, mem)
	sameFindings(t, j.s, mem)
	if got, want := h.ids(), ref.ids(); !slices.Equal(got, want) {
		t.Fatalf("findings %v\nwant %v", got, want)
	}
	t.Run("restored from the logs", func(t *testing.T) { sameView(t, restored(t, prefix), mem) })
	if ok, err := j.Compact(context.Background()); err != nil || !ok {
		t.Fatalf("compact: %v, %v", ok, err)
	}
	t.Run("restored from a snapshot", func(t *testing.T) { sameView(t, restored(t, prefix), mem) })
	// A later snapshot deletes the log entries the first one covers; a
	// restore still gives the same state, and so does an instance that
	// had read only part of the logs before (it sees the gap).
	stale := restored(t, prefix)
	more := events(11, "0", 300, t0.Add(50*time.Minute), 5*time.Minute)
	for i := range more {
		more[i].Source.Sequence += 10_000
	}
	for _, b := range batches(more, 100) {
		ref.mustFeed(t, b)
		h.mustFeed(t, b)
	}
	j.opts.CompactEvery = time.Nanosecond
	if ok, err := j.Compact(context.Background()); err != nil || !ok {
		t.Fatalf("second compact: %v, %v", ok, err)
	}
	sameView(t, restored(t, prefix), mem)
	sameView(t, caughtUp(t, stale), mem)
}

// A batch whose log write fails (an error, a cancelled context) and is
// delivered again ends exactly as if it had gone through once.
func TestJournalFailedWriteRetried(t *testing.T) {
	evs := events(2, "0", 600, t0, 40*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	ref.withStats = stats.New(mem)
	for _, b := range batches(evs, 200) {
		ref.mustFeed(t, b)
	}
	for _, how := range []string{"error", "cancel"} {
		t.Run(how, func(t *testing.T) {
			j, _ := newJournal(t, "", JournalOptions{})
			h := newHarness(t, j)
			// The statistics ride with the detection state's write: the
			// failure fails both, and the batch delivered again counts
			// both once.
			h.withStats = stats.New(j)
			for i, b := range batches(evs, 200) {
				ctx, cancel := context.WithCancel(context.Background())
				j.s.testBeforeTx = func(int) error {
					if how == "cancel" {
						cancel()
						return nil
					}
					return errors.New("injected failure")
				}
				err := h.feed(ctx, b)
				cancel()
				j.s.testBeforeTx = nil
				if err == nil {
					t.Fatalf("batch %d: the injected failure did not fail the batch", i)
				}
				h.mustFeed(t, b) // the host delivers it again
			}
			sameView(t, j, mem)
			if got, want := h.ids(), ref.ids(); !slices.Equal(got, want) {
				t.Fatalf("findings %v\nwant %v", got, want)
			}
		})
	}
}

// Two instances consume two partitions whose events hit the same groups,
// concurrently: each ends with every event counted exactly once (its view
// folds the other's log), and a fresh instance restores the same.
func TestJournalTwoInstancesConcurrent(t *testing.T) {
	p0 := events(3, "0", 1000, t0, 45*time.Minute)
	p1 := events(4, "1", 1000, t0, 45*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	for _, b := range batches(p0, 50) {
		ref.mustFeed(t, b)
	}
	for _, b := range batches(p1, 50) {
		ref.mustFeed(t, b)
	}
	a, prefix := newJournal(t, "", JournalOptions{CompactEntries: 20, CompactEvery: time.Millisecond})
	b, _ := newJournal(t, prefix, JournalOptions{CompactEntries: 20, CompactEvery: time.Millisecond})
	ha, hb := newHarness(t, a), newHarness(t, b)
	feedConcurrently(t, feed{ha, batches(p0, 50)}, feed{hb, batches(p1, 50)})
	a.Wait()
	b.Wait()
	caughtUp(t, a)
	caughtUp(t, b)
	// Pruning is each instance's own: compare before any (45 minutes).
	t.Run("instance A", func(t *testing.T) { sameView(t, a, mem) })
	t.Run("instance B", func(t *testing.T) { sameView(t, b, mem) })
	t.Run("restored", func(t *testing.T) { sameView(t, restored(t, prefix), mem) })
	all := slices.Compact(slices.Sorted(slices.Values(append(ha.ids(), hb.ids()...))))
	t.Logf("findings: %d raised by the two instances, %d by one sequential run", len(all), len(ref.ids()))
}

// The same partition served by two instances at once (a rebalance): both
// apply the same batches; every event is counted once.
func TestJournalSameStreamTwoWriters(t *testing.T) {
	evs := events(7, "0", 800, t0, 30*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	for _, b := range batches(evs, 100) {
		ref.mustFeed(t, b)
	}
	a, prefix := newJournal(t, "", JournalOptions{})
	b, _ := newJournal(t, prefix, JournalOptions{})
	ha, hb := newHarness(t, a), newHarness(t, b)
	feedConcurrently(t, feed{ha, batches(evs, 100)}, feed{hb, batches(evs, 100)})
	sameView(t, restored(t, prefix), mem)
	if a.s.Stats().Conflicts+b.s.Stats().Conflicts == 0 {
		t.Log("no conflict happened: the two writers did not overlap in this run")
	}
}

// Over several hours (so the engine prunes as it goes), the journal's
// view ends where the memory store does; a snapshot taken then restores it.
func TestJournalMatchesMemoryWithPruning(t *testing.T) {
	evs := events(6, "0", 3000, t0, 6*time.Hour)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	j, prefix := newJournal(t, "", JournalOptions{})
	h := newHarness(t, j)
	for _, b := range batches(evs, 150) {
		ref.mustFeed(t, b)
		h.mustFeed(t, b)
	}
	sameView(t, j, mem)
	sameFindings(t, j.s, mem)
	if got, want := h.ids(), ref.ids(); !slices.Equal(got, want) {
		t.Fatalf("findings %v\nwant %v", got, want)
	}
	j.Wait()
	j.opts.CompactEvery = time.Nanosecond
	if _, err := j.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	sameView(t, restored(t, prefix), mem)
}

// Azurite stops mid-run: the batch fails promptly; once it is back the
// batch delivered again, and the rest, give exactly the uninterrupted state.
func TestJournalStorageOutage(t *testing.T) {
	if azuritetest.External() {
		t.Skip("uses an external Table endpoint (" + azuritetest.EnvConnectionString + "), which the test cannot stop")
	}
	evs := events(5, "0", 600, t0, 40*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	for _, b := range batches(evs, 100) {
		ref.mustFeed(t, b)
	}
	j, _ := newJournal(t, "", JournalOptions{})
	h := newHarness(t, j)
	bs := batches(evs, 100)
	for _, b := range bs[:3] {
		h.mustFeed(t, b)
	}
	azuritetest.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	start := time.Now()
	err := h.feed(ctx, bs[3])
	cancel()
	took := time.Since(start)
	azuritetest.Start(t)
	if err == nil {
		t.Fatal("a batch went through with the storage down")
	}
	if took > 5*time.Second {
		t.Errorf("the failing batch took %v with a 2s deadline", took)
	}
	for _, b := range bs[3:] {
		h.mustFeed(t, b)
	}
	sameView(t, j, mem)
	sameFindings(t, j.s, mem)
}

// A partition moves: one instance has served it alone, then both serve
// it at once from an earlier position (the new owner starting where the
// last checkpoint was): every event is counted once.
func TestJournalPartitionMove(t *testing.T) {
	evs := events(8, "0", 2000, t0, 40*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	ref.withStats = stats.New(mem)
	for _, b := range batches(evs, 30) {
		ref.mustFeed(t, b)
	}
	a, prefix := newJournal(t, "", JournalOptions{})
	b, _ := newJournal(t, prefix, JournalOptions{})
	ha, hb := newHarness(t, a), newHarness(t, b)
	ha.withStats, hb.withStats = stats.New(a), stats.New(b)
	// b restores (empty) before a writes: its view is behind from then on.
	if _, err := b.Get(context.Background(), []state.Key{{Rule: "burst"}}); err != nil {
		t.Fatal(err)
	}
	bs := batches(evs, 30)
	for _, bt := range bs[:20] {
		ha.mustFeed(t, bt)
	}
	rest := batches(evs[20*30-120:], 100)
	feedConcurrently(t, feed{ha, rest[:5]}, feed{hb, rest[:5]})
	for _, bt := range rest[5:] {
		hb.mustFeed(t, bt)
	}
	sameView(t, caughtUp(t, b), mem)
	sameView(t, caughtUp(t, a), mem)
	sameView(t, restored(t, prefix), mem)
	all := slices.Compact(slices.Sorted(slices.Values(append(ha.ids(), hb.ids()...))))
	if want := ref.ids(); !slices.Equal(all, want) {
		t.Errorf("findings %v\nwant %v", all, want)
	}
}

// largeSnapshot writes a view larger than one row and compacts it: a
// snapshot of several rows, more than a restore reads ahead. It returns
// the journal, its prefix, the snapshot's head and the same view in
// memory state.
func largeSnapshot(t *testing.T) (*Journal, string, *snapshotHead, *state.Memory) {
	t.Helper()
	// Only the compaction below: none started by the updates' size.
	j, prefix := newJournal(t, "", JournalOptions{CompactEntries: 1 << 30, CompactBytes: 1 << 30})
	r := rand.New(rand.NewPCG(9, 9))
	mem := state.NewMemory()
	for b := range 6 {
		var keys []state.Key
		for i := range 400 {
			keys = append(keys, state.Key{Rule: "r", Group: fmt.Sprintf("g%d-%d", b, i), Block: 1})
		}
		fn := func(k state.Key, e *state.Entity) bool {
			e.Values = map[int64][]string{}
			for v := range 40 {
				e.Values[int64(v)] = []string{fmt.Sprintf("%x", r.Uint64()), fmt.Sprintf("%x", r.Uint64())}
			}
			return true
		}
		got, err := j.Update(state.WithStream(context.Background(), "p:0"), keys, fn)
		if err != nil {
			t.Fatal(err)
		}
		mem.Update(context.Background(), keys, func(k state.Key, e *state.Entity) bool { *e = *got[k].Clone(); return true })
	}
	if ok, err := j.Compact(context.Background()); err != nil || !ok {
		t.Fatalf("compact: %v %v", ok, err)
	}
	h, err := j.readHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.rows <= snapshotReadAhead {
		t.Fatalf("snapshot of %d rows; the test wants more than a restore reads ahead", h.rows)
	}
	return j, prefix, h, mem
}

// A view larger than one row makes a snapshot of several rows, in several
// transactions, that a fresh instance restores whole.
func TestJournalLargeSnapshot(t *testing.T) {
	_, prefix, _, mem := largeSnapshot(t)
	sameView(t, restored(t, prefix), mem)
}

// A snapshot's rows are read ahead of their decoding: a row that is gone
// or not a snapshot's fails the restore with what is wrong, and what is
// still being read does not hold it up.
func TestJournalSnapshotRowsBroken(t *testing.T) {
	ctx := context.Background()
	t.Run("a row gone", func(t *testing.T) {
		j, prefix, h, _ := largeSnapshot(t)
		if _, err := j.table.DeleteEntity(ctx, h.pk, snapshotRK(h.rows-1), nil); err != nil {
			t.Fatal(err)
		}
		r, _ := newJournal(t, prefix, JournalOptions{})
		err := r.Restore(ctx)
		if !errors.Is(err, errSnapshotMoved) {
			t.Fatalf("restore: %v, want the snapshot taken for replaced", err)
		}
	})
	t.Run("a row garbled", func(t *testing.T) {
		j, prefix, h, _ := largeSnapshot(t)
		props := map[string]any{}
		// Short: handed to the decoder at once, which fails on it while
		// the next row is still being read.
		if err := putChunks(props, bytes.Repeat([]byte{0xff}, 3)); err != nil {
			t.Fatal(err)
		}
		body, err := marshalEDM(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: h.pk, RowKey: snapshotRK(1)}, Properties: props})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.table.UpsertEntity(ctx, body, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace}); err != nil {
			t.Fatal(err)
		}
		r, _ := newJournal(t, prefix, JournalOptions{})
		// Row 2's read hangs (a slow answer): the restore, failing on row
		// 1, must not wait for it.
		r.testSnapshotRow = func(ctx context.Context, i int) {
			if i != 2 {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Errorf("the read of row %d went on after the snapshot failed to decode", i)
			}
		}
		start := time.Now()
		err = r.Restore(ctx)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("restore took %v: it waited for a read it did not need", d)
		}
		if err == nil || errors.Is(err, errSnapshotMoved) || errors.Is(err, context.Canceled) {
			t.Fatalf("restore: %v, want the snapshot's decoding error", err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("read snapshot %d", h.gen)) {
			t.Errorf("restore: %v, want it to name the snapshot", err)
		}
	})
}

// A replayed file's log that nothing was added to over a snapshot
// interval leaves the registry: other instances stop reading it, its
// state stays (in the snapshot), and replaying the file again still
// applies nothing twice.
func TestJournalRetiresIdleFiles(t *testing.T) {
	j, prefix := newJournal(t, "", JournalOptions{CompactEvery: time.Nanosecond})
	ctx := context.Background()
	k := state.Key{Rule: "r", Group: "g", Block: 1}
	add := func(stream string, pos int64) state.ApplyFunc { return countOnce(stream, pos, 1) }
	for pos := range int64(3) {
		if _, err := j.Update(state.WithStream(ctx, "f:day1.json"), []state.Key{k}, add("f:day1.json", pos+1)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := j.Compact(ctx); err != nil {
			t.Fatal(err)
		}
	}
	j.listed = time.Time{}
	names, err := j.listStreams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, "f:day1.json") {
		t.Fatalf("registry still lists the idle file: %v", names)
	}
	fresh := restored(t, prefix)
	got, err := fresh.Update(state.WithStream(ctx, "f:day1.json"), []state.Key{k}, add("f:day1.json", 2))
	if err != nil {
		t.Fatal(err)
	}
	if got[k].Counts[1] != 3 {
		t.Fatalf("count %d after replaying the file again, want 3", got[k].Counts[1])
	}
	if _, err := fresh.Update(state.WithStream(ctx, "f:day1.json"), []state.Key{k}, add("f:day1.json", 4)); err != nil {
		t.Fatal(err)
	}
	if e := caughtUp(t, j).view[k]; e.Counts[1] != 4 {
		t.Fatalf("the first instance reads %d after the file was registered again, want 4", e.Counts[1])
	}
}

// A batch's findings are recorded together, once each: a period's share a
// partition (transactions of at most 100); recorded again, none is new; a
// batch mixing new and recorded ones reports exactly the new ones.
func TestAddFindingsBatched(t *testing.T) {
	s := newStore(t, testPrefix(), Options{})
	ctx := context.Background()
	period := t0.Truncate(time.Hour)
	var recs []state.FindingRecord
	for i := range 150 {
		recs = append(recs, state.FindingRecord{ID: fmt.Sprintf("%024x", i), Body: []byte(`{}`), Period: period})
	}
	before := s.Stats()
	got, err := s.AddFindings(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range got {
		if !a {
			t.Fatalf("finding %d not added", i)
		}
	}
	if n := s.Stats().RoundTrips() - before.RoundTrips(); n > 2 {
		t.Errorf("150 findings of one period took %d round trips, want 2 transactions", n)
	}
	mixed := append([]state.FindingRecord{{ID: fmt.Sprintf("%024x", 999), Body: []byte(`{}`), Period: period}}, recs[:5]...)
	got, err = s.AddFindings(ctx, mixed)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, false, false, false, false}; !slices.Equal(got, want) {
		t.Fatalf("added %v, want %v", got, want)
	}
	if body, ok, err := s.Finding(ctx, recs[7].ID, period); err != nil || !ok || string(body) != `{}` {
		t.Fatalf("Finding: %q %v %v", body, ok, err)
	}
}

// Two instances compacting at once never spoil the snapshot: the one that
// loses the head deletes only its own rows, and a fresh instance restores
// the state.
func TestJournalConcurrentCompactions(t *testing.T) {
	evs := events(12, "0", 600, t0, 30*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	a, prefix := newJournal(t, "", JournalOptions{CompactEntries: 1 << 30, CompactBytes: 1 << 30, CompactEvery: time.Nanosecond})
	b, _ := newJournal(t, prefix, JournalOptions{CompactEntries: 1 << 30, CompactBytes: 1 << 30, CompactEvery: time.Nanosecond})
	h := newHarness(t, a)
	for _, bt := range batches(evs, 100) {
		ref.mustFeed(t, bt)
		h.mustFeed(t, bt)
		caughtUp(t, b)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, j := range []*Journal{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = j.Compact(context.Background()) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		sameView(t, restored(t, prefix), mem)
	}
}

// dueTogether returns two instances of one journal whose compactions are
// due at once (a snapshot by a, then more batches, caught up by b; the
// clock moved past CompactEvery), their prefix, the same batches applied to
// memory state, and a function that moves their clock on.
func dueTogether(t *testing.T) (a, b *Journal, prefix string, mem *state.Memory, advance func(time.Duration)) {
	t.Helper()
	var mu sync.Mutex
	clock := t0.Add(24 * time.Hour)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance = func(d time.Duration) { mu.Lock(); defer mu.Unlock(); clock = clock.Add(d) }
	opts := JournalOptions{CompactEntries: 1 << 30, CompactBytes: 1 << 30, CompactEvery: 5 * time.Second, Now: now}
	a, prefix = newJournal(t, "", opts)
	b, _ = newJournal(t, prefix, opts)
	mem = state.NewMemory()
	ref, h := newHarness(t, mem), newHarness(t, a)
	bts := batches(events(13, "0", 300, t0, 30*time.Minute), 100)
	ref.mustFeed(t, bts[0])
	h.mustFeed(t, bts[0])
	if ok, err := a.Compact(context.Background()); err != nil || !ok {
		t.Fatalf("first snapshot: %v %v", ok, err)
	}
	for _, bt := range bts[1:] {
		ref.mustFeed(t, bt)
		h.mustFeed(t, bt)
	}
	caughtUp(t, b)
	advance(10 * time.Second) // both due
	return a, b, prefix, mem, advance
}

// compaction is what one instance's compaction did: whether it wrote a
// snapshot, and the transactions it made.
type compaction struct {
	wrote bool
	tx    int64
}

// compactWithin runs outer's compaction and, when it reaches stage (see
// Journal.testCompact), inner's whole compaction; then it checks that the
// two wrote one snapshot between them (the head at generation 2, after
// dueTogether's first).
func compactWithin(t *testing.T, outer, inner *Journal, stage string) (o, i compaction) {
	t.Helper()
	ctx := context.Background()
	run := func(j *Journal) (compaction, error) {
		tx := j.s.stats.transactions.Load()
		wrote, err := j.Compact(ctx)
		return compaction{wrote, j.s.stats.transactions.Load() - tx}, err
	}
	var innerErr error
	outer.testCompact = func(s string) {
		if s == stage {
			i, innerErr = run(inner)
		}
	}
	o, err := run(outer)
	outer.testCompact = nil
	if err != nil || innerErr != nil {
		t.Fatal(err, innerErr)
	}
	if hd, err := outer.readHead(ctx); err != nil || hd.gen != 2 {
		t.Fatalf("head at generation %d (%v), want 2: one snapshot after the first", hd.gen, err)
	}
	return o, i
}

// readsWhenDue makes j due for a compaction by its own count, lets it
// start one if it will, and returns the reads it made.
func readsWhenDue(j *Journal) int64 {
	j.opts.CompactEntries = 1
	reads := j.s.stats.reads.Load()
	j.maybeCompact()
	j.Wait()
	return j.s.stats.reads.Load() - reads
}

// Two instances due for a compaction together write one snapshot between
// them, not two: the first claims the round on the head, and the second,
// finding it claimed, writes nothing and reads the head again only once
// the round could be over. Before the claim both encoded the whole view
// and wrote it, and one lost the head (8 of 11 rounds of a sweep's
// history).
func TestJournalCompactionRoundIsClaimedOnce(t *testing.T) {
	a, b, prefix, mem, _ := dueTogether(t)
	// b comes to compact once a has claimed the round and is encoding.
	ra, rb := compactWithin(t, a, b, "encode")
	if !ra.wrote {
		t.Fatal("a claimed the round but wrote no snapshot")
	}
	if rb.wrote || rb.tx > 0 {
		t.Fatalf("b compacted in the round a had claimed: wrote %v, %d transactions", rb.wrote, rb.tx)
	}
	// b, due by its own count, does not read the head again within the
	// round it found claimed.
	if n := readsWhenDue(b); n != 0 {
		t.Fatalf("b read %d times within a's round, want none", n)
	}
	sameView(t, restored(t, prefix), mem)
}

// Two instances read the head together and both try to claim the round:
// the one whose claim fails (the head changed since it read it) leaves the
// round to the other and does not read the head again before the round
// could be over, as one that found the round claimed does not.
func TestJournalLostClaimLeavesTheRound(t *testing.T) {
	a, b, prefix, mem, advance := dueTogether(t)
	// b has read the head; a claims the round and writes its snapshot
	// before b's claim.
	rb, ra := compactWithin(t, b, a, "claim")
	if !ra.wrote {
		t.Fatal("a wrote no snapshot in its round")
	}
	if rb.wrote || rb.tx > 0 {
		t.Fatalf("b compacted after losing its claim: wrote %v, %d transactions", rb.wrote, rb.tx)
	}
	// b, due by its own count, does not read the head again within a's
	// round; once the round could be over, it does.
	if n := readsWhenDue(b); n != 0 {
		t.Fatalf("b read %d times within a's round, want none", n)
	}
	advance(b.opts.CompactEvery)
	if readsWhenDue(b) == 0 {
		t.Fatal("b never read the head again once a's round was over")
	}
	sameView(t, restored(t, prefix), mem)
}

// Two instances share the state, each reading its own partition. One
// runs ahead (a catch-up, a slow partition on the other): its pruning must
// not drop the state the other's late records still count into. Here a
// caller's 6 reads at 13:37 reach instance a, which then reads 15:00; the
// same caller's 6 reads at 13:38 reach instance b afterwards: 12 reads in
// 5 minutes, a burst b must see.
func TestJournalPruningWaitsForOtherInstancesPartitions(t *testing.T) {
	testTwoInstancesShareABurst(t, true)
}

// Two instances start together, each on a new stream (a deployment's
// first batches): b lists the streams, a writes its first batch on a
// stream b has not listed, and b's next batch, within the registry's
// second, must read it: 12 reads in 5 minutes, a burst b must see.
func TestJournalNewStreamsSeenAtOnce(t *testing.T) {
	testTwoInstancesShareABurst(t, false)
}

func testTwoInstancesShareABurst(t *testing.T, jump bool) {
	ja, prefix := newJournal(t, "", JournalOptions{})
	jb, _ := newJournal(t, prefix, JournalOptions{})
	a, b := newHarness(t, ja), newHarness(t, jb)
	read := func(caller, part string, seq int64, at time.Time) audit.Event {
		return audit.Event{Time: at, Vault: "kv1", Operation: "SecretGet", Family: audit.FamilySecret, Kind: audit.KindRead,
			Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret", ObjectName: "s1", CallerIP: "10.0.0.1",
			Caller: audit.Caller{ObjectID: caller, Key: caller, KeyFrom: "oid"},
			Source: audit.Source{Partition: part, Sequence: seq, HasSequence: true}}
	}
	at := time.Date(2026, 11, 23, 13, 30, 0, 0, time.UTC)
	b.mustFeed(t, []audit.Event{read("zed", "1", 0, at)})
	var evs []audit.Event
	for i := range 6 {
		evs = append(evs, read("mallory", "0", int64(i), at.Add(7*time.Minute+time.Duration(i)*time.Second)))
	}
	a.mustFeed(t, evs)
	if jump {
		a.mustFeed(t, []audit.Event{read("zed", "0", 6, at.Add(90*time.Minute))})
	}
	evs = nil
	for i := range 6 {
		evs = append(evs, read("mallory", "1", int64(1+i), at.Add(8*time.Minute+time.Duration(i)*time.Second)))
	}
	b.mustFeed(t, evs)
	n := 0
	for _, f := range b.found {
		if f.Rule == "burst" && f.Count == 12 {
			n++
		}
	}
	if n == 0 {
		var got []string
		for _, f := range append(a.found, b.found...) {
			got = append(got, fmt.Sprintf("%s %v count %d", f.Rule, f.Group, f.Count))
		}
		t.Fatalf("no burst of 12 reads for mallory from instance b; findings: %v", got)
	}
}

// Two regions' hubs each have a partition 0: two streams. The first
// region's runs ahead; pruning must wait for the second's, whose late
// reads still count with the first's (the same burst as above, one
// instance).
func TestPruningTellsTwoRegionsPartitionsApart(t *testing.T) {
	h := newHarness(t, state.NewMemory())
	read := func(caller, hub string, seq int64, at time.Time) audit.Event {
		return audit.Event{Time: at, Vault: "kv1", Operation: "SecretGet", Family: audit.FamilySecret, Kind: audit.KindRead,
			Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret", ObjectName: "s1", CallerIP: "10.0.0.1",
			Caller: audit.Caller{ObjectID: caller, Key: caller, KeyFrom: "oid"},
			Source: audit.Source{Namespace: "ns.servicebus.windows.net", Hub: hub, Partition: "0", Sequence: seq, HasSequence: true}}
	}
	at := time.Date(2026, 11, 23, 13, 30, 0, 0, time.UTC)
	h.mustFeed(t, []audit.Event{read("zed", "kv-westeurope", 0, at)})
	var evs []audit.Event
	for i := range 6 {
		evs = append(evs, read("mallory", "kv-northeurope", int64(i), at.Add(7*time.Minute+time.Duration(i)*time.Second)))
	}
	h.mustFeed(t, evs)
	h.mustFeed(t, []audit.Event{read("zed", "kv-northeurope", 6, at.Add(90*time.Minute))})
	evs = nil
	for i := range 6 {
		evs = append(evs, read("mallory", "kv-westeurope", int64(1+i), at.Add(8*time.Minute+time.Duration(i)*time.Second)))
	}
	h.mustFeed(t, evs)
	for _, f := range h.found {
		if f.Rule == "burst" && f.Count == 12 {
			return
		}
	}
	t.Fatalf("no burst of 12 reads across the two regions' partitions 0: %d findings", len(h.found))
}

// A restore reads the snapshot's rows and the logs' tails after its cut
// at the same time. Other instances writing and compacting meanwhile never
// spoil the view it ends with: a compaction while it reads the tails (the
// snapshot read already) deletes nothing it needs; two of them delete
// entries after its cut (a gap), and a compaction before it reads the
// snapshot deletes its rows (moved): both restore again. Each ends with
// exactly the state of the batches fed.
func TestJournalRestoreRacesCompaction(t *testing.T) {
	for _, tc := range []struct {
		name        string
		compactions int    // by the writer, at stage
		stage       string // "tails": after the snapshot was read; "head": before
		tries       int    // restores the reader makes
	}{
		{"compaction while the tails are read", 1, "tails", 1},
		{"two compactions while the tails are read", 2, "tails", 2},
		{"compaction before the snapshot is read", 1, "head", 2},
		{"writes only, while the tails are read", 0, "tails", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := state.NewMemory()
			ref := newHarness(t, mem)
			w, prefix := newJournal(t, "", JournalOptions{CompactEntries: 1 << 30, CompactBytes: 1 << 30, CompactEvery: time.Nanosecond})
			h := newHarness(t, w)
			feed := func(evs []audit.Event) {
				for _, b := range batches(evs, 100) {
					ref.mustFeed(t, b)
					h.mustFeed(t, b)
				}
			}
			part := func(i int) []audit.Event {
				evs := events(uint64(20+i), strconv.Itoa(i%2), 300, t0.Add(time.Duration(i)*10*time.Minute), 10*time.Minute)
				for k := range evs {
					evs[k].Source.Sequence += int64(i) * 10_000
				}
				return evs
			}
			feed(part(0))
			if ok, err := w.Compact(context.Background()); err != nil || !ok {
				t.Fatalf("compact: %v %v", ok, err)
			}
			feed(part(1)) // a tail after the snapshot
			r, _ := newJournal(t, prefix, JournalOptions{})
			var mu sync.Mutex
			heads, done := 0, false
			snapshotRead := make(chan struct{}, 1)
			r.testRestore = func(stage string) {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case stage == "head":
					heads++
				case stage == "snapshot":
					select {
					case snapshotRead <- struct{}{}:
					default:
					}
				}
				if stage != tc.stage || done {
					return
				}
				done = true
				if stage == "tails" {
					mu.Unlock()
					<-snapshotRead // the snapshot's rows were read and decoded
					mu.Lock()
				}
				for i := range max(tc.compactions, 1) {
					feed(part(2 + i))
					if i < tc.compactions {
						if ok, err := w.Compact(context.Background()); err != nil || !ok {
							t.Errorf("compact during the restore: %v %v", ok, err)
						}
					}
				}
			}
			if err := r.Restore(context.Background()); err != nil {
				t.Fatal(err)
			}
			if heads != tc.tries {
				t.Errorf("%d restores, want %d", heads, tc.tries)
			}
			r.testRestore = nil
			sameView(t, caughtUp(t, r), mem)
			sameView(t, restored(t, prefix), mem)
			// The restored view as such (before any catch-up) holds what
			// the logs held when it read them: at least part 1's batches.
			if r.Len() == 0 {
				t.Fatal("nothing restored")
			}
		})
	}
}

// Values that differ only in invalid UTF-8 (a replayed file's IP address
// or secret name keeps its bytes) are written under the same JSON name:
// another instance still catches up with the log and a fresh one restores
// the log and the snapshot, keeping one of them, instead of failing every
// catch-up and restore of that state.
func TestJournalInvalidUTF8Keys(t *testing.T) {
	ctx := state.WithStream(context.Background(), "f:replayed/PT1H.json")
	a, prefix := newJournal(t, "", JournalOptions{Fresh: -1, Registry: -1})
	b, _ := newJournal(t, prefix, JournalOptions{Fresh: -1, Registry: -1})
	k := state.Key{Rule: "new-ip", Group: "kv1", Block: state.BlockMeta}
	if _, err := a.Update(ctx, []state.Key{k}, func(_ state.Key, e *state.Entity) bool {
		e.Seen = map[string]state.Span{"10.0.0.1\xfe": {First: 1, Last: 2}, "10.0.0.1\xff": {First: 3, Last: 4}}
		e.Tally = map[string]int64{"s\xfe": 1, "s\xff": 2}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, j *Journal) {
		t.Helper()
		got, err := j.Get(context.Background(), []state.Key{k})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if e := got[k]; e == nil || len(e.Seen) != 1 || len(e.Tally) != 1 {
			t.Fatalf("%s: read %+v", what, got[k])
		}
	}
	check("another instance's catch-up", caughtUp(t, b))
	check("a restore from the log", restored(t, prefix))
	if _, err := a.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("a restore from the snapshot", restored(t, prefix))
}

// A change to a pruned block (a record later than the prune's horizon,
// redelivered from an old checkpoint) from an instance that has not folded
// the drop yet, and one from the instance that pruned: every view, and a
// restore, ends without the block, whichever order it folded the drop and
// the change in. Before tombstones, the pruning instance re-created the
// block from its change alone and the other counted its change on top of
// the block it still held: two instances, two counts (e2e's
// TestPartitionMove with the restore started at process start counted
// two bursts twice).
func TestJournalChangeAfterDrop(t *testing.T) {
	ctx := context.Background()
	a, prefix := newJournal(t, "", JournalOptions{Fresh: -1, Registry: -1})
	b, _ := newJournal(t, prefix, JournalOptions{Fresh: -1, Registry: -1})
	k := state.Key{Rule: "burst", Group: "kv1\x1fcaller", Block: 498727}
	add := func(stream string, pos int64) state.ApplyFunc { return countOnce(stream, pos, 29923642) }
	in := func(stream string) context.Context { return state.WithStream(ctx, stream) }
	if _, err := a.Update(in("p:0"), []state.Key{k}, add("p:0", 480)); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, b) // b holds the block (1)
	if n, err := a.Prune(ctx, func(key state.Key) bool { return key == k }); err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	// b, not caught up with the drop, takes a late record of another
	// partition into the block; a, which pruned it, the same batch of
	// partition 0 again (from an older checkpoint).
	if _, err := b.Update(state.WriteOnly(in("p:1")), []state.Key{k}, add("p:1", 7)); err != nil {
		t.Fatal(err)
	}
	got, err := a.Update(state.WriteOnly(in("p:0")), []state.Key{k}, add("p:0", 480))
	if err != nil {
		t.Fatal(err)
	}
	if got[k] != nil {
		t.Fatalf("the pruning instance re-created the block: %+v", got[k])
	}
	for _, v := range []struct {
		name string
		j    *Journal
	}{{"a", caughtUp(t, a)}, {"b", caughtUp(t, b)}, {"a restore", restored(t, prefix)}} {
		got, err := v.j.Get(ctx, []state.Key{k})
		if err != nil {
			t.Fatal(err)
		}
		if e := got[k]; e != nil {
			t.Errorf("%s holds the pruned block: counts %v", v.name, e.Counts)
		}
	}
	if _, err := a.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// A late change after the snapshot: the snapshot's tombstones close
	// the block for an instance restored from it.
	if _, err := b.Update(state.WriteOnly(in("p:1")), []state.Key{k}, add("p:1", 8)); err != nil {
		t.Fatal(err)
	}
	r := restored(t, prefix)
	if got, _ := r.Get(ctx, []state.Key{k}); got[k] != nil {
		t.Errorf("restored from the snapshot, the pruned block is back: counts %v", got[k].Counts)
	}
}

// A batch's statistics ride with its detection state (state.Deferred):
// one log entry, one transaction, for both, where they took one each;
// a fresh instance restores both as memory state holds them. A batch the
// rules write nothing for (no stage after the statistics) has its
// statistics written on their own (state.Flusher).
func TestJournalStatsRideWithDetection(t *testing.T) {
	evs := events(3, "0", 400, t0, 30*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	ref.withStats = stats.New(mem)
	j, prefix := newJournal(t, "", JournalOptions{CompactEntries: 1 << 30, CompactBytes: 1 << 30})
	h := newHarness(t, j)
	h.withStats = stats.New(j)
	stream := audit.BatchStream(evs)
	entries := func() int64 {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.cursorOf(stream).index
	}
	for i, b := range batches(evs, 50) {
		ref.mustFeed(t, b)
		before := entries()
		h.mustFeed(t, b)
		if n := entries() - before; n != 1 {
			t.Errorf("batch %d: %d log entries, want 1 (statistics and detection together)", i, n)
		}
	}
	sameView(t, restored(t, prefix), mem)

	// Statistics alone.
	more := events(4, "0", 50, t0.Add(40*time.Minute), time.Minute)
	for i := range more {
		more[i].Source.Sequence += 10_000
	}
	if err := stats.New(mem).Collect(context.Background(), more); err != nil {
		t.Fatal(err)
	}
	before := entries()
	if _, err := stats.New(j).Stage(nil).Consume(context.Background(), more); err != nil {
		t.Fatal(err)
	}
	if n := entries() - before; n != 1 {
		t.Errorf("statistics alone: %d log entries, want 1", n)
	}
	sameView(t, restored(t, prefix), mem)
}

// handedOn returns what the sink was handed since the last call, as
// "ID count", sorted, and forgets it.
func (h *harness) handedOn() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, f := range h.found {
		out = append(out, fmt.Sprintf("%s %d", f.ID, f.Count))
	}
	h.found = nil
	slices.Sort(out)
	return out
}

// An instance that takes a partition over - a restart, a scale-out - hands
// on what the instance that served it all along hands on: the findings
// whose facts grew, not every finding its windows hold again (the marks of
// what was handed on, detect/marks.go). The instance before it stopped as
// serve stops (FlushAll). One that crashed loses its last batch's marks,
// which wait for the next write: of the findings, only those of its last
// batch are handed on once more.
func TestTakeOverHandsOnWhatGrew(t *testing.T) {
	ctx := context.Background()
	bs := batches(events(11, "0", 3000, t0, 50*time.Minute), 40)
	const before = 50
	newInstance := func(j *Journal) *harness {
		h := newHarness(t, j)
		h.withStats = stats.New(j)
		return h
	}
	warmJ, _ := newJournal(t, "", JournalOptions{})
	warm := newInstance(warmJ)
	stopJ, stopPrefix := newJournal(t, "", JournalOptions{})
	stopped := newInstance(stopJ)
	crashJ, crashPrefix := newJournal(t, "", JournalOptions{})
	crashed := newInstance(crashJ)
	var last []string // IDs the last batch before the take-over handed on
	for i, b := range bs[:before] {
		warm.mustFeed(t, b)
		stopped.mustFeed(t, b)
		crashed.mustFeed(t, b)
		if i == before-1 {
			for _, s := range crashed.handedOn() {
				last = append(last, strings.Fields(s)[0])
			}
		}
		warm.handedOn()
		stopped.handedOn()
		crashed.handedOn()
	}
	if err := stopJ.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	next := newInstance(restored(t, stopPrefix))
	afterCrash := newInstance(restored(t, crashPrefix))
	again := 0 // handings on after the crash that the warm instance did not make
	for i, b := range bs[before:] {
		warm.mustFeed(t, b)
		next.mustFeed(t, b)
		afterCrash.mustFeed(t, b)
		want, got, gotCrash := warm.handedOn(), next.handedOn(), afterCrash.handedOn()
		if !slices.Equal(got, want) {
			t.Errorf("batch %d after the take-over: handed on\n%v\nwant (as the instance that never stopped)\n%v", i, got, want)
		}
		for _, s := range gotCrash {
			if slices.Contains(want, s) {
				continue
			}
			again++
			if id := strings.Fields(s)[0]; !slices.Contains(last, id) {
				t.Errorf("batch %d after a crash: %s handed on again, not a finding of the last batch before it", i, s)
			}
		}
	}
	if again == 0 {
		t.Error("after a crash, no finding of the last batch was handed on again: the traffic does not test a take-over")
	}
}

// Two instances keep one vault's day statistics, a partition each, and
// its top lists go over their bound: each instance trims them in its own
// view while the other adds to entries it trimmed. Every view, and a
// restored one, must end the same when all have read every log (a trim
// and an addition folded in either order), or the digest a vault's day
// gets depends on the instance that sends it.
func TestJournalStatsTrimsConverge(t *testing.T) {
	mk := func(seed uint64, part string) []audit.Event {
		r := rand.New(rand.NewPCG(seed, 9))
		evs := make([]audit.Event, 1500)
		for i := range evs {
			caller := fmt.Sprintf("app-%03d", r.IntN(150))
			evs[i] = audit.Event{Time: t0.Add(time.Duration(i) * time.Second), Vault: "kv1", Operation: "SecretGet",
				Family: audit.FamilySecret, Kind: audit.KindRead, Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
				ObjectType: "secret", ObjectName: fmt.Sprintf("s-%03d", r.IntN(600)), CallerIP: "10.0.0.1",
				Caller: audit.Caller{ObjectID: caller, Key: caller, KeyFrom: "oid"},
				Source: audit.Source{Partition: part, Sequence: int64(i), HasSequence: true}}
			if r.IntN(3) == 0 { // denied: the denied callers' and IPs' lists too
				evs[i].Outcome, evs[i].HTTPStatus = audit.OutcomeDenied, 403
				evs[i].CallerIP = fmt.Sprintf("10.1.%d.%d", r.IntN(4), r.IntN(250))
			}
		}
		return evs
	}
	p0, p1 := mk(1, "0"), mk(2, "1")
	a, prefix := newJournal(t, "", JournalOptions{Fresh: -1})
	b, _ := newJournal(t, prefix, JournalOptions{Fresh: -1})
	sa, sb := stats.New(a), stats.New(b)
	ctx := context.Background()
	bp0, bp1 := batches(p0, 25), batches(p1, 25)
	for i := range bp0 {
		if err := sa.Collect(ctx, bp0[i]); err != nil {
			t.Fatal(err)
		}
		if err := sb.Collect(ctx, bp1[i]); err != nil {
			t.Fatal(err)
		}
	}
	a.Wait()
	b.Wait()
	key := stats.DayKey("kv1", stats.Day(t0))
	view := func(j *Journal) string {
		caughtUp(t, j)
		got, err := j.Get(ctx, []state.Key{key})
		if err != nil {
			t.Fatal(err)
		}
		e := got[key]
		if e == nil {
			t.Fatal("no day statistics")
		}
		return canon(e)
	}
	va, vb, vr := view(a), view(b), view(restored(t, prefix))
	differ := func(x, y string) []string {
		var ex, ey state.Entity
		if json.Unmarshal([]byte(x), &ex) != nil || json.Unmarshal([]byte(y), &ey) != nil {
			t.Fatal("views: not JSON")
		}
		var out []string
		for k := range maps.Keys(ex.Tally) {
			if ex.Tally[k] != ey.Tally[k] {
				out = append(out, fmt.Sprintf("%s %d/%d", k, ex.Tally[k], ey.Tally[k]))
			}
		}
		for k := range maps.Keys(ey.Tally) {
			if _, ok := ex.Tally[k]; !ok {
				out = append(out, fmt.Sprintf("%s -/%d", k, ey.Tally[k]))
			}
		}
		slices.Sort(out)
		return out[:min(len(out), 5)]
	}
	if va != vb {
		t.Errorf("the two instances' views of the day differ; tallies (A/B): %v", differ(va, vb))
	}
	if vr != va {
		t.Errorf("a restored view differs from instance A's; tallies (restored/A): %v", differ(vr, va))
	}
	// The lists did go over their bound (the trims this is about).
	got, _ := a.Get(ctx, []state.Key{key})
	day := stats.ReadDay(got[key])
	read := map[string]bool{}
	for _, e := range slices.Concat(p0, p1) {
		if e.Outcome == audit.OutcomeSuccess {
			read[e.ObjectName] = true
		}
	}
	if len(day.Secrets) >= len(read) || len(day.Secrets) < stats.MaxTally {
		t.Errorf("secrets list of %d entries, of %d secrets read: the test needs it trimmed", len(day.Secrets), len(read))
	}
}

package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// The engine's own semantics, through the Table store, against the
// in-memory store as the reference.

const testPack = `
rules:
  - id: burst
    kind: threshold
    match: {families: [secret], kinds: [read]}
    group_by: [vault, caller]
    window: 5m
    count: 10
    cooldown: 30m
  - id: sweep
    kind: distinct
    match: {families: [secret], kinds: [read]}
    group_by: [caller]
    field: object_name
    window: 10m
    count: 5
    cooldown: 30m
  - id: list-then-read
    kind: sequence
    match: {operations: [SecretList]}
    then: {families: [secret], kinds: [read]}
    group_by: [caller]
    window: 10m
    count: 8
    cooldown: 30m
  - id: new-caller
    kind: new_value
    match: {families: [secret]}
    group_by: [vault]
    fields: [caller]
    learning: 10m
    horizon: 30d
`

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func compilePack(t testing.TB, yaml string) ([]*rules.Rule, *rules.Settings) {
	t.Helper()
	f, err := config.Parse("test.yaml", []byte(yaml), config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	rs, s, err := rules.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return rs, s
}

type harness struct {
	// withStats, when set, collects statistics in front of the engine as
	// serve does (stats.Collector.Stage: a store that can defers them to
	// the detection state's write).
	withStats *stats.Collector
	en        *detect.Engine
	store     state.Store
	mu        sync.Mutex
	found     []finding.Finding
}

func newHarness(t testing.TB, store state.Store) *harness {
	rs, s := compilePack(t, testPack)
	h := &harness{store: store}
	h.en = detect.New(rs, s, detect.Options{Store: store, Log: zerolog.Nop(),
		Now: func() time.Time { return t0 },
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			h.mu.Lock()
			h.found = append(h.found, fs...)
			h.mu.Unlock()
			return nil
		})})
	return h
}

func (h *harness) feed(ctx context.Context, evs []audit.Event) error {
	if h.withStats != nil {
		_, err := h.withStats.Stage(pipeline.StageFunc(h.en.Consume)).Consume(ctx, slices.Clone(evs))
		return err
	}
	_, err := h.en.Consume(ctx, slices.Clone(evs))
	return err
}

func (h *harness) mustFeed(t testing.TB, evs []audit.Event) {
	t.Helper()
	if err := h.feed(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// ids returns the IDs of the findings handed to the sink, each once (the
// engine hands a finding on again while its condition holds; sinks are
// idempotent by ID).
func (h *harness) ids() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for _, f := range h.found {
		ids = append(ids, f.ID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// events returns n secret reads (and a few lists) by five callers over
// span from start, on one Event Hubs partition, in sequence order.
func events(seed uint64, part string, n int, start time.Time, span time.Duration) []audit.Event {
	r := rand.New(rand.NewPCG(seed, 7))
	evs := make([]audit.Event, n)
	for i := range evs {
		caller := fmt.Sprintf("caller-%c", 'a'+r.IntN(5))
		e := audit.Event{Time: start.Add(time.Duration(r.Int64N(int64(span)))), Vault: "kv1",
			Operation: "SecretGet", Family: audit.FamilySecret, Kind: audit.KindRead,
			Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret", ObjectName: fmt.Sprintf("s%d", r.IntN(7)),
			CallerIP: "10.0.0.1", Caller: audit.Caller{ObjectID: caller, Key: caller, KeyFrom: "oid"}}
		if r.IntN(25) == 0 {
			e.Operation, e.Kind, e.ObjectName = "SecretList", audit.KindList, ""
		}
		evs[i] = e
	}
	slices.SortFunc(evs, func(a, b audit.Event) int { return a.Time.Compare(b.Time) })
	for i := range evs {
		evs[i].Source = audit.Source{Partition: part, Sequence: int64(i), HasSequence: true}
	}
	return evs
}

// feed is a harness and the batches it is to consume.
type feed struct {
	h       *harness
	batches [][]audit.Event
}

// feedConcurrently runs the feeds at once (two instances, two partitions
// or one partition held twice), each in batch order, and fails on the
// first error.
func feedConcurrently(t *testing.T, feeds ...feed) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(feeds))
	for _, f := range feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range f.batches {
				if err := f.h.feed(context.Background(), b); err != nil {
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
}

func batches(evs []audit.Event, size int) [][]audit.Event {
	var out [][]audit.Event
	for i := 0; i < len(evs); i += size {
		out = append(out, evs[i:min(i+size, len(evs))])
	}
	return out
}

// sameState fails unless the Table store holds exactly the entities the
// memory store holds.
func sameState(t *testing.T, table *Store, mem *state.Memory) {
	t.Helper()
	got := allState(t, table)
	keys := make([]state.Key, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	want, _ := mem.Get(context.Background(), keys)
	if len(got) != mem.Len() {
		t.Errorf("table holds %d entities, memory %d", len(got), mem.Len())
	}
	for k, e := range got {
		if canon(e) != canon(want[k]) {
			t.Errorf("%v: table %s\n memory %s", k, canon(e), canon(want[k]))
		}
	}
}

// sameFindings fails unless the findings table records exactly the
// findings the memory store recorded.
func sameFindings(t *testing.T, table *Store, mem *state.Memory) {
	t.Helper()
	var want []string
	for _, b := range mem.Findings() {
		var f finding.Finding
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		want = append(want, f.ID)
	}
	slices.Sort(want)
	var got []string
	err := table.query(context.Background(), table.findings, "PartitionKey ne ''", nil, func(raw []byte) error {
		var e aztables.EDMEntity
		if err := json.Unmarshal(raw, &e); err != nil {
			return err
		}
		got = append(got, e.RowKey)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("findings table holds %v\nmemory recorded %v", got, want)
	}
}

// Fed the same batches, the Table store ends with exactly the memory
// store's state and findings; every batch delivered again, and cut
// differently, changes nothing and raises nothing again.
func TestEngineRedeliveryExactlyOnce(t *testing.T) {
	evs := events(1, "0", 1200, t0, 50*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	for _, b := range batches(evs, 100) {
		ref.mustFeed(t, b)
	}
	if len(ref.found) < 3 {
		t.Fatalf("the scenario should raise findings, got %v", ref.ids())
	}

	s := newStore(t, testPrefix(), Options{})
	h := newHarness(t, s)
	for i, b := range batches(evs, 100) {
		h.mustFeed(t, b)
		h.mustFeed(t, b) // redelivered whole
		if i > 0 {
			h.mustFeed(t, evs[i*100-50:i*100+50]) // a cut straddling two batches
		}
	}
	h.mustFeed(t, evs) // everything again, in one batch
	sameState(t, s, mem)
	sameFindings(t, s, mem)
	if got, want := h.ids(), ref.ids(); !slices.Equal(got, want) {
		t.Fatalf("findings %v\nwant %v", got, want)
	}
}

// A batch that fails half way (some transactions written, then an error
// or a cancelled context) and is delivered again ends exactly as if it had
// gone through once.
func TestEngineHalfAppliedBatchRetried(t *testing.T) {
	evs := events(2, "0", 600, t0, 40*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	for _, b := range batches(evs, 200) {
		ref.mustFeed(t, b)
	}

	for _, how := range []string{"error", "cancel"} {
		t.Run(how, func(t *testing.T) {
			s := newStore(t, testPrefix(), Options{Concurrency: 1})
			h := newHarness(t, s)
			for i, b := range batches(evs, 200) {
				ctx, cancel := context.WithCancel(context.Background())
				start := s.Stats().Transactions
				s.testBeforeTx = func(n int) error {
					if int64(n)-start == 3 { // after two transactions went through
						if how == "cancel" {
							cancel()
							return nil
						}
						return errors.New("injected failure")
					}
					return nil
				}
				err := h.feed(ctx, b)
				cancel()
				s.testBeforeTx = nil
				if err == nil {
					t.Fatalf("batch %d: the injected failure did not fail the batch", i)
				}
				if how == "cancel" && !errors.Is(err, context.Canceled) {
					t.Fatalf("batch %d: %v, want context.Canceled", i, err)
				}
				h.mustFeed(t, b) // the host delivers it again
			}
			sameState(t, s, mem)
			if got, want := h.ids(), ref.ids(); !slices.Equal(got, want) {
				t.Fatalf("findings %v\nwant %v", got, want)
			}
		})
	}
}

// Two instances (two stores: two caches) consume two partitions whose
// events hit the same groups, concurrently: the state ends with every
// event counted exactly once, and no finding is raised twice.
func TestTwoInstancesConcurrent(t *testing.T) {
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

	prefix := testPrefix()
	a, b := newStore(t, prefix, Options{}), newStore(t, prefix, Options{})
	ha, hb := newHarness(t, a), newHarness(t, b)
	feedConcurrently(t, feed{ha, batches(p0, 50)}, feed{hb, batches(p1, 50)})
	sameState(t, a, mem)
	// Which findings two racing instances raise can differ from one
	// sequential run where a rule's decision is not monotone in its state
	// (new_value's learning period starts at the rule's first event, which
	// an instance may not have seen yet); each is recorded once whatever
	// happens.
	all := slices.Compact(slices.Sorted(slices.Values(append(ha.ids(), hb.ids()...))))
	t.Logf("findings: %d raised by the two instances, %d by one sequential run", len(all), len(ref.ids()))
	t.Logf("conflicts: instance A %d, instance B %d", a.Stats().Conflicts, b.Stats().Conflicts)
	if a.Stats().Conflicts+b.Stats().Conflicts == 0 {
		t.Log("no write conflict happened: the 412 path was not exercised by this run")
	}
}

// Azurite stops mid-run: the batch fails promptly (the context's
// deadline, not a hang); once it is back the batch delivered again, and
// the rest, give exactly the state of an uninterrupted run.
func TestStorageOutage(t *testing.T) {
	if azuritetest.External() {
		t.Skip("uses an external Table endpoint (" + azuritetest.EnvConnectionString + "), which the test cannot stop")
	}
	evs := events(5, "0", 600, t0, 40*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	for _, b := range batches(evs, 100) {
		ref.mustFeed(t, b)
	}

	s := newStore(t, testPrefix(), Options{})
	h := newHarness(t, s)
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
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want the context's deadline", err)
	}
	if took > 5*time.Second {
		t.Errorf("the failing batch took %v with a 2s deadline", took)
	}
	for _, b := range bs[3:] {
		h.mustFeed(t, b)
	}
	sameState(t, s, mem)
	sameFindings(t, s, mem)
	if got, want := h.ids(), ref.ids(); !slices.Equal(got, want) {
		t.Fatalf("findings %v\nwant %v", got, want)
	}
}

// Over several hours (so the engine prunes as it goes), fed the same
// batches, the Table store ends where the memory store does.
func TestEngineMatchesMemoryWithPruning(t *testing.T) {
	evs := events(6, "0", 3000, t0, 6*time.Hour)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	s := newStore(t, testPrefix(), Options{})
	h := newHarness(t, s)
	for _, b := range batches(evs, 150) {
		ref.mustFeed(t, b)
		h.mustFeed(t, b)
	}
	sameState(t, s, mem)
	sameFindings(t, s, mem)
	if got, want := h.ids(), ref.ids(); !slices.Equal(got, want) {
		t.Fatalf("findings %v\nwant %v", got, want)
	}
	if s.Stats().Deletes == 0 {
		t.Error("nothing was pruned over six hours")
	}
}

package tablestore

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Several instances write the same entity at once: every write but one
// per round fails its If-Match (412) and is re-read and re-applied; no
// update is lost and none is applied twice.
func TestConcurrentWritersSameEntity(t *testing.T) {
	prefix := testPrefix()
	const writers, each = 4, 15
	stores := make([]*Store, writers)
	for i := range stores {
		stores[i] = newStore(t, prefix, Options{})
	}
	k := state.Key{Rule: "r", Group: "hot", Block: 490000}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("p:%d", w)
			for i := range each {
				_, err := stores[w].Update(context.Background(), []state.Key{k}, func(_ state.Key, e *state.Entity) bool {
					if e.Absorbed(stream, int64(i)) {
						return false
					}
					if e.Counts == nil {
						e.Counts = map[int64]int64{}
					}
					e.Counts[0]++
					e.Counts[int64(w+1)]++
					e.MarkApplied(stream, int64(i))
					return true
				})
				if err != nil {
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
	got, err := stores[0].Get(context.Background(), []state.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	if got[k].Counts[0] != writers*each {
		t.Fatalf("count %d, want %d: %s", got[k].Counts[0], writers*each, canon(got[k]))
	}
	var conflicts int64
	for w, s := range stores {
		if got[k].Counts[int64(w+1)] != each {
			t.Fatalf("writer %d counted %d times, want %d", w, got[k].Counts[int64(w+1)], each)
		}
		conflicts += s.Stats().Conflicts
	}
	if conflicts == 0 {
		t.Fatal("no write conflicted: the 412 path was not exercised")
	}
	t.Logf("%d conflicts for %d updates", conflicts, writers*each)
}

// An entity whose state is far over a property's 64 KiB round-trips, over
// several binary properties; one over the entity limit is refused.
func TestLargeEntity(t *testing.T) {
	s := newStore(t, testPrefix(), Options{})
	ctx := context.Background()
	k := state.Key{Rule: "r", Group: "big", Block: state.BlockMeta}
	want := &state.Entity{Seen: map[string]state.Span{}, Values: map[int64][]string{}}
	for i := range 6000 {
		var b [16]byte
		crand.Read(b[:])
		v := hex.EncodeToString(b[:])
		want.Seen[v] = state.Span{First: int64(i), Last: int64(2 * i)}
		want.Values[int64(i%50)] = append(want.Values[int64(i%50)], v)
	}
	if _, err := s.Update(ctx, []state.Key{k}, func(_ state.Key, e *state.Entity) bool {
		*e = *want.Clone()
		return true
	}); err != nil {
		t.Fatal(err)
	}
	s2 := newStore(t, s.opts.Prefix, Options{}) // another instance: nothing cached
	got, err := s2.Get(ctx, []state.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	if canon(got[k]) != canon(want) {
		t.Fatal("the large entity did not round-trip")
	}
	var resp aztables.GetEntityResponse
	ref := refOf(k)
	if resp, err = s.state.GetEntity(ctx, ref.pk, ref.rk, nil); err != nil {
		t.Fatal(err)
	}
	var ent aztables.EDMEntity
	if err := ent.UnmarshalJSON(resp.Value); err != nil {
		t.Fatal(err)
	}
	data, _ := getChunks(ent.Properties)
	if n := ent.Properties[propChunks].(int32); n < 2 || len(data) <= 64<<10 {
		t.Fatalf("stored in %d properties, %d bytes: the test should need several", n, len(data))
	}

	huge := state.Key{Rule: "r", Group: "huge", Block: 1}
	_, err = s.Update(ctx, []state.Key{huge}, func(_ state.Key, e *state.Entity) bool {
		e.Seen = map[string]state.Span{}
		for range 40000 {
			var b [24]byte
			crand.Read(b[:])
			e.Seen[hex.EncodeToString(b[:])] = state.Span{}
		}
		return true
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a 2 MB entity: %v, want ErrTooLarge", err)
	}
}

// Transactions never mix partition keys, hold at most 100 entities and
// stay under the request size limit, and keep each partition's order.
func TestGroupTransactions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var writes []*item
	for i := range 1000 {
		size := 200 + r.IntN(3000)
		if r.IntN(50) == 0 {
			size = 900_000 + r.IntN(300_000)
		}
		writes = append(writes, &item{
			k:    state.Key{Block: int64(i)},
			ref:  entityRef{pk: fmt.Sprintf("pk%d", r.IntN(7)), rk: rowKey(int64(i))},
			body: make([]byte, size),
		})
	}
	txs := groupTransactions(writes)
	seen := map[int64]bool{}
	last := map[string]int64{}
	for _, tx := range txs {
		if len(tx) == 0 || len(tx) > maxTxOps {
			t.Fatalf("a transaction of %d entities", len(tx))
		}
		size := 0
		for _, it := range tx {
			if it.ref.pk != tx[0].ref.pk {
				t.Fatalf("a transaction mixes %s and %s", tx[0].ref.pk, it.ref.pk)
			}
			if seen[it.k.Block] {
				t.Fatalf("entity %d written twice", it.k.Block)
			}
			seen[it.k.Block] = true
			if p, ok := last[it.ref.pk]; ok && it.k.Block < p {
				t.Fatalf("partition %s out of order", it.ref.pk)
			}
			last[it.ref.pk] = it.k.Block
			size += len(it.body) + opOverhead
		}
		if size > maxTxBytes {
			t.Fatalf("a transaction of %d bytes", size)
		}
	}
	if len(seen) != len(writes) {
		t.Fatalf("%d of %d entities written", len(seen), len(writes))
	}
	// And submit refuses a mixed transaction outright.
	s := &Store{}
	if _, err := s.submit(context.Background(), []*item{writes[0], {ref: entityRef{pk: "other"}}}); err == nil {
		t.Fatal("submit accepted a transaction mixing partitions")
	}
}

func TestRowKeysSortLikeBlocks(t *testing.T) {
	blocks := []int64{-1 << 62, -2, -1, 0, 1, 9, 10, 490000, 1 << 40}
	for i := 1; i < len(blocks); i++ {
		a, b := rowKey(blocks[i-1]), rowKey(blocks[i])
		if a >= b {
			t.Fatalf("rowKey(%d)=%s sorts after rowKey(%d)=%s", blocks[i-1], a, blocks[i], b)
		}
		if got, err := parseRowKey(b); err != nil || got != blocks[i] {
			t.Fatalf("parseRowKey(%s) = %d, %v", b, got, err)
		}
	}
}

// loseAnswers is a transport that sends a request, lets the service act on
// it, and then reports a broken connection instead of the answer, for the
// requests pick selects: the ambiguous failure retries must survive.
type loseAnswers struct {
	pick func(*http.Request) bool
	lost atomic.Int64
}

func (l *loseAnswers) Do(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || !l.pick(req) {
		return resp, err
	}
	resp.Body.Close()
	l.lost.Add(1)
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
}

// Answers lost after the service applied a transaction or recorded a
// finding: the retry meets its own write (412, 409) and the result is
// still exactly once.
func TestLostAnswers(t *testing.T) {
	var n atomic.Int64
	tr := &loseAnswers{pick: func(r *http.Request) bool {
		return r.Method == http.MethodPost && n.Add(1)%3 == 0 // every third write
	}}
	s, _ := storeVia(t, testPrefix(), tr, Options{RetryDelay: time.Millisecond})

	evs := events(7, "0", 600, t0, 40*time.Minute)
	mem := state.NewMemory()
	ref := newHarness(t, mem)
	h := newHarness(t, s)
	for _, b := range batches(evs, 100) {
		ref.mustFeed(t, b)
		h.mustFeed(t, b)
	}
	if tr.lost.Load() == 0 {
		t.Fatal("no answer was lost")
	}
	sameState(t, s, mem)
	sameFindings(t, s, mem)

	// A finding whose first insert's answer is lost is still added once.
	ctx := context.Background()
	id := "aa0000000000000000000001"
	n.Store(2) // the next write is the third
	added, err := s.AddFinding(ctx, id, []byte(`{"id":"x"}`))
	if err != nil || !added {
		t.Fatalf("lost answer: added %v, %v; want added once", added, err)
	}
	if added, err := s.AddFinding(ctx, id, []byte(`{"id":"x"}`)); err != nil || added {
		t.Fatalf("again: added %v, %v; want not added", added, err)
	}
	t.Logf("%d answers lost; %d conflicts, %d retries", tr.lost.Load(), s.Stats().Conflicts, s.Stats().Retries)
}

func TestDeadLetters(t *testing.T) {
	s := newStore(t, testPrefix(), Options{})
	ctx := context.Background()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	big := make([]byte, deadletter.MaxRaw) // 1 MiB that does not compress: two entities
	crand.Read(big)
	letters := []deadletter.Letter{
		{At: at, Reason: "record is not JSON", Partition: "3", Sequence: 42, HasSequence: true, Event: 1, Record: 2},
		{At: at, Reason: "binary body", File: "x/PT1H.json", Line: 7, Event: -1, Record: -1},
		{At: at.Add(24 * time.Hour), Reason: "huge", Event: 0, Record: -1},
	}
	letters[0].SetRaw([]byte(`{"not json`))
	letters[1].SetRaw([]byte{0xff, 0xfe, 0, 1})
	letters[2].SetRaw(append(big, "tail"...)) // cut to MaxRaw, Truncated
	sink := s.DeadLetters()
	if err := sink.Put(ctx, letters); err != nil {
		t.Fatal(err)
	}
	if err := sink.Put(ctx, letters); err != nil { // a retried Put stores nothing twice
		t.Fatal(err)
	}
	got, err := sink.List(ctx, at, at.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(letters) {
		t.Fatalf("%d letters read back, want %d", len(got), len(letters))
	}
	for i := range letters {
		w, g := letters[i], got[i]
		if g.Reason != w.Reason || g.Partition != w.Partition || g.Sequence != w.Sequence || g.File != w.File ||
			g.Line != w.Line || g.Event != w.Event || g.Record != w.Record || g.Size != w.Size ||
			g.Truncated != w.Truncated || !g.At.Equal(w.At) || !bytes.Equal(g.Bytes(), w.Bytes()) {
			t.Fatalf("letter %d read back as %+v", i, g)
		}
		if utf8.Valid(w.Bytes()) != (g.Raw != "") {
			t.Fatalf("letter %d: text/binary form lost", i)
		}
	}
	if !got[2].Truncated || got[2].Size != deadletter.MaxRaw+4 {
		t.Fatalf("the huge letter: truncated %v size %d", got[2].Truncated, got[2].Size)
	}
}

func TestTableNames(t *testing.T) {
	for _, p := range []string{"", "kv", "kvwatchProd2"} {
		if _, _, _, err := TableNames(p); err != nil {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	for _, p := range []string{"1kv", "kv-prod", "kv_prod", "kv prod", strings.Repeat("a", 53)} {
		if _, _, _, err := TableNames(p); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

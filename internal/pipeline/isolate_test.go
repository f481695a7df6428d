package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/state"
)

// toyStore is a stage with the store's semantics: one entity per vault and
// per caller, each applying the input positions above its mark, all of
// them at once or none. An entity that would absorb a refused record is
// not written and the whole call fails as unstorable, after the other
// entities were written, as a Table store's independent transactions are.
type toyStore struct {
	mu       sync.Mutex
	refuse   func(e *audit.Event) bool
	applied  map[string]map[string]int64 // entity → stream → position
	counted  map[string]map[string]int   // entity → record id → times counted
	fail     error                       // the next call fails with this, once
	attempts int
}

func newToy(refuse func(*audit.Event) bool) *toyStore {
	return &toyStore{refuse: refuse, applied: map[string]map[string]int64{}, counted: map[string]map[string]int{}}
}

func recID(e *audit.Event) string {
	return fmt.Sprintf("%d/%d", e.Source.Sequence, e.Source.Record)
}

func (t *toyStore) Consume(_ context.Context, events []audit.Event) (pipeline.Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.attempts++
	if err := t.fail; err != nil {
		t.fail = nil
		return pipeline.Result{}, err
	}
	byEntity := map[string][]*audit.Event{}
	var order []string
	for i := range events {
		e := &events[i]
		for _, k := range []string{"vault:" + e.Vault, "caller:" + e.Caller.Key} {
			if byEntity[k] == nil {
				order = append(order, k)
			}
			byEntity[k] = append(byEntity[k], e)
		}
	}
	refused := false
	for _, k := range order {
		evs := byEntity[k]
		bad := false
		for _, e := range evs {
			bad = bad || t.refuse(e)
		}
		if bad {
			refused = true
			continue
		}
		marks := t.applied[k]
		if marks == nil {
			marks = map[string]int64{}
			t.applied[k] = marks
			t.counted[k] = map[string]int{}
		}
		orig := map[string]int64{}
		for s, p := range marks {
			orig[s] = p
		}
		for _, e := range evs {
			s, pos := e.Source.Position()
			if p, ok := orig[s]; ok && pos <= p {
				continue
			}
			t.counted[k][recID(e)]++
			if pos > marks[s] {
				marks[s] = pos
			}
		}
	}
	if refused {
		return pipeline.Result{}, state.Unstorable(errors.New("400 PropertyValueTooLarge"))
	}
	return pipeline.Result{}, nil
}

// batchOf builds a host invocation of events (each a list of records) on
// partition 0 from sequence 100, dataType string, and decodes it.
func batchOf(t *testing.T, events [][]string) *ingest.Batch {
	t.Helper()
	hb := host.Batch{Namespace: "ns.servicebus.windows.net", Hub: "kv", Partition: "0"}
	for i, recs := range events {
		hb.Events = append(hb.Events, host.Event{Body: []byte(`{"records":[` + strings.Join(recs, ",") + `]}`), Sequence: int64(100 + i)})
	}
	body, err := host.Body(hb, host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	var d ingest.Decoder
	b := d.Invocation(body)
	if len(b.Letters) > 0 {
		t.Fatalf("letters: %+v", b.Letters)
	}
	return b
}

func mkrec(sec int, vault, upn string) string {
	return fmt.Sprintf(`{"time":"2026-11-23T10:00:%02dZ","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":"SecretGet","correlationId":"c%d","identity":{"claim":{"upn":%q}},"properties":{"httpStatusCode":200}}`,
		sec, vault, sec, upn)
}

// Every good record is counted exactly once by every entity it touches;
// the refused ones by none of the entities they would break.
func checkOnce(t *testing.T, toy *toyStore, b *ingest.Batch, refused map[string]bool) {
	t.Helper()
	for i := range b.Events {
		e := &b.Events[i]
		id := recID(e)
		for _, k := range []string{"vault:" + e.Vault, "caller:" + e.Caller.Key} {
			n := toy.counted[k][id]
			switch {
			case refused[id] && n > 1, !refused[id] && n != 1:
				t.Errorf("record %s (%s) counted %d times by %s", id, e.Caller.Key, n, k)
			}
		}
	}
}

func TestUnstorableRecordIsIsolated(t *testing.T) {
	poison := "evil" + strings.Repeat("p", 5000) + "@x" // cut at normalization, still refused
	b := batchOf(t, [][]string{
		{mkrec(1, "KVA", "a@x"), mkrec(2, "KVB", "b@x")},
		{mkrec(3, "KVA", "c@x"), mkrec(4, "KVA", poison), mkrec(5, "KVB", "d@x")}, // sequence 101: poison is record 1
		{mkrec(6, "KVA", "e@x")},
		{mkrec(7, "KVB", "f@x"), mkrec(8, "KVA", "g@x")},
	})
	toy := newToy(func(e *audit.Event) bool { return strings.HasPrefix(e.Caller.UPN, "evil") })
	letters := &deadletter.Memory{}
	p := &pipeline.Pipeline{Letters: letters, Next: toy}
	sum, err := p.Process(context.Background(), b)
	if err != nil {
		t.Fatalf("the batch failed: %v", err)
	}
	ls := letters.Letters()
	if len(ls) != 1 || sum.Isolated != 1 || sum.Stats.DeadLettered != 1 {
		t.Fatalf("%d letters, summary %+v: want exactly the refused record", len(ls), sum)
	}
	l := ls[0]
	if l.Partition != "0" || !l.HasSequence || l.Sequence != 101 || l.Event != 1 || l.Record != 1 {
		t.Fatalf("letter at partition %q sequence %d event %d record %d", l.Partition, l.Sequence, l.Event, l.Record)
	}
	if !bytes.Equal(l.Bytes(), []byte(mkrec(4, "KVA", poison))) {
		t.Fatalf("letter raw %.120q, want the record's bytes", l.Bytes())
	}
	if !strings.Contains(l.Reason, "PropertyValueTooLarge") || !strings.Contains(sum.String(), "1 could not be stored") {
		t.Fatalf("reason %q, summary %q", l.Reason, sum.String())
	}
	// The entity the poison broke counted the rest of its event, after it.
	checkOnce(t, toy, b, map[string]bool{"101/1": true})

	// Redelivered (a lost checkpoint): nothing counted twice.
	b2 := batchOf(t, [][]string{
		{mkrec(1, "KVA", "a@x"), mkrec(2, "KVB", "b@x")},
		{mkrec(3, "KVA", "c@x"), mkrec(4, "KVA", poison), mkrec(5, "KVB", "d@x")},
		{mkrec(6, "KVA", "e@x")},
		{mkrec(7, "KVB", "f@x"), mkrec(8, "KVA", "g@x")},
	})
	if _, err := p.Process(context.Background(), b2); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, toy, b2, map[string]bool{"101/1": true})
}

// A refused record that is not the largest of its event: the largest goes
// first, and with the refused one when the rest still fails. Records of
// other events are never taken.
func TestUnstorableRecordNotLargest(t *testing.T) {
	big := strings.Repeat("b", 3000) + "@x"
	b := batchOf(t, [][]string{
		{mkrec(1, "KVA", "a@x")},
		{mkrec(2, "KVA", big), mkrec(3, "KVA", "evil@x"), mkrec(4, "KVB", "c@x")},
		{mkrec(5, "KVB", "d@x")},
	})
	toy := newToy(func(e *audit.Event) bool { return strings.HasPrefix(e.Caller.UPN, "evil") })
	letters := &deadletter.Memory{}
	p := &pipeline.Pipeline{Letters: letters, Next: toy}
	if _, err := p.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for _, l := range letters.Letters() {
		if l.Sequence != 101 {
			t.Fatalf("a record of sequence %d was dead-lettered", l.Sequence)
		}
		got[l.Record] = true
	}
	if len(got) != 2 || !got[0] || !got[1] {
		t.Fatalf("letters for records %v of sequence 101, want 0 (largest, tried first) and 1 (refused)", got)
	}
	checkOnce(t, toy, b, map[string]bool{"101/0": true, "101/1": true})
}

// A failure a retry can cure still fails the batch; the retry applies it once.
func TestTransientFailureFailsTheBatch(t *testing.T) {
	events := [][]string{{mkrec(1, "KVA", "a@x"), mkrec(2, "KVB", "b@x")}, {mkrec(3, "KVA", "c@x")}}
	toy := newToy(func(*audit.Event) bool { return false })
	toy.fail = errors.New("503 ServerBusy")
	letters := &deadletter.Memory{}
	p := &pipeline.Pipeline{Letters: letters, Next: toy}
	if _, err := p.Process(context.Background(), batchOf(t, events)); err == nil {
		t.Fatal("a transient failure did not fail the batch")
	}
	b := batchOf(t, events)
	if _, err := p.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(letters.Letters()) != 0 {
		t.Fatal("a transient failure dead-lettered records")
	}
	checkOnce(t, toy, b, nil)
}

// A store that refuses everything: every record dead-lettered, the batch
// answered, in about twice as many attempts as events.
func TestEverythingRefused(t *testing.T) {
	var events [][]string
	for i := range 16 {
		events = append(events, []string{mkrec(i, "KVA", fmt.Sprintf("evil%d@x", i))})
	}
	toy := newToy(func(*audit.Event) bool { return true })
	letters := &deadletter.Memory{}
	p := &pipeline.Pipeline{Letters: letters, Next: toy}
	if _, err := p.Process(context.Background(), batchOf(t, events)); err != nil {
		t.Fatal(err)
	}
	if n := len(letters.Letters()); n != 16 {
		t.Fatalf("%d letters, want 16", n)
	}
	if toy.attempts > 2*16 {
		t.Fatalf("%d attempts for 16 events", toy.attempts)
	}
}

package tablestore

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	jsonv2 "github.com/go-json-experiment/json"

	"github.com/kvwatch/kvwatch/internal/state"
)

// snapshotSample is a view of n window entities of one shape, with the
// kinds of values detection and statistics store (sorted and odd strings,
// spans, tallies, negative and large keys).
func snapshotSample(n int) snapshotData {
	r := rand.New(rand.NewPCG(3, 4))
	sd := snapshotData{Cut: map[string]int64{"p:ns/hub/0": 42, "f:blob/PT1H.json": 7}}
	for i := range n {
		e := &state.Entity{Applied: map[string]int64{"p:ns/hub/0": int64(i), "p:ns/hub/1": 5}, Counts: map[int64]int64{},
			Counts2: map[int64]int64{-1: 3}, Values: map[int64][]string{29923740: {"a", "b\x1fc", "ü\u2028", `q"'<>&`}},
			Seen:  map[string]state.Span{fmt.Sprintf("10.0.%d.%d", i%7, i%251): {First: int64(i), Last: int64(i + r.IntN(99))}},
			Tally: map[string]int64{"f|secret|success": int64(i)}, First: 1764000000 + int64(i)}
		for k := range 30 {
			e.Counts[int64(29923740+k)] = int64(k * r.IntN(9))
		}
		sd.Items = append(sd.Items, snapshotItem{K: state.Key{Rule: "burst", Group: fmt.Sprintf("kv%d\x1fcaller-%d", i%20, i), Block: int64(498729 - i%3)}, E: e})
	}
	return sd
}

// The journal reads with go-json-experiment/json what it wrote with
// encoding/json: both decoders give the same view.
func TestJournalJSONDecoders(t *testing.T) {
	sd := snapshotSample(300)
	js, err := json.Marshal(&sd)
	if err != nil {
		t.Fatal(err)
	}
	var a, b snapshotData
	if err := json.Unmarshal(js, &a); err != nil {
		t.Fatal(err)
	}
	if err := jsonv2.Unmarshal(js, &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(&a)
	jb, _ := json.Marshal(&b)
	if string(ja) != string(jb) || string(ja) != string(js) {
		t.Fatal("encoding/json and go-json-experiment/json read the snapshot differently")
	}
	d := state.Diff(sd.Items[0].E, sd.Items[1].E)
	items := []journalItem{{K: sd.Items[0].K, D: d}, {K: sd.Items[1].K, Drop: true}}
	js, _ = json.Marshal(items)
	var ia, ib []journalItem
	json.Unmarshal(js, &ia)
	if err := jsonv2.Unmarshal(js, &ib); err != nil {
		t.Fatal(err)
	}
	ja, _ = json.Marshal(ia)
	jb, _ = json.Marshal(ib)
	if string(ja) != string(jb) {
		t.Fatalf("log entries read differently:\n%s\n%s", ja, jb)
	}
}

// The journal's hand-written reader (state.JSONDecoder) makes of snapshots
// and log entries exactly what jsonv2.Unmarshal does, and reads the state
// of two values that differ only in invalid UTF-8 (written as the same
// name), which Unmarshal refuses.
func TestJournalDecoders(t *testing.T) {
	sd := snapshotSample(300)
	sd.Items = append(sd.Items, snapshotItem{K: state.Key{Rule: "r", Group: "\xff<\n>", Block: -1}}) // nil entity
	sd.Tombs = []snapshotTomb{{K: state.Key{Rule: "burst", Group: "kv1\x1fc<&>", Block: 498720}, At: 1796000000}, {K: state.Key{Rule: "r"}}}
	js, err := json.Marshal(&sd)
	if err != nil {
		t.Fatal(err)
	}
	var want snapshotData
	if err := jsonv2.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	var rd reader
	got, err := rd.snapshot(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("the snapshot reader and jsonv2.Unmarshal differ")
	}
	for _, empty := range []string{`{}`, `{"cut":null,"items":null}`, `{"cut":{},"items":[]}`, `{"tombs":[]}`, `{"tombs":null}`} {
		var want snapshotData
		jsonv2.Unmarshal([]byte(empty), &want)
		if got, err := rd.snapshot(bytes.NewReader([]byte(empty))); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %#v, %v; Unmarshal: %#v", empty, got, err, want)
		}
	}
	var items []journalItem
	for i := 1; i < len(sd.Items)-1; i++ {
		items = append(items, journalItem{K: sd.Items[i].K, D: state.Diff(sd.Items[i-1].E, sd.Items[i].E)})
		if i%7 == 0 {
			items = append(items, journalItem{K: sd.Items[i].K, Drop: true})
		}
	}
	js = appendJournalItems(&state.JSONEncoder{}, nil, items)
	var wantItems []journalItem
	if err := jsonv2.Unmarshal(js, &wantItems); err != nil {
		t.Fatal(err)
	}
	gotItems, err := rd.items(js)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotItems, wantItems) {
		t.Fatal("the log entry reader and jsonv2.Unmarshal differ")
	}
	// "caller\xfe" and "caller\xff" are both written "caller\ufffd".
	e := &state.Entity{Seen: map[string]state.Span{"caller\xfe": {First: 1, Last: 2}, "caller\xff": {First: 3, Last: 4}}, Tally: map[string]int64{"a\xfe": 1, "a\xff": 2}}
	js = appendJournalItems(&state.JSONEncoder{}, nil, []journalItem{{K: state.Key{Rule: "r"}, D: state.Diff(nil, e)}})
	if err := jsonv2.Unmarshal(js, &wantItems); err == nil {
		t.Fatal("jsonv2.Unmarshal read duplicate names")
	}
	gotItems, err = rd.items(js)
	if err != nil {
		t.Fatalf("log entry with names written twice: %v", err)
	}
	if d := gotItems[0].D; len(d.Seen) != 1 || len(d.Tally) != 1 {
		t.Fatalf("read %+v", d)
	}
	for _, bad := range []string{``, `[`, `[{"k":{"Block":"x"}}]`, `[{"d":{"c":{"x":1}}}]`, `[] []`, `{}`} {
		if _, err := rd.items([]byte(bad)); err == nil {
			t.Errorf("log entry %q read without error", bad)
		}
	}
}

// BenchmarkSnapshotDecode: why the journal reads by hand (reader), on
// jsontext, rather than with go-json-experiment's Unmarshal or encoding/json.
func BenchmarkSnapshotDecode(b *testing.B) {
	sd := snapshotSample(20000)
	js, _ := json.Marshal(&sd)
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			var x snapshotData
			if err := json.Unmarshal(js, &x); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-json-experiment", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			var x snapshotData
			if err := jsonv2.Unmarshal(js, &x); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reader", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			var rd reader
			if _, err := rd.snapshot(bytes.NewReader(js)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The journal's hand-written JSON is byte for byte encoding/json's, for
// snapshots and log entries (state.FuzzJSONEncoder checks entities and
// deltas of every shape).
func TestJournalEncoders(t *testing.T) {
	sd := snapshotSample(300)
	sd.Items = append(sd.Items, snapshotItem{K: state.Key{Rule: "r", Group: "\xff<\n>", Block: -1}}) // nil entity
	sd.Tombs = []snapshotTomb{{K: state.Key{Rule: "burst", Group: "kv1\x1fc<&>", Block: 498720}, At: 1796000000}, {K: state.Key{Rule: "r"}}}
	want, err := json.Marshal(&sd)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := encodeSnapshot(&got, &sd); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Fatal("the snapshot encoder and encoding/json differ")
	}
	for _, empty := range []snapshotData{{}, {Cut: map[string]int64{}, Items: []snapshotItem{}}} {
		want, _ := json.Marshal(&empty)
		got.Reset()
		encodeSnapshot(&got, &empty)
		if got.String() != string(want) {
			t.Fatalf("empty snapshot: %s, encoding/json %s", got.String(), want)
		}
	}
	var items []journalItem
	for i := 1; i < len(sd.Items)-1; i++ {
		items = append(items, journalItem{K: sd.Items[i].K, D: state.Diff(sd.Items[i-1].E, sd.Items[i].E)})
		if i%7 == 0 {
			items = append(items, journalItem{K: sd.Items[i].K, Drop: true})
		}
	}
	want, _ = json.Marshal(items)
	if got := appendJournalItems(&state.JSONEncoder{}, nil, items); string(got) != string(want) {
		t.Fatalf("log entry encoder and encoding/json differ:\n%s\n%s", got, want)
	}
	entries, err := packEntries(&jsonBuf{}, items)
	if err != nil {
		t.Fatal(err)
	}
	var all []journalItem
	for _, e := range entries {
		js, err := unpackBytes(e)
		if err != nil {
			t.Fatal(err)
		}
		var part []journalItem
		if err := jsonv2.Unmarshal(js, &part); err != nil {
			t.Fatal(err)
		}
		all = append(all, part...)
	}
	if js, _ := json.Marshal(all); string(js) != string(want) {
		t.Fatal("packed log entries read back differently")
	}
}

// marshalEDM writes what json.Marshal writes for a log entry's row.
func TestMarshalEDM(t *testing.T) {
	props := map[string]any{}
	if err := putChunks(props, packBytes(bytes.Repeat([]byte(`{"k":1}`), 30000), true)); err != nil {
		t.Fatal(err)
	}
	props[propStream] = "p:ns/hub/<0>\x1f\"\xff"
	props[propIndex] = aztables.EDMInt64(-3)
	e := aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "j-x", RowKey: entryRK(7)}, Properties: props}
	want, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := marshalEDM(e)
	if err != nil || string(got) != string(want) {
		t.Fatalf("marshalEDM differs from json.Marshal (%v)", err)
	}
}

// BenchmarkSnapshotEncode: a compaction's encoding of a view of 20,000
// entities, encoding/json then deflate (as before) against the
// hand-written encoder streaming into deflate, in the same loop; ratio is
// the first's time over the second's.
func BenchmarkSnapshotEncode(b *testing.B) {
	sd := snapshotSample(20000)
	var tOld, tNew time.Duration
	var size int
	for b.Loop() {
		t0 := time.Now()
		js, err := json.Marshal(&sd)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestSpeed)
		w.Write(js)
		w.Close()
		t1 := time.Now()
		var buf2 bytes.Buffer
		w2 := deflaters.Get().(*flate.Writer)
		w2.Reset(&buf2)
		if err := encodeSnapshot(w2, &sd); err != nil {
			b.Fatal(err)
		}
		w2.Close()
		deflaters.Put(w2)
		t2 := time.Now()
		tOld += t1.Sub(t0)
		tNew += t2.Sub(t1)
		size = buf2.Len()
		if buf.Len() != buf2.Len() {
			b.Fatalf("deflated sizes differ: %d and %d", buf.Len(), buf2.Len())
		}
	}
	b.ReportMetric(float64(tOld.Microseconds())/float64(b.N), "json-µs/op")
	b.ReportMetric(float64(tNew.Microseconds())/float64(b.N), "encoder-µs/op")
	b.ReportMetric(tOld.Seconds()/tNew.Seconds(), "ratio")
	b.ReportMetric(float64(size), "deflated-bytes")
}

// BenchmarkJournalRound: what Journal.write and commit do to a batch of
// 500 entities before the transaction (copy each view entity, apply a
// detection-like change, diff, encode and pack the log entry), as before
// (a deep Clone, encoding/json) and now (state.CloneForUpdate, the
// hand-written encoder), in the same loop; ratio is the first's time over
// the second's.
func BenchmarkJournalRound(b *testing.B) {
	sd := snapshotSample(500)
	for i, it := range sd.Items { // buckets of distinct values, as windows keep
		for s := range 6 {
			var vs []string
			for v := range 20 {
				vs = append(vs, fmt.Sprintf("caller-%04d-%02d", (i+v*7)%1000, s))
			}
			slices.Sort(vs)
			it.E.Values[int64(29923700+s)] = vs
		}
	}
	fn := func(k state.Key, e *state.Entity) bool {
		e.MarkApplied("p:ns/hub/0", e.Applied["p:ns/hub/0"]+1)
		e.Counts[29923769]++
		vs := e.Values[29923740]
		if i, found := slices.BinarySearch(vs, k.Group); !found {
			e.Values[29923740] = slices.Insert(vs, i, k.Group)
		}
		return true
	}
	round := func(clone func(*state.Entity) *state.Entity, pack func([]journalItem) ([][]byte, error)) {
		var items []journalItem
		for _, it := range sd.Items {
			e := clone(it.E)
			if fn(it.K, e) {
				if d := state.Diff(it.E, e); d != nil {
					items = append(items, journalItem{K: it.K, D: d})
				}
			}
		}
		if _, err := pack(items); err != nil {
			b.Fatal(err)
		}
	}
	oldPack := func(items []journalItem) ([][]byte, error) {
		js, err := json.Marshal(items)
		return [][]byte{packBytes(js, true)}, err
	}
	var tOld, tNew time.Duration
	var enc jsonBuf // a stream writer's
	for b.Loop() {
		t0 := time.Now()
		round((*state.Entity).Clone, oldPack)
		t1 := time.Now()
		round(state.CloneForUpdate, func(items []journalItem) ([][]byte, error) { return packEntries(&enc, items) })
		tOld += t1.Sub(t0)
		tNew += time.Since(t1)
	}
	b.ReportMetric(float64(tOld.Microseconds())/float64(b.N), "old-µs/op")
	b.ReportMetric(float64(tNew.Microseconds())/float64(b.N), "new-µs/op")
	b.ReportMetric(tOld.Seconds()/tNew.Seconds(), "ratio")
}

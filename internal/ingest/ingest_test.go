package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/deadletter"
)

const testRecordsDir = "../../testdata/records"

// testNow stamps dead letters in tests.
var testNow = time.Date(2024, 5, 14, 9, 30, 0, 0, time.UTC)

func newDecoder() *Decoder {
	return &Decoder{Now: func() time.Time { return testNow }}
}

// fixture returns a fixture record from testdata/records, compacted to one
// line as Azure Monitor writes it.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testRecordsDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return buf.Bytes()
}

// allFixtures returns every fixture record, compacted, in file order.
func allFixtures(t testing.TB) [][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(testRecordsDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	out := make([][]byte, len(paths))
	for i, p := range paths {
		out[i] = fixture(t, strings.TrimSuffix(filepath.Base(p), ".json"))
	}
	return out
}

// envelope is one Event Hubs event body: {"records":[...]}.
func envelope(records ...[]byte) []byte {
	return []byte(`{"records":[` + string(bytes.Join(records, []byte(","))) + `]}`)
}

// jsonString encodes s as a JSON string.
func jsonString(s []byte) []byte {
	b, err := json.Marshal(string(s))
	if err != nil {
		panic(err)
	}
	return b
}

// Shapes of Data.<binding>, as functions-host.md lists them.
const (
	shapeStringOfObjects = "string-of-objects" // no dataType: a JSON string holding [{...}, ...]
	shapeStringOfStrings = "string-of-strings" // dataType string: a JSON string holding ["<body>", ...]
	shapeStringOfBase64  = "string-of-base64"  // dataType binary: a JSON string holding ["<base64>", ...]
	shapeArrayOfObjects  = "array-of-objects"  // a plain JSON array of event objects
	shapeArrayOfStrings  = "array-of-strings"  // a plain JSON array of body strings
	shapeSingleObject    = "single-object"     // one event object (cardinality one)
)

var allShapes = []string{shapeStringOfObjects, shapeStringOfStrings, shapeStringOfBase64,
	shapeArrayOfObjects, shapeArrayOfStrings, shapeSingleObject}

// eventsValue builds Data.<binding> for the bodies in the given shape. The
// object shapes need every body to be valid JSON.
func eventsValue(shape string, bodies [][]byte) []byte {
	strs := func(enc func([]byte) []byte) []byte {
		parts := make([][]byte, len(bodies))
		for i, b := range bodies {
			parts[i] = enc(b)
		}
		return []byte("[" + string(bytes.Join(parts, []byte(","))) + "]")
	}
	objects := []byte("[" + string(bytes.Join(bodies, []byte(","))) + "]")
	switch shape {
	case shapeStringOfObjects:
		return jsonString(objects)
	case shapeStringOfStrings:
		return jsonString(strs(jsonString))
	case shapeStringOfBase64:
		return jsonString(strs(func(b []byte) []byte {
			return jsonString([]byte(base64.StdEncoding.EncodeToString(b)))
		}))
	case shapeArrayOfObjects:
		return objects
	case shapeArrayOfStrings:
		return strs(jsonString)
	case shapeSingleObject:
		if len(bodies) != 1 {
			panic("single-object shape takes one body")
		}
		return bodies[0]
	}
	panic("unknown shape " + shape)
}

// meta describes the Metadata of a test invocation.
type meta struct {
	seqs     []int64
	enqueued []string // as the host writes them: UTC, no zone suffix
	asString bool     // arrays as JSON-encoded strings (the host's way) or plain arrays
	retry    int      // > 0 adds RetryContext
	noPart   bool     // leave PartitionContext out
}

const (
	testNamespace = "kvwatch-prod.servicebus.windows.net"
	testHub       = "insights-logs-auditevent"
	testGroup     = "kvwatch"
	testPartition = "3"
)

// metadata builds the invocation's Metadata object.
func (m meta) metadata() map[string]any {
	arr := func(v any) any {
		if !m.asString {
			return v
		}
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	md := map[string]any{
		"sys": map[string]any{
			"MethodName": "AuditEvents",
			"UtcNow":     "2024-05-14T09:29:59.8812345Z",
			"RandGuid":   "0f8fad5b-d9cb-469f-a165-70867728950e",
		},
		"CheckpointContext": map[string]any{"SomethingNew": 1}, // unknown keys are ignored
	}
	if !m.noPart {
		md["PartitionContext"] = map[string]any{
			"FullyQualifiedNamespace":        testNamespace,
			"EventHubName":                   testHub,
			"ConsumerGroup":                  testGroup,
			"PartitionId":                    testPartition,
			"IsCheckpointingAfterInvocation": true,
		}
	}
	if m.seqs != nil {
		md["SequenceNumberArray"] = arr(m.seqs)
		offsets := make([]string, len(m.seqs))
		keys := make([]any, len(m.seqs))
		props := make([]map[string]any, len(m.seqs))
		for i, s := range m.seqs {
			offsets[i] = fmt.Sprint(4096 * s)
			props[i] = map[string]any{}
		}
		md["OffsetArray"] = arr(offsets)
		md["PartitionKeyArray"] = arr(keys)
		md["PropertiesArray"] = arr(props)
		md["SystemPropertiesArray"] = arr(props)
	}
	if m.enqueued != nil {
		md["EnqueuedTimeUtcArray"] = arr(m.enqueued)
	}
	if m.retry > 0 {
		md["RetryContext"] = map[string]any{
			"RetryCount":    m.retry,
			"MaxRetryCount": -1,
			"Exception":     map[string]any{"Message": "Exception while executing function: Functions.AuditEvents"},
		}
	}
	return md
}

// invocationBody builds a host invocation body.
func invocationBody(binding string, events []byte, m meta) []byte {
	b, err := json.Marshal(map[string]any{
		"Data":     map[string]any{binding: json.RawMessage(events)},
		"Metadata": m.metadata(),
	})
	if err != nil {
		panic(err)
	}
	return b
}

// wantEvent is what a test expects of one event.
type wantEvent struct {
	op       string
	event    int
	record   int
	seq      int64 // -1: no sequence number
	enqueued string
}

func checkEvents(t *testing.T, got []audit.Event, want []wantEvent, partition string) {
	t.Helper()
	if len(got) != len(want) {
		ops := make([]string, len(got))
		for i, e := range got {
			ops[i] = e.Operation
		}
		t.Fatalf("%d events %v, want %d", len(got), ops, len(want))
	}
	for i, w := range want {
		e := got[i]
		s := e.Source
		if e.Operation != w.op || s.Event != w.event || s.Record != w.record || s.Partition != partition {
			t.Errorf("event %d: %s at partition %q event %d record %d, want %s at %q event %d record %d",
				i, e.Operation, s.Partition, s.Event, s.Record, w.op, partition, w.event, w.record)
		}
		if w.seq < 0 {
			if s.HasSequence || s.Sequence != 0 {
				t.Errorf("event %d: sequence %d (has %v), want none", i, s.Sequence, s.HasSequence)
			}
		} else if !s.HasSequence || s.Sequence != w.seq {
			t.Errorf("event %d: sequence %d (has %v), want %d", i, s.Sequence, s.HasSequence, w.seq)
		}
		var enq time.Time
		if w.enqueued != "" {
			enq = mustTime(t, w.enqueued)
		}
		if !s.Enqueued.Equal(enq) {
			t.Errorf("event %d: enqueued %v, want %v", i, s.Enqueued, enq)
		}
		if s.File != "" || s.Line != 0 {
			t.Errorf("event %d: file position %s:%d in an invocation", i, s.File, s.Line)
		}
	}
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func checkStats(t *testing.T, got, want Stats) {
	t.Helper()
	if got != want {
		t.Errorf("stats\n got %+v\nwant %+v", got, want)
	}
}

// checkInvariants holds for every batch whatever the input.
func checkInvariants(t testing.TB, b *Batch) {
	t.Helper()
	if b.Stats.Accepted != len(b.Events) {
		t.Fatalf("Stats.Accepted %d, %d events", b.Stats.Accepted, len(b.Events))
	}
	if b.Stats.DeadLettered != len(b.Letters) {
		t.Fatalf("Stats.DeadLettered %d, %d letters", b.Stats.DeadLettered, len(b.Letters))
	}
	if b.Stats.Skipped != b.Stats.Metrics+b.Stats.Categories+b.Stats.Resources {
		t.Fatalf("Stats.Skipped %d is not the sum of its parts: %+v", b.Stats.Skipped, b.Stats)
	}
	if b.Stats.Records < b.Stats.Accepted+b.Stats.Skipped {
		t.Fatalf("more records accepted or skipped than read: %+v", b.Stats)
	}
	if len(b.Problems) > maxProblems+1 {
		t.Fatalf("%d problem lines, at most %d kept", len(b.Problems), maxProblems+1)
	}
	for i, e := range b.Events {
		if e.Time.IsZero() || e.Operation == "" {
			t.Fatalf("event %d has no time or no operation: %+v", i, e)
		}
	}
	for i, l := range b.Letters {
		if l.Reason == "" || !l.At.Equal(testNow) {
			t.Fatalf("letter %d: reason %q at %v", i, l.Reason, l.At)
		}
	}
}

// The batch most tests send: three events, five records.
func standardBodies(t testing.TB) [][]byte {
	return [][]byte{
		envelope(fixture(t, "secret-get"), fixture(t, "key-sign")),
		envelope(fixture(t, "vault-put")),
		envelope(fixture(t, "skip-metric"), fixture(t, "failure-403-forbidden")),
	}
}

var (
	standardSeqs     = []int64{1000, 1001, 1002}
	standardEnqueued = []string{"2024-05-14T09:21:00.1234567", "2024-05-14T09:21:00.2", "2024-05-14T09:21:01"}
	standardWant     = []wantEvent{
		{"SecretGet", 0, 0, 1000, "2024-05-14T09:21:00.1234567Z"},
		{"KeySign", 0, 1, 1000, "2024-05-14T09:21:00.1234567Z"},
		{"VaultPut", 1, 0, 1001, "2024-05-14T09:21:00.2Z"},
		{"SecretGet", 2, 1, 1002, "2024-05-14T09:21:01Z"},
	}
	standardStats = Stats{Events: 3, Records: 5, Accepted: 4, Skipped: 1, Metrics: 1}
)

func TestInvocationShapes(t *testing.T) {
	for _, shape := range allShapes {
		for _, asString := range []bool{true, false} {
			name := shape + "/metadata-plain-arrays"
			if asString {
				name = shape + "/metadata-json-strings"
			}
			t.Run(name, func(t *testing.T) {
				bodies, seqs, enq := standardBodies(t), standardSeqs, standardEnqueued
				want, stats := standardWant, standardStats
				if shape == shapeSingleObject {
					bodies, seqs, enq = bodies[:1], seqs[:1], enq[:1]
					want, stats = want[:2], Stats{Events: 1, Records: 2, Accepted: 2}
				}
				m := meta{seqs: seqs, enqueued: enq, asString: asString, retry: 2}
				b := newDecoder().Invocation(invocationBody("events", eventsValue(shape, bodies), m))
				checkInvariants(t, b)
				checkStats(t, b.Stats, stats)
				checkEvents(t, b.Events, want, testPartition)
				if len(b.Letters) != 0 || len(b.Problems) != 0 {
					t.Errorf("letters %+v, problems %q", b.Letters, b.Problems)
				}
				wantPart := PartitionContext{FullyQualifiedNamespace: testNamespace, EventHubName: testHub,
					ConsumerGroup: testGroup, PartitionID: testPartition}
				if b.Partition != wantPart {
					t.Errorf("partition %+v, want %+v", b.Partition, wantPart)
				}
				for i := range b.Events {
					s := &b.Events[i].Source
					if stream, _ := s.Position(); s.Namespace != testNamespace || s.Hub != testHub ||
						stream != "p:"+testNamespace+"/"+testHub+"/"+testPartition {
						t.Fatalf("event %d: namespace %q hub %q stream %q, want the partition context's", i, s.Namespace, s.Hub, stream)
					}
				}
				if b.Retry == nil || b.Retry.RetryCount != 2 || b.Retry.MaxRetryCount != -1 {
					t.Errorf("retry %+v, want count 2 of -1", b.Retry)
				}
			})
		}
	}
}

// The host's JSON parse (no dataType) may rewrite date-looking strings;
// the same instant must come out.
func TestInvocationRewrittenDates(t *testing.T) {
	rec := bytes.Replace(fixture(t, "secret-get"), []byte(`"2024-05-14T09:20:15.9036127Z"`),
		[]byte(`"2024-05-14T11:20:15.9036127+02:00"`), 1)
	body := invocationBody("events", eventsValue(shapeStringOfObjects, [][]byte{envelope(rec)}),
		meta{seqs: []int64{7}, enqueued: []string{"2024-05-14T09:21:00"}, asString: true})
	b := newDecoder().Invocation(body)
	checkInvariants(t, b)
	if len(b.Events) != 1 || !b.Events[0].Time.Equal(mustTime(t, "2024-05-14T09:20:15.9036127Z")) {
		t.Fatalf("events %+v", b.Events)
	}
}

func TestInvocationNoRetryContext(t *testing.T) {
	body := invocationBody("events", eventsValue(shapeStringOfStrings, standardBodies(t)),
		meta{seqs: standardSeqs, enqueued: standardEnqueued, asString: true})
	b := newDecoder().Invocation(body)
	checkInvariants(t, b)
	if b.Retry != nil {
		t.Errorf("retry %+v without RetryContext", b.Retry)
	}
	checkEvents(t, b.Events, standardWant, testPartition)
}

// A malformed event body among good ones costs that body only: one letter
// with its partition, sequence number and bytes.
func TestInvocationMalformedBody(t *testing.T) {
	bad := [][]byte{
		[]byte(`{"records":[{"time":"2024-05-14T09:20:15Z","operationName":"SecretGet",`), // truncated
		[]byte(`this is not JSON`),
		[]byte(`{"records":[` + string(fixture(t, "secret-get")) + `]`), // unclosed object
		[]byte(`{"records":[}`),                                         // bracket mismatch
	}
	for _, shape := range []string{shapeStringOfStrings, shapeStringOfBase64, shapeArrayOfStrings} {
		for bi, badBody := range bad {
			t.Run(fmt.Sprintf("%s/%d", shape, bi), func(t *testing.T) {
				good := standardBodies(t)
				bodies := [][]byte{good[0], badBody, good[1], good[2]}
				seqs := []int64{1000, 1001, 1002, 1003}
				enq := []string{"2024-05-14T09:21:00", "2024-05-14T09:21:01", "2024-05-14T09:21:02", "2024-05-14T09:21:03"}
				b := newDecoder().Invocation(invocationBody("events", eventsValue(shape, bodies),
					meta{seqs: seqs, enqueued: enq, asString: true}))
				checkInvariants(t, b)
				if len(b.Letters) != 1 {
					t.Fatalf("%d letters, want 1: %+v", len(b.Letters), b.Letters)
				}
				l := b.Letters[0]
				if l.Partition != testPartition || !l.HasSequence || l.Sequence != 1001 || l.Event != 1 || l.Record != -1 {
					t.Errorf("letter at partition %q sequence %d (has %v) event %d record %d, want %s/1001 event 1 record -1",
						l.Partition, l.Sequence, l.HasSequence, l.Event, l.Record, testPartition)
				}
				// Base64 bodies that do not decode as JSON are kept as they came.
				if got := l.Bytes(); !bytes.Equal(got, badBody) && !(shape == shapeStringOfBase64 &&
					string(got) == base64.StdEncoding.EncodeToString(badBody)) {
					t.Errorf("letter raw %q, want %q", got, badBody)
				}
				if l.Size != len(l.Bytes()) || l.Truncated {
					t.Errorf("letter size %d truncated %v for %d bytes", l.Size, l.Truncated, len(l.Bytes()))
				}
				if b.Stats.DeadLettered != 1 || len(b.Problems) == 0 {
					t.Errorf("stats %+v problems %q", b.Stats, b.Problems)
				}
				want := []wantEvent{
					{"SecretGet", 0, 0, 1000, "2024-05-14T09:21:00Z"},
					{"KeySign", 0, 1, 1000, "2024-05-14T09:21:00Z"},
					{"VaultPut", 2, 0, 1002, "2024-05-14T09:21:02Z"},
					{"SecretGet", 3, 1, 1003, "2024-05-14T09:21:03Z"},
				}
				// A body broken after its first records yields none of them:
				// the whole body is in the letter, so replaying it later
				// cannot count them twice.
				checkEvents(t, b.Events, want, testPartition)
			})
		}
	}
}

// One bad record in a good body is dead-lettered alone, with its index.
func TestInvocationMalformedRecord(t *testing.T) {
	missing, err := os.ReadFile("../../testdata/malformed/time-missing.json")
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, missing); err != nil {
		t.Fatal(err)
	}
	numberOp := bytes.Replace(fixture(t, "key-get"), []byte(`"operationName":"KeyGet"`), []byte(`"operationName":42`), 1)
	bodies := [][]byte{
		envelope(fixture(t, "secret-get"), compact.Bytes(), fixture(t, "key-sign")),
		envelope(numberOp, fixture(t, "vault-put")),
	}
	for _, shape := range allShapes[:5] {
		t.Run(shape, func(t *testing.T) {
			b := newDecoder().Invocation(invocationBody("events", eventsValue(shape, bodies),
				meta{seqs: []int64{50, 51}, asString: true}))
			checkInvariants(t, b)
			checkStats(t, b.Stats, Stats{Events: 2, Records: 5, Accepted: 3, DeadLettered: 2})
			checkEvents(t, b.Events, []wantEvent{
				{"SecretGet", 0, 0, 50, ""}, {"KeySign", 0, 2, 50, ""}, {"VaultPut", 1, 1, 51, ""},
			}, testPartition)
			if len(b.Letters) != 2 {
				t.Fatalf("letters %+v", b.Letters)
			}
			for i, w := range []struct {
				seq           int64
				event, rec    int
				raw, inReason string
			}{
				{50, 0, 1, compact.String(), "time"},
				{51, 1, 0, string(numberOp), "operationName"},
			} {
				l := b.Letters[i]
				if l.Sequence != w.seq || !l.HasSequence || l.Event != w.event || l.Record != w.rec ||
					l.Partition != testPartition || string(l.Bytes()) != w.raw || !strings.Contains(l.Reason, w.inReason) {
					t.Errorf("letter %d: %+v\nwant sequence %d event %d record %d, reason about %s, raw %s",
						i, l, w.seq, w.event, w.rec, w.inReason, w.raw)
				}
			}
		})
	}
}

// An event body that is a single record (no envelope) is read as one.
func TestInvocationBareRecord(t *testing.T) {
	body := invocationBody("events", eventsValue(shapeStringOfStrings, [][]byte{fixture(t, "secret-get")}),
		meta{seqs: []int64{9}, asString: true})
	b := newDecoder().Invocation(body)
	checkInvariants(t, b)
	checkStats(t, b.Stats, Stats{Events: 1, Records: 1, Accepted: 1})
	checkEvents(t, b.Events, []wantEvent{{"SecretGet", 0, 0, 9, ""}}, testPartition)
}

// Invocations that are not what they should be: one letter for the whole
// body, never a panic, never a lost byte.
func TestInvocationBroken(t *testing.T) {
	good := eventsValue(shapeStringOfStrings, standardBodies(t))
	twoMembers, _ := json.Marshal(map[string]any{
		"Data":     map[string]any{"a": json.RawMessage(good), "b": json.RawMessage(good)},
		"Metadata": meta{seqs: standardSeqs}.metadata(),
	})
	cases := []struct {
		name   string
		body   []byte
		reason string
	}{
		{"not JSON", []byte(`<html>502 Bad Gateway</html>`), "not a host invocation"},
		{"truncated", invocationBody("events", good, meta{seqs: standardSeqs})[:200], "not a host invocation"},
		{"empty", nil, "not a host invocation"},
		{"array", []byte(`[1,2,3]`), "not a host invocation"},
		{"no Data", []byte(`{"Metadata":{"PartitionContext":{"PartitionId":"3"}}}`), "no Data.events"},
		{"Data null", []byte(`{"Data":null,"Metadata":{}}`), "no Data.events"},
		{"Data.events null", []byte(`{"Data":{"events":null},"Metadata":{}}`), "no Data.events"},
		{"Data empty", []byte(`{"Data":{},"Metadata":{}}`), "no Data.events"},
		{"two other bindings", twoMembers, "no Data.events"},
		{"events a number", []byte(`{"Data":{"events":42},"Metadata":{"PartitionContext":{"PartitionId":"3"}}}`), "neither an array nor an object"},
		{"events a string of text", []byte(`{"Data":{"events":"hello"},"Metadata":{"PartitionContext":{"PartitionId":"3"}}}`), "neither an array nor an object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newDecoder().Invocation(c.body)
			checkInvariants(t, b)
			if len(b.Events) != 0 || len(b.Letters) != 1 {
				t.Fatalf("%d events, %d letters; want 0 and 1", len(b.Events), len(b.Letters))
			}
			l := b.Letters[0]
			if !strings.Contains(l.Reason, c.reason) || l.Event != -1 || l.Record != -1 || l.HasSequence {
				t.Errorf("letter %+v, want reason about %q for the whole invocation", l, c.reason)
			}
			if len(c.body) > 0 && len(l.Bytes()) == 0 {
				t.Errorf("letter holds no bytes")
			}
			if len(b.Problems) == 0 {
				t.Errorf("no problem reported")
			}
		})
	}
}

func TestInvocationBindingName(t *testing.T) {
	events := eventsValue(shapeStringOfStrings, standardBodies(t))
	m := meta{seqs: standardSeqs, enqueued: standardEnqueued, asString: true}
	t.Run("single other member", func(t *testing.T) {
		b := newDecoder().Invocation(invocationBody("auditEvents", events, m))
		checkInvariants(t, b)
		checkStats(t, b.Stats, standardStats)
		checkEvents(t, b.Events, standardWant, testPartition)
	})
	t.Run("configured binding", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{
			"Data":     map[string]any{"auditEvents": json.RawMessage(events), "other": "x"},
			"Metadata": m.metadata(),
		})
		d := newDecoder()
		d.Binding = "auditEvents"
		b := d.Invocation(body)
		checkInvariants(t, b)
		checkEvents(t, b.Events, standardWant, testPartition)
	})
	t.Run("events among others", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{
			"Data":     map[string]any{"events": json.RawMessage(events), "other": "x"},
			"Metadata": m.metadata(),
		})
		b := newDecoder().Invocation(body)
		checkInvariants(t, b)
		checkEvents(t, b.Events, standardWant, testPartition)
	})
}

func TestInvocationMetadataGaps(t *testing.T) {
	events := eventsValue(shapeStringOfStrings, standardBodies(t))
	t.Run("short SequenceNumberArray", func(t *testing.T) {
		b := newDecoder().Invocation(invocationBody("events", events,
			meta{seqs: standardSeqs[:2], enqueued: standardEnqueued[:2], asString: true}))
		checkInvariants(t, b)
		checkStats(t, b.Stats, standardStats)
		want := append([]wantEvent(nil), standardWant...)
		want[3].seq, want[3].enqueued = -1, ""
		checkEvents(t, b.Events, want, testPartition)
		if !containsProblem(b.Problems, "SequenceNumberArray has 2 entries for 3 events") {
			t.Errorf("problems %q", b.Problems)
		}
	})
	t.Run("long SequenceNumberArray", func(t *testing.T) {
		b := newDecoder().Invocation(invocationBody("events", events,
			meta{seqs: []int64{1000, 1001, 1002, 1003}, enqueued: standardEnqueued, asString: false}))
		checkInvariants(t, b)
		checkEvents(t, b.Events, standardWant, testPartition)
		if !containsProblem(b.Problems, "SequenceNumberArray has 4 entries for 3 events") {
			t.Errorf("problems %q", b.Problems)
		}
	})
	t.Run("no metadata arrays", func(t *testing.T) {
		b := newDecoder().Invocation(invocationBody("events", events, meta{}))
		checkInvariants(t, b)
		want := append([]wantEvent(nil), standardWant...)
		for i := range want {
			want[i].seq, want[i].enqueued = -1, ""
		}
		checkEvents(t, b.Events, want, testPartition)
		if !containsProblem(b.Problems, "SequenceNumberArray is missing") {
			t.Errorf("problems %q", b.Problems)
		}
	})
	t.Run("no PartitionContext", func(t *testing.T) {
		b := newDecoder().Invocation(invocationBody("events", events,
			meta{seqs: standardSeqs, enqueued: standardEnqueued, asString: true, noPart: true}))
		checkInvariants(t, b)
		checkEvents(t, b.Events, standardWant, "")
	})
	t.Run("sequence numbers as strings", func(t *testing.T) {
		body := bytes.Replace(invocationBody("events", events, meta{enqueued: standardEnqueued, asString: true}),
			[]byte(`"Metadata":{`), []byte(`"Metadata":{"SequenceNumberArray":["1000","1001","1002"],`), 1)
		b := newDecoder().Invocation(body)
		checkInvariants(t, b)
		checkEvents(t, b.Events, standardWant, testPartition)
	})
	t.Run("PartitionContext as a string", func(t *testing.T) {
		pc, _ := json.Marshal(map[string]any{"PartitionId": "7", "EventHubName": testHub})
		body := bytes.Replace(invocationBody("events", events, meta{seqs: standardSeqs, enqueued: standardEnqueued, noPart: true}),
			[]byte(`"Metadata":{`), []byte(`"Metadata":{"PartitionContext":`+string(jsonString(pc))+`,`), 1)
		b := newDecoder().Invocation(body)
		checkInvariants(t, b)
		checkEvents(t, b.Events, standardWant, "7")
	})
	t.Run("garbage metadata arrays", func(t *testing.T) {
		body := bytes.Replace(invocationBody("events", events, meta{}),
			[]byte(`"Metadata":{`), []byte(`"Metadata":{"SequenceNumberArray":"not json","EnqueuedTimeUtcArray":{"a":1},`), 1)
		b := newDecoder().Invocation(body)
		checkInvariants(t, b)
		checkStats(t, b.Stats, standardStats)
		if len(b.Problems) < 2 {
			t.Errorf("problems %q", b.Problems)
		}
	})
}

func containsProblem(problems []string, s string) bool {
	for _, p := range problems {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}

// A batch's letters go to a dead-letter sink as they are.
func TestInvocationLettersRoundTrip(t *testing.T) {
	bad := []byte("{\"records\":[\xff\xfe")
	bodies := [][]byte{standardBodies(t)[0], bad}
	b := newDecoder().Invocation(invocationBody("events", eventsValue(shapeStringOfBase64, bodies),
		meta{seqs: []int64{1, 2}, asString: true}))
	checkInvariants(t, b)
	if len(b.Letters) != 1 || !bytes.Equal(b.Letters[0].Bytes(), bad) {
		t.Fatalf("letters %+v", b.Letters)
	}
	var sink deadletter.Memory
	if err := sink.Put(t.Context(), b.Letters); err != nil {
		t.Fatal(err)
	}
	if got := sink.Letters(); len(got) != 1 || !bytes.Equal(got[0].Bytes(), bad) || got[0].Sequence != 2 {
		t.Errorf("sink letters %+v", got)
	}
}

func TestFileJSONLines(t *testing.T) {
	lines := [][]byte{
		fixture(t, "secret-get"),
		fixture(t, "key-sign"),
		[]byte(`{"time":"2024-05-14T09:20:15Z","operationName":"SecretGet","resourceId":`), // cut mid-line
		fixture(t, "skip-metric"),
		[]byte(``),
		fixture(t, "vault-put"),
		envelope(fixture(t, "failure-403-forbidden"), fixture(t, "secret-list")), // an envelope per line
	}
	data := append(bytes.Join(lines, []byte("\n")), '\n')
	data = bytes.Replace(data, []byte("\n"), []byte("\r\n"), 1) // a CRLF line ending too
	const name = "resourceId=/SUBSCRIPTIONS/X/y=2024/m=05/d=14/h=09/m=00/PT1H.json"
	b := newDecoder().File(name, data)
	checkInvariants(t, b)
	checkStats(t, b.Stats, Stats{Events: 6, Records: 6, Accepted: 5, Skipped: 1, Metrics: 1, DeadLettered: 1})
	type pos struct {
		op        string
		line, rec int
	}
	want := []pos{{"SecretGet", 1, 0}, {"KeySign", 2, 0}, {"VaultPut", 6, 0}, {"SecretGet", 7, 0}, {"SecretList", 7, 1}}
	if len(b.Events) != len(want) {
		t.Fatalf("%d events, want %d", len(b.Events), len(want))
	}
	for i, w := range want {
		s := b.Events[i].Source
		if b.Events[i].Operation != w.op || s.File != name || s.Line != w.line || s.Record != w.rec || s.HasSequence {
			t.Errorf("event %d: %s at %+v, want %s at line %d record %d", i, b.Events[i].Operation, s, w.op, w.line, w.rec)
		}
	}
	l := b.Letters[0]
	if l.File != name || l.Line != 3 || !bytes.Equal(l.Bytes(), lines[2]) || l.HasSequence {
		t.Errorf("letter %+v, want %s line 3 with the line's bytes", l, name)
	}
	if !containsProblem(b.Problems, name+":3") {
		t.Errorf("problems %q do not name line 3", b.Problems)
	}
	// Replaying the same file gives the same positions.
	again := newDecoder().File(name, data)
	for i := range b.Events {
		if again.Events[i].Source != b.Events[i].Source {
			t.Errorf("replay: event %d source %+v, then %+v", i, b.Events[i].Source, again.Events[i].Source)
		}
	}
}

func TestFileDocuments(t *testing.T) {
	bodies := standardBodies(t)
	t.Run("records document", func(t *testing.T) {
		b := newDecoder().File("doc.json", bodies[0])
		checkInvariants(t, b)
		checkStats(t, b.Stats, Stats{Events: 1, Records: 2, Accepted: 2})
		for i, e := range b.Events {
			// One line: read as JSON Lines, so the position is line 1 both
			// now and after the blob grows.
			if s := e.Source; s.File != "doc.json" || s.Line != 1 || s.Record != i {
				t.Errorf("event %d source %+v", i, s)
			}
		}
	})
	t.Run("pretty-printed records document", func(t *testing.T) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, bodies[2], "", "  "); err != nil {
			t.Fatal(err)
		}
		b := newDecoder().File("pretty.json", buf.Bytes())
		checkInvariants(t, b)
		checkStats(t, b.Stats, Stats{Events: 1, Records: 2, Accepted: 1, Skipped: 1, Metrics: 1})
	})
	t.Run("a single fixture record", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(testRecordsDir, "vault-patch.json"))
		if err != nil {
			t.Fatal(err)
		}
		b := newDecoder().File("vault-patch.json", data)
		checkInvariants(t, b)
		checkStats(t, b.Stats, Stats{Events: 1, Records: 1, Accepted: 1})
	})
	t.Run("saved invocation body", func(t *testing.T) {
		for _, shape := range allShapes[:5] {
			body := invocationBody("events", eventsValue(shape, bodies),
				meta{seqs: standardSeqs, enqueued: standardEnqueued, asString: true})
			b := newDecoder().File("saved/invocation.json", body)
			checkInvariants(t, b)
			checkStats(t, b.Stats, standardStats)
			if len(b.Events) != len(standardWant) {
				t.Fatalf("%s: %d events", shape, len(b.Events))
			}
			for i, w := range standardWant {
				s := b.Events[i].Source
				if s.File != "saved/invocation.json" || s.Line != 1 || s.Partition != testPartition ||
					!s.HasSequence || s.Sequence != w.seq || s.Event != w.event || s.Record != w.record {
					t.Errorf("%s: event %d source %+v, want sequence %d event %d record %d", shape, i, s, w.seq, w.event, w.record)
				}
			}
			if b.Partition.PartitionID != testPartition {
				t.Errorf("%s: partition %+v", shape, b.Partition)
			}
		}
	})
	t.Run("saved invocation bodies, one per line", func(t *testing.T) {
		body := invocationBody("events", eventsValue(shapeStringOfStrings, bodies),
			meta{seqs: standardSeqs, enqueued: standardEnqueued, asString: true})
		data := append(append(append([]byte(nil), body...), '\n'), body...)
		b := newDecoder().File("saved.jsonl", data)
		checkInvariants(t, b)
		if len(b.Events) != 8 || b.Events[0].Source.Line != 1 || b.Events[7].Source.Line != 2 {
			t.Errorf("%d events, lines %d..%d", len(b.Events), b.Events[0].Source.Line, b.Events[len(b.Events)-1].Source.Line)
		}
	})
	t.Run("array of envelopes", func(t *testing.T) {
		data := []byte("[" + string(bytes.Join(bodies, []byte(",\n"))) + "]")
		b := newDecoder().File("array.json", data)
		checkInvariants(t, b)
		checkStats(t, b.Stats, standardStats)
		for i, w := range standardWant {
			s := b.Events[i].Source
			if s.File != "array.json" || s.Event != w.event || s.Record != w.record || s.HasSequence {
				t.Errorf("event %d source %+v, want event %d record %d", i, s, w.event, w.record)
			}
		}
	})
	t.Run("array of records", func(t *testing.T) {
		data := []byte("[" + string(fixture(t, "secret-get")) + "," + string(fixture(t, "key-get")) + "]")
		b := newDecoder().File("records.json", data)
		checkInvariants(t, b)
		checkStats(t, b.Stats, Stats{Events: 2, Records: 2, Accepted: 2})
	})
	t.Run("empty", func(t *testing.T) {
		b := newDecoder().File("empty.json", []byte(" \n\t\n"))
		checkInvariants(t, b)
		checkStats(t, b.Stats, Stats{})
	})
	t.Run("garbage", func(t *testing.T) {
		b := newDecoder().File("garbage.bin", []byte("\x00\x01PK\x03\x04"))
		checkInvariants(t, b)
		if len(b.Letters) != 1 || b.Letters[0].File != "garbage.bin" || b.Letters[0].Line != 1 {
			t.Errorf("letters %+v", b.Letters)
		}
	})
}

// Every fixture record goes through every shape with the same result as
// DecodeRecord + Normalize.
func TestInvocationAllFixtures(t *testing.T) {
	recs := allFixtures(t)
	var want Stats
	want.Events = len(recs)
	want.Records = len(recs)
	var accepted []string
	for _, r := range recs {
		rec, err := audit.DecodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		e, skip, err := audit.Normalize(&rec, audit.Source{})
		switch {
		case err != nil:
			want.DeadLettered++
		case skip != audit.SkipNone:
			want.Skipped++
			switch skip {
			case audit.SkipMetric:
				want.Metrics++
			case audit.SkipCategory:
				want.Categories++
			case audit.SkipResourceType:
				want.Resources++
			}
		default:
			want.Accepted++
			accepted = append(accepted, e.Operation)
		}
	}
	bodies := make([][]byte, len(recs))
	seqs := make([]int64, len(recs))
	for i, r := range recs {
		bodies[i] = envelope(r)
		seqs[i] = int64(i)
	}
	for _, shape := range allShapes[:5] {
		b := newDecoder().Invocation(invocationBody("events", eventsValue(shape, bodies), meta{seqs: seqs, asString: true}))
		checkInvariants(t, b)
		checkStats(t, b.Stats, want)
		for i, e := range b.Events {
			if e.Operation != accepted[i] {
				t.Errorf("%s: event %d is %s, want %s", shape, i, e.Operation, accepted[i])
			}
		}
	}
}

// Metadata may come before Data, and one odd Metadata member costs that
// member only: never the partition, the sequence numbers or the batch.
func TestInvocationMetadataOrderAndOddMembers(t *testing.T) {
	events := eventsValue(shapeStringOfStrings, standardBodies(t))
	seqs, _ := json.Marshal(standardSeqs)
	enq, _ := json.Marshal(standardEnqueued)
	base := `"SequenceNumberArray":` + string(jsonString(seqs)) +
		`,"EnqueuedTimeUtcArray":` + string(jsonString(enq)) +
		`,"PartitionContext":{"PartitionId":"3","EventHubName":"insights-logs-auditevent"}`
	data := `"Data":{"events":` + string(events) + `}`
	cases := []struct {
		name  string
		retry string // the RetryContext member, "" for none
		want  *RetryContext
		bad   bool // a problem line about RetryContext
	}{
		{"no retry", "", nil, false},
		{"retry object", `{"RetryCount":2,"MaxRetryCount":-1,"Exception":{"Message":"boom"}}`, &RetryContext{2, -1}, false},
		{"retry as a JSON string", string(jsonString([]byte(`{"RetryCount":3,"MaxRetryCount":-1}`))), &RetryContext{3, -1}, false},
		{"retry null", `null`, nil, false},
		{"retry count as a string", `{"RetryCount":"2","MaxRetryCount":-1}`, nil, true},
		{"retry count fractional", `{"RetryCount":1.5}`, nil, true},
		{"retry an array", `[1]`, nil, true},
	}
	for _, c := range cases {
		md := base
		if c.retry != "" {
			md += `,"RetryContext":` + c.retry
		}
		md = `"Metadata":{` + md + `,"sys":{"MethodName":"AuditEvents"}}`
		for _, order := range []string{"data-first", "metadata-first"} {
			t.Run(c.name+"/"+order, func(t *testing.T) {
				body := "{" + data + "," + md + "}"
				if order == "metadata-first" {
					body = "{" + md + "," + data + "}"
				}
				b := newDecoder().Invocation([]byte(body))
				checkInvariants(t, b)
				checkStats(t, b.Stats, standardStats)
				checkEvents(t, b.Events, standardWant, testPartition)
				if (b.Retry == nil) != (c.want == nil) || (b.Retry != nil && *b.Retry != *c.want) {
					t.Errorf("retry %+v, want %+v", b.Retry, c.want)
				}
				if got := containsProblem(b.Problems, "RetryContext"); got != c.bad {
					t.Errorf("problems %q", b.Problems)
				}
			})
		}
	}
}

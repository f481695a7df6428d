package ingest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// seedInvocations returns invocation bodies built from testdata/records in
// every shape of functions-host.md, with both Metadata encodings. Inputs
// are kept small (a few records each): the fuzzer slows down a lot on
// large ones, so every fixture appears in every shape, a few at a time.
func seedInvocations(t testing.TB) [][]byte {
	recs := allFixtures(t)
	const per = 2
	var out [][]byte
	for c := 0; c*per < len(recs); c++ {
		chunk := recs[c*per : min(len(recs), (c+1)*per)]
		// One event holding both records, or one event per record.
		bodies := [][]byte{envelope(chunk...)}
		if c%2 == 1 {
			bodies = bodies[:0]
			for _, r := range chunk {
				bodies = append(bodies, envelope(r))
			}
		}
		seqs := make([]int64, len(bodies))
		enq := make([]string, len(bodies))
		for i := range bodies {
			seqs[i] = int64(100*c + i)
			enq[i] = "2024-05-14T09:21:00.123"
		}
		for si, shape := range allShapes {
			bs, ss, es := bodies, seqs, enq
			if shape == shapeSingleObject {
				bs, ss, es = bodies[:1], seqs[:1], enq[:1]
			}
			binding := "events"
			if (c+si)%5 == 4 {
				binding = "auditEvents" // the only Data member, not named events
			}
			out = append(out, invocationBody(binding, eventsValue(shape, bs),
				meta{seqs: ss, enqueued: es, asString: (c+si)%2 == 0, retry: (c + si) % 3}))
		}
	}
	// Broken bodies among good ones (string shapes only can carry them).
	good := [][]byte{envelope(recs[0]), envelope(recs[1])}
	broken := [][]byte{good[0], []byte(`{"records":[{"time":`), []byte("\xff\xfe"), []byte(`[]`), good[1]}
	out = append(out,
		invocationBody("events", eventsValue(shapeStringOfStrings, broken), meta{seqs: []int64{1, 2, 3, 4, 5}, asString: true}),
		invocationBody("events", eventsValue(shapeStringOfBase64, broken), meta{seqs: []int64{1, 2}, asString: true}),
		[]byte(`{"Data":{"events":"[\"not base64!\", 12, null]"},"Metadata":{"RetryContext":"{\"RetryCount\":1}"}}`),
		[]byte(`{"Metadata":{"SequenceNumberArray":"[1]"},"Data":{"events":{"records":[]}}}`),
		[]byte(`{"Data":{}}`),
		[]byte(`not json`),
		nil,
	)
	return out
}

// seedFiles returns archived and saved files built from testdata/records,
// a few records each: JSON Lines (with and without a bad line), records
// documents (compact and indented), arrays, saved invocation bodies.
func seedFiles(t testing.TB) [][]byte {
	recs := allFixtures(t)
	inv := seedInvocations(t)
	const per = 4
	var out [][]byte
	for c := 0; c*per < len(recs); c++ {
		chunk := recs[c*per : min(len(recs), (c+1)*per)]
		lines := bytes.Join(chunk, []byte("\n"))
		withBad := bytes.Join([][]byte{chunk[0], []byte(`{"time":"2024-`), chunk[len(chunk)-1]}, []byte("\r\n"))
		envs := make([][]byte, len(chunk))
		for i, r := range chunk {
			envs[i] = envelope(r)
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, envelope(chunk...), "", "  "); err != nil {
			t.Fatal(err)
		}
		out = append(out,
			append(append([]byte(nil), lines...), '\n'),
			withBad,
			bytes.Join(envs, []byte("\n")),
			envelope(chunk...),
			pretty.Bytes(),
			[]byte("["+string(bytes.Join(envs, []byte(",")))+"]"),
			inv[c*len(allShapes)],
		)
	}
	return append(out, bytes.Join(inv[:2], []byte("\n")), recs[0], []byte("\n\n"), nil)
}

// sameBatch reports whether two batches hold the same result.
func sameBatch(a, b *Batch) bool {
	return reflect.DeepEqual(a.Events, b.Events) && reflect.DeepEqual(a.Letters, b.Letters) &&
		a.Stats == b.Stats && reflect.DeepEqual(a.Problems, b.Problems) &&
		a.Partition == b.Partition && reflect.DeepEqual(a.Retry, b.Retry)
}

func snapshot(t testing.TB, b *Batch) []byte {
	s, err := json.Marshal(struct {
		E any
		L any
		S Stats
	}{b.Events, b.Letters, b.Stats})
	if err != nil {
		t.Fatalf("batch does not marshal: %v", err)
	}
	return s
}

func FuzzInvocation(f *testing.F) {
	seeds := seedInvocations(f)
	for _, s := range seeds {
		f.Add(s)
	}
	// A small invocation decoded before each input, to catch state leaking
	// from one call to the next.
	warm := invocationBody("events", eventsValue(shapeStringOfStrings, [][]byte{envelope(fixture(f, "key-sign"))}),
		meta{seqs: []int64{1}, asString: true})
	f.Fuzz(func(t *testing.T, body []byte) {
		fresh := newDecoder().Invocation(body)
		checkInvariants(t, fresh)

		// A reused decoder gives the same result, and what it returned
		// before is not disturbed by the next call (buffers are reused).
		d := newDecoder()
		before := d.Invocation(warm)
		snap := snapshot(t, before)
		again := d.Invocation(body)
		if !sameBatch(fresh, again) {
			t.Fatalf("reused decoder differs:\n fresh %+v\n again %+v", fresh, again)
		}
		if !bytes.Equal(snap, snapshot(t, before)) {
			t.Fatal("decoding a second invocation changed the first batch")
		}
	})
}

func FuzzFile(f *testing.F) {
	for _, s := range seedFiles(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "PT1H.json"
		fresh := newDecoder().File(name, data)
		checkInvariants(t, fresh)
		for i, e := range fresh.Events {
			if e.Source.File != name {
				t.Fatalf("event %d source %+v has no file", i, e.Source)
			}
		}
		for i, l := range fresh.Letters {
			if l.File != name {
				t.Fatalf("letter %d has no file: %+v", i, l)
			}
		}
		// Replaying the same file gives the same positions.
		if again := newDecoder().File(name, data); !sameBatch(fresh, again) {
			t.Fatalf("second read differs:\n %+v\n %+v", fresh, again)
		}
	})
}

package ingest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/kvwatch/kvwatch/internal/host"
)

// RecordRaw finds every accepted record's bytes again, in every shape the
// host sends and in files holding several saved invocations (whose
// decoder buffer the next line reuses).
func TestRecordRaw(t *testing.T) {
	rec := func(i int) string {
		return fmt.Sprintf(`{"time":"2026-11-23T10:00:%02dZ","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV","operationName":"SecretGet","identity":{"claim":{"upn":"u%d\u00e9\"q"}}}`, i, i)
	}
	want := map[[2]int]string{}
	hb := host.Batch{Partition: "3"}
	for ev := range 4 {
		var rs []string
		for r := range ev + 1 {
			s := rec(ev*10 + r)
			rs = append(rs, s)
			want[[2]int{ev, r}] = s
		}
		body := `{"records":[` + strings.Join(rs, ", ") + `]}`
		if ev == 3 {
			body = rs[0] // a body that is one record
			want[[2]int{ev, 0}] = rs[0]
		}
		hb.Events = append(hb.Events, host.Event{Body: []byte(body), Sequence: int64(ev)})
	}
	check := func(name string, b *Batch) {
		t.Helper()
		if len(b.Events) != 7 {
			t.Fatalf("%s: %d events", name, len(b.Events))
		}
		for _, e := range b.Events {
			got, ok := b.RecordRaw(e.Source)
			w := want[[2]int{e.Source.Event, max(e.Source.Record, 0)}]
			if !ok || !bytes.Equal(got, []byte(w)) {
				t.Fatalf("%s: event %d record %d: %q, want %q", name, e.Source.Event, e.Source.Record, got, w)
			}
		}
	}
	var lines []string
	for _, shape := range host.Shapes {
		body, err := host.Body(hb, shape)
		if err != nil {
			t.Fatal(err)
		}
		var d Decoder
		check(shape.String(), d.Invocation(body))
		lines = append(lines, string(body))
	}
	var d Decoder
	b := d.File("saved.jsonl", []byte(strings.Join(lines, "\n")))
	for i := range b.Events {
		e := b.Events[i]
		got, ok := b.RecordRaw(e.Source)
		w := want[[2]int{e.Source.Event, max(e.Source.Record, 0)}]
		if !ok || !bytes.Equal(got, []byte(w)) {
			t.Fatalf("file line %d event %d record %d: %q, want %q", e.Source.Line, e.Source.Event, e.Source.Record, got, w)
		}
	}
}

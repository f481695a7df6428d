package pipeline_test

import (
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

func rec(corr string, seq int64) audit.Event {
	return audit.Event{Time: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), Operation: "SecretGet", Vault: "kv1",
		CorrelationID: corr, Caller: audit.Caller{Key: "a"}, HTTPStatus: 200,
		Source: audit.Source{Partition: "0", Sequence: seq, HasSequence: true}}
}

func TestDedup(t *testing.T) {
	d := pipeline.NewDedup(4)
	for _, tc := range []struct {
		name    string
		in      []audit.Event
		kept    int
		dropped int
	}{
		{"new records pass", []audit.Event{rec("a", 1), rec("b", 2)}, 2, 0},
		{"the same record at another position is a duplicate", []audit.Event{rec("a", 7)}, 0, 1},
		{"the same record at the same position is a redelivery and passes", []audit.Event{rec("a", 1), rec("b", 2)}, 2, 0},
		{"duplicates within one batch", []audit.Event{rec("c", 3), rec("c", 4), rec("c", 5)}, 1, 2},
		{"a different record with the same correlation id passes", []audit.Event{func() audit.Event { e := rec("c", 6); e.HTTPStatus = 403; return e }()}, 1, 0},
	} {
		out, dropped := d.Filter(tc.in)
		if len(out) != tc.kept || dropped != tc.dropped {
			t.Errorf("%s: kept %d dropped %d, want %d and %d", tc.name, len(out), dropped, tc.kept, tc.dropped)
		}
	}
	// Memory is bounded: after 4 more records, "a" is forgotten.
	for i := 0; i < 4; i++ {
		d.Filter([]audit.Event{rec(string(rune('p'+i)), int64(100+i))})
	}
	if out, _ := d.Filter([]audit.Event{rec("a", 99)}); len(out) != 1 {
		t.Errorf("a forgotten record must pass again")
	}
	var nilD *pipeline.Dedup
	if out, n := nilD.Filter([]audit.Event{rec("x", 1)}); len(out) != 1 || n != 0 {
		t.Errorf("a nil Dedup passes everything")
	}
}

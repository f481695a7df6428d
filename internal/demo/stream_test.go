package demo

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestStreamIsEveryRecordInTimeOrder(t *testing.T) {
	opts := Options{Day: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}
	want := 0
	for _, b := range Generate(opts) {
		want += bytes.Count(bytes.TrimSpace(b.Data), []byte("\n")) + 1
	}
	recs := Stream(opts)
	if len(recs) != want {
		t.Fatalf("Stream gave %d records, Generate %d", len(recs), want)
	}
	vaults := map[string]bool{}
	for i, r := range recs {
		var rec struct {
			Time       string `json:"time"`
			ResourceID string `json:"resourceId"`
		}
		if err := json.Unmarshal(r.Line, &rec); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if rec.Time != string(r.Time) {
			t.Fatalf("record %d: Time %q, the record says %q", i, r.Time, rec.Time)
		}
		if i > 0 && bytes.Compare(recs[i-1].Time, r.Time) > 0 {
			t.Fatalf("record %d (%s) comes after %s", i, r.Time, recs[i-1].Time)
		}
		vaults[rec.ResourceID] = true
	}
	if len(vaults) < 4 {
		t.Errorf("the stream holds %d vaults, want the demo's 4 interleaved", len(vaults))
	}
}

func TestEventBody(t *testing.T) {
	recs := Stream(Options{Day: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)})[:10]
	var ev struct {
		Records []json.RawMessage `json:"records"`
	}
	if err := json.Unmarshal(EventBody(recs), &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Records) != 10 {
		t.Fatalf("%d records in the event, want 10", len(ev.Records))
	}
	for i, r := range ev.Records {
		if !bytes.Equal(r, recs[i].Line) {
			t.Errorf("record %d changed on the way", i)
		}
	}
}

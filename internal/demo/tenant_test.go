package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/ingest"
)

// TestTenantShape reads a tenant's traffic back through kvwatch's own
// decoder and checks the shape the cardinality sweep relies on: distinct
// application identities, people and vaults as asked, about 3% failures
// of each kind, every vault on every partition in even shares, event time
// moving at the asked rate.
func TestTenantShape(t *testing.T) {
	for _, tc := range []struct{ callers, vaults, partitions int }{{30, 20, 2}, {300, 20, 4}} {
		o := TenantOptions{Callers: tc.callers, Vaults: tc.vaults, Partitions: tc.partitions, Records: 40_000, Seed: 7}
		s := Tenant(o)
		var d ingest.Decoder
		apps, people, vaults := map[string]bool{}, map[string]bool{}, map[string]bool{}
		perPart := make([]int, tc.partitions)
		vaultParts := map[string]map[int]bool{}
		status := map[int]int{}
		var first, last time.Time
		records, events := 0, 0
		var newest time.Time
		var late time.Duration
		for {
			e, ok := s.Next()
			if !ok {
				break
			}
			if len(e.Records) != 10 {
				t.Fatalf("event %d has %d records, want 10", events, len(e.Records))
			}
			if want := events % tc.partitions; e.Partition != want {
				t.Fatalf("event %d on partition %d, want %d (round robin)", events, e.Partition, want)
			}
			events++
			for _, r := range e.Records {
				at, err := time.Parse(time.RFC3339Nano, string(r.Time))
				if err != nil {
					t.Fatal(err)
				}
				late = max(late, newest.Sub(at))
				if at.After(newest) {
					newest = at
				}
			}
			b := &ingest.Batch{}
			d.Body(b, EventBody(e.Records), audit.Source{Partition: "0", HasSequence: true, Sequence: int64(events)})
			if len(b.Events) != len(e.Records) || b.Stats.Skipped != 0 || len(b.Letters) != 0 {
				t.Fatalf("event %d: %d of %d records accepted (%+v, problems %v)", events, len(b.Events), len(e.Records), b.Stats, b.Problems)
			}
			for _, ev := range b.Events {
				records++
				perPart[e.Partition]++
				vaults[ev.Vault] = true
				if vaultParts[ev.Vault] == nil {
					vaultParts[ev.Vault] = map[int]bool{}
				}
				vaultParts[ev.Vault][e.Partition] = true
				status[ev.HTTPStatus]++
				switch {
				case ev.Caller.UPN != "":
					people[ev.Caller.Key] = true
				case ev.Caller.Key != "" && ev.Caller.AppID != "" && strings.HasPrefix(ev.Operation, "Secret"):
					apps[ev.Caller.Key] = true
				}
				if first.IsZero() || ev.Time.Before(first) {
					first = ev.Time
				}
				if ev.Time.After(last) {
					last = ev.Time
				}
			}
		}
		name := func(s string, a ...any) {
			t.Errorf("callers %d, partitions %d: "+s, append([]any{tc.callers, tc.partitions}, a...)...)
		}
		if records != o.Records || s.Made() != o.Records {
			name("%d records, want %d", records, o.Records)
		}
		if len(apps) < tc.callers*95/100 || len(apps) > tc.callers {
			name("%d application identities, want about %d", len(apps), tc.callers)
		}
		if want := max(3, tc.callers/20); len(people) != want {
			name("%d people, want %d", len(people), want)
		}
		if len(vaults) != tc.vaults {
			name("%d vaults, want %d", len(vaults), tc.vaults)
		}
		for v, ps := range vaultParts {
			if len(ps) != tc.partitions {
				name("vault %s on %d partitions, want every one", v, len(ps))
			}
		}
		for p, n := range perPart {
			if share := float64(n) / float64(records); share < 0.95/float64(tc.partitions) || share > 1.05/float64(tc.partitions) {
				name("partition %d holds %.1f%% of the records", p, 100*share)
			}
		}
		failed := 0
		for code, n := range status {
			if code >= 400 {
				failed += n
			}
		}
		if share := float64(failed) / float64(records); share < 0.02 || share > 0.045 {
			name("%.2f%% failed, want about 3%% (%v)", 100*share, status)
		}
		for _, code := range []int{401, 403, 404} {
			if status[code] < records/1000 {
				name("%d records with status %d, want at least 0.1%%", status[code], code)
			}
		}
		if late > time.Second {
			name("a record %s earlier than one before it: requests overlap by milliseconds, not more", late)
		}
		if rate := float64(records) / last.Sub(first).Seconds(); rate < 30 || rate > 50 {
			name("%.1f records per second of event time, want about 40", rate)
		}
	}
}

func TestTenantDeterministic(t *testing.T) {
	o := TenantOptions{Callers: 50, Records: 3000}
	a, b := TenantRecords(o), TenantRecords(o)
	o.Seed = 2
	c := TenantRecords(o)
	if len(a) != 3000 || len(b) != 3000 || len(c) != 3000 {
		t.Fatalf("%d, %d, %d records, want 3000", len(a), len(b), len(c))
	}
	same := 0
	for i := range a {
		if !bytes.Equal(a[i].Line, b[i].Line) {
			t.Fatalf("record %d differs between two runs with the same options", i)
		}
		if bytes.Equal(a[i].Line, c[i].Line) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d records identical with another seed", same)
	}
}

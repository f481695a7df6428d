package tablestore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Exactly-once positions and the duplicate filter, with memory state and
// with Table state, through what the user sees: the count of the
// harness's "burst" threshold finding (10 secret reads by one caller on
// one vault in 5 minutes).

// eachStore runs f with memory state and with Table state on Azurite.
func eachStore(t *testing.T, f func(t *testing.T, st state.Store)) {
	t.Run("memory", func(t *testing.T) { f(t, state.NewMemory()) })
	t.Run("table", func(t *testing.T) { f(t, newStore(t, testPrefix(), Options{})) })
}

// burstCount is the count of the newest burst finding handed on, 0 if none.
func (h *harness) burstCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, f := range h.found {
		if f.Rule == "burst" {
			n = int(f.Count)
		}
	}
	return n
}

// reads returns n secret reads by one caller on kv1, a second apart from
// t0+off seconds, at sequence numbers seq.. of partition part of
// namespace ns and hub hub.
func reads(ns, hub, part string, seq int64, off, n int) []audit.Event {
	evs := make([]audit.Event, n)
	for i := range evs {
		evs[i] = audit.Event{Time: t0.Add(time.Duration(off+i) * time.Second), Vault: "kv1",
			Operation: "SecretGet", Family: audit.FamilySecret, Kind: audit.KindRead,
			Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret", ObjectName: "db-password",
			CallerIP: "10.0.0.1", Caller: audit.Caller{ObjectID: "caller-a", Key: "caller-a", KeyFrom: "oid"},
			CorrelationID: fmt.Sprintf("%s-%s-%d", hub, part, seq+int64(i)),
			Source:        audit.Source{Namespace: ns, Hub: hub, Partition: part, Sequence: seq + int64(i), HasSequence: true}}
	}
	return evs
}

// Two regions' hubs both have a partition "0" with the same sequence
// numbers: each one's events count. A redelivery within one hub still
// counts once.
func TestTwoHubsSamePartitionBothCounted(t *testing.T) {
	eachStore(t, func(t *testing.T, st state.Store) {
		h := newHarness(t, st)
		west := reads("kv-west.servicebus.windows.net", "insights-logs-auditevent", "0", 1, 0, 6)
		east := reads("kv-east.servicebus.windows.net", "insights-logs-auditevent", "0", 1, 10, 6)
		h.mustFeed(t, west)
		if n := h.burstCount(); n != 0 {
			t.Fatalf("6 reads raised a burst of %d", n)
		}
		h.mustFeed(t, east)
		if n := h.burstCount(); n != 12 {
			t.Fatalf("after both hubs: burst count %d, want 12 (6 + 6)", n)
		}
		h.mustFeed(t, west) // redelivered
		h.mustFeed(t, east[2:])
		h.mustFeed(t, reads("kv-east.servicebus.windows.net", "insights-logs-auditevent", "0", 7, 20, 1))
		if n := h.burstCount(); n != 13 {
			t.Fatalf("after redeliveries and one more read: burst count %d, want 13", n)
		}
	})
}

// record is one SecretGet record by one caller on kv-payments-prod at
// 09:00:i, as Azure Monitor writes it.
func record(i int) string {
	return fmt.Sprintf(`{"time":"2026-11-23T09:00:%02d.1234567Z","resourceId":"/SUBSCRIPTIONS/0B1F6471-1BF0-4DDA-AEC3-CB9272F09590/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PAYMENTS-PROD","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":"OK","resultDescription":"","durationMs":"7","callerIpAddress":"20.50.1.7","correlationId":"a1b2c3d4-0000-4000-8000-%012d","identity":{"claim":{"oid":"11111111-2222-3333-4444-555555555555","appid":"04b07795-8ddb-461a-bbee-02f9e1bf7b46","upn":"alice@contoso.com","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47"}},"properties":{"id":"https://kv-payments-prod.vault.azure.net/secrets/db-password/0123456789abcdef0123456789abcdef","requestUri":"https://kv-payments-prod.vault.azure.net/secrets/db-password?api-version=7.4","httpStatusCode":200,"clientInfo":"azsdk-go-azsecrets/v1.3.0","isRbacAuthorized":true,"tlsVersion":"TLS1_2"}}`,
		i%60, i)
}

// invocation decodes the host's invocation of events with sequence
// numbers from..to of partition part, event i carrying recs(i).
func invocation(t *testing.T, part string, from, to int64, recs func(seq int64) []int) *ingest.Batch {
	t.Helper()
	b := host.Batch{Namespace: "kv-west.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch", Partition: part}
	for s := from; s <= to; s++ {
		body := `{"records":[`
		for j, r := range recs(s) {
			if j > 0 {
				body += ","
			}
			body += record(r)
		}
		b.Events = append(b.Events, host.Event{Body: []byte(body + "]}"), Sequence: s, Enqueued: t0})
	}
	raw, err := host.Body(b, host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	var dec ingest.Decoder
	got := dec.Invocation(raw)
	if len(got.Problems) > 0 || len(got.Letters) > 0 {
		t.Fatalf("invocation: %v", got.Problems)
	}
	return got
}

// failHalf applies the first half of the events of its next call, then
// fails it, as a batch whose Table writes stopped half way does.
type failHalf struct {
	h    *harness
	fail bool
}

func (f *failHalf) Consume(ctx context.Context, evs []audit.Event) (pipeline.Result, error) {
	if f.fail {
		f.fail = false
		if err := f.h.feed(ctx, evs[:len(evs)/2]); err != nil {
			return pipeline.Result{}, err
		}
		return pipeline.Result{}, errors.New("table storage unavailable")
	}
	return pipeline.Result{}, f.h.feed(ctx, evs)
}

// A batch that failed half way and is delivered again from an earlier
// sequence number (every event's index in the invocation moves) is
// applied in full, exactly once; the same record at another position is
// still dropped.
func TestFailedBatchRedeliveredFromEarlier(t *testing.T) {
	eachStore(t, func(t *testing.T, st state.Store) {
		h := newHarness(t, st)
		stage := &failHalf{h: h}
		p := &pipeline.Pipeline{Dedup: pipeline.NewDedup(1000), Next: stage, Log: zerolog.Nop()}
		ctx := context.Background()
		// Sequence number s carries records 2(s-100) and 2(s-100)+1.
		two := func(s int64) []int { i := int(s-100) * 2; return []int{i, i + 1} }

		if _, err := p.Process(ctx, invocation(t, "0", 100, 104, two)); err != nil { // records 0..9
			t.Fatal(err)
		}
		stage.fail = true
		if _, err := p.Process(ctx, invocation(t, "0", 105, 114, two)); err == nil { // records 10..29
			t.Fatal("the batch did not fail")
		}
		sum, err := p.Process(ctx, invocation(t, "0", 102, 114, two)) // from earlier: records 4..29
		if err != nil {
			t.Fatal(err)
		}
		if sum.Duplicates != 0 {
			t.Errorf("the redelivered batch lost %d records as duplicates", sum.Duplicates)
		}
		if n := h.burstCount(); n != 30 {
			t.Fatalf("after the redelivery: burst count %d, want 30 (every record once)", n)
		}

		// Azure Monitor delivers records 3 and 17 again, in an event on
		// partition 1, with one new record: the copies are dropped.
		sum, err = p.Process(ctx, invocation(t, "1", 500, 500, func(int64) []int { return []int{3, 17, 30} }))
		if err != nil {
			t.Fatal(err)
		}
		if sum.Duplicates != 2 {
			t.Errorf("copies at another position: %d dropped, want 2", sum.Duplicates)
		}
		if n := h.burstCount(); n != 31 {
			t.Fatalf("after the copies: burst count %d, want 31", n)
		}
	})
}

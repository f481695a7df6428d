package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// BenchmarkAlertLatency measures, through real HTTP on loopback, the time
// from an invocation arriving at the handler to the webhook receiving the
// alert it causes: the default pack, in-memory state and outbox, a local
// webhook receiver. Each invocation carries 100 events of ordinary traffic
// plus one vault change by a new caller, which the default pack alerts on.
// Goal: p99 under 50 ms.
func BenchmarkAlertLatency(b *testing.B) {
	f, err := config.Parse("kvwatch.yaml", pack.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		b.Fatal(err)
	}
	rs, s, err := rules.Compile(f)
	if err != nil {
		b.Fatal(err)
	}
	received := make(chan time.Time, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		select {
		case received <- time.Now():
		default:
		}
	}))
	defer hook.Close()
	n, err := webhook.New("hook", webhook.Config{URL: hook.URL}, hook.Client(), nil)
	if err != nil {
		b.Fatal(err)
	}
	cooldowns := map[string]time.Duration{}
	for _, r := range rs {
		cooldowns[r.ID] = r.Cooldown
	}
	disp := delivery.New(delivery.Options{Outbox: delivery.NewMemory(), Receivers: map[string]delivery.Notifier{"hook": n},
		Cooldowns: cooldowns, Log: zerolog.Nop()})
	en := detect.New(rs, s, detect.Options{Store: state.NewMemory(), Sink: disp, Log: zerolog.Nop()})
	proc := &pipeline.Pipeline{Letters: &deadletter.Memory{}, Next: en, Log: zerolog.Nop()}
	srv := httptest.NewServer(handlers.New(handlers.Config{}, proc, zerolog.Nop()))
	defer srv.Close()

	var lat []time.Duration
	seq := int64(0)
	i := 0
	for b.Loop() {
		i++
		at := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
		batch := host.Batch{Partition: "0"}
		for e := 0; e < 100; e++ {
			batch.Events = append(batch.Events, host.Event{Body: envelope(record(e, 200, "OK")), Sequence: seq})
			seq++
		}
		change := fmt.Sprintf(`{"time":%q,"resourceId":"/SUBSCRIPTIONS/0B1F6471-1BF0-4DDA-AEC3-CB9272F09590/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PAYMENTS-PROD","operationName":"VaultPatch","category":"AuditEvent","resultType":"Success","resultSignature":"OK","callerIpAddress":"20.50.1.9","identity":{"claim":{"http://schemas.microsoft.com/identity/claims/objectidentifier":"00000000-0000-4000-8000-%012d"}},"properties":{"httpStatusCode":200}}`,
			at.Format(time.RFC3339Nano), i)
		batch.Events = append(batch.Events, host.Event{Body: envelope(change), Sequence: seq})
		seq++
		body, err := host.Body(batch, host.StringOfStrings)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		resp, err := host.Invoke(context.Background(), srv.Client(), srv.URL, "AuditEvents", body)
		if err != nil || resp.Status != 200 {
			b.Fatalf("%v %+v", err, resp)
		}
		select {
		case got := <-received:
			lat = append(lat, got.Sub(start))
		case <-time.After(5 * time.Second):
			b.Fatal("no alert arrived")
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/host"
)

// BenchmarkColdStart starts the real binary the way the Functions host
// does, again and again, and measures what every scale-out pays: process
// start to the first answer to GET / (the host waits at most 30 s), and to
// the first AuditEvents invocation served — with the default rule pack and
// in-memory state, and with Table Storage state (Azurite), where the first
// invocation also creates or finds the tables. Medians and the worst of
// b.N starts; run with -benchtime 20x.
func BenchmarkColdStart(b *testing.B) {
	body, next := coldStartBodies(b)
	for _, c := range []struct {
		name  string
		table bool
	}{{"memory", false}, {"table", true}} {
		b.Run(c.name, func(b *testing.B) {
			var env []string
			if c.table {
				env = []string{"KVWATCH_TABLE_CONNECTION_STRING=" + azuritetest.Start(b)}
			}
			var ready, first, warm []time.Duration
			for i := 0; i < b.N; i++ {
				e := append(slices.Clone(env), "KVWATCH_LOG_LEVEL=warn",
					"KVWATCH_DEADLETTER_FILE="+filepath.Join(b.TempDir(), "dl.jsonl"))
				if c.table {
					// A fresh prefix each time: the tables do not exist yet,
					// as on a first deployment (the worst case).
					e = append(e, fmt.Sprintf("KVWATCH_TABLE_PREFIX=cs%d", time.Now().UnixNano()%1_000_000_000))
				}
				p, err := host.Start(context.Background(), binary, []string{"serve"}, e, io.Discard, 30*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				r, err := host.Invoke(context.Background(), http.DefaultClient, p.BaseURL, "AuditEvents", body)
				served := time.Now()
				if err != nil || r.Status != http.StatusOK {
					p.Kill()
					b.Fatalf("first invocation: %v %+v", err, r)
				}
				// The next batch, for comparison: what the batch itself costs.
				r, err = host.Invoke(context.Background(), http.DefaultClient, p.BaseURL, "AuditEvents", next)
				warm = append(warm, time.Since(served))
				p.Kill()
				if err != nil || r.Status != http.StatusOK {
					b.Fatalf("second invocation: %v %+v", err, r)
				}
				ready = append(ready, p.Ready.Sub(p.Started))
				first = append(first, served.Sub(p.Started))
			}
			slices.Sort(ready)
			slices.Sort(first)
			slices.Sort(warm)
			b.ReportMetric(float64(ready[len(ready)/2].Microseconds())/1000, "ms-to-GET/")
			b.ReportMetric(float64(ready[len(ready)-1].Microseconds())/1000, "ms-to-GET/-max")
			b.ReportMetric(float64(first[len(first)/2].Microseconds())/1000, "ms-to-first-invocation")
			b.ReportMetric(float64(first[len(first)-1].Microseconds())/1000, "ms-to-first-invocation-max")
			b.ReportMetric(float64(warm[len(warm)/2].Microseconds())/1000, "ms-second-invocation")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// coldStartBodies are two invocations of 100 events × 10 records of the
// demo day, one after the other, as the host sends them.
func coldStartBodies(b *testing.B) (first, second []byte) {
	recs := demo.Stream(demo.Options{Day: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)})
	if len(recs) < 2000 {
		b.Fatalf("the demo day has %d records", len(recs))
	}
	var bodies [2][]byte
	for k := range bodies {
		batch := host.Batch{Namespace: "double.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch", Partition: "0"}
		for i := k * 1000; i < k*1000+1000; i += 10 {
			batch.Events = append(batch.Events, host.Event{Body: demo.EventBody(recs[i : i+10]), Sequence: int64(i / 10), Enqueued: time.Now()})
		}
		body, err := host.Body(batch, host.StringOfStrings)
		if err != nil {
			b.Fatal(err)
		}
		bodies[k] = body
	}
	return bodies[0], bodies[1]
}

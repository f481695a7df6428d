package handlers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/demo/demotest"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/heartbeat"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// BenchmarkServeVsJSONDecode puts the same invocation bodies, body by
// body in the same run, through two HTTP handlers:
//
//   - json-decode: reads the body and decodes it with encoding/json into a
//     generic structure (map[string]any; Data.events, the JSON string the
//     host makes of the events, decoded too, as a handler that looked at
//     the records would), then answers 200;
//   - serve: kvwatch's real handler and pipeline as `serve` wires them
//     (duplicate filter, heartbeat, statistics, detection with the default
//     pack, delivery to an in-memory outbox), all with in-memory state;
//   - serve without rules: the same with no rule on, which measures what
//     the rules may cost for serve to keep up with json-decode.
//
// The traffic is the demo's (demo: seven demo days, few callers) and
// demo.Tenant's (tenant-N: N application identities over 20 vaults, 2
// partitions; KVWATCH_BENCH_RECORDS records, 100,000 by default), 100
// events of 10 records per invocation. It reports the three
// throughputs, ratio = serve / json-decode (goal ≥ 1: serve with the
// default pack at least as fast as a handler that only decodes the body),
// and rules-room-µs/record: the time per record json-decode takes beyond
// serve without rules, which is what the rules may cost for the goal to
// hold (docs/performance.md, "The floor under the default pack").
func BenchmarkServeVsJSONDecode(b *testing.B) {
	records := 100_000
	if v, err := strconv.Atoi(os.Getenv("KVWATCH_BENCH_RECORDS")); err == nil && v > 0 {
		records = v
	}
	b.Run("demo", func(b *testing.B) {
		bodies, n := demotest.Invocations(b, 7)
		serveVsDecode(b, bodies, n)
	})
	for _, callers := range []int{300, 3000} {
		b.Run(fmt.Sprintf("tenant-%d", callers), func(b *testing.B) {
			bodies, n := tenantInvocations(b, demo.TenantOptions{Callers: callers, Vaults: 20, Partitions: 2, Records: records})
			serveVsDecode(b, bodies, n)
		})
	}
}

// serveVsDecode posts bodies (n records) to both handlers, body by body.
func serveVsDecode(b *testing.B, bodies [][]byte, n int) {
	decodeOnly := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var inv map[string]any
		if err := json.Unmarshal(body, &inv); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The host's default shape: Data.events is a JSON string
		// holding the array of event bodies.
		data, _ := inv["Data"].(map[string]any)
		evs, ok := data["events"].(string)
		if !ok {
			http.Error(w, "no Data.events string", http.StatusBadRequest)
			return
		}
		var events any
		if err := json.Unmarshal([]byte(evs), &events); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"Outputs":{},"Logs":[],"ReturnValue":null}`)
	})
	var tDecode, tServe, tBare time.Duration
	total := 0
	for b.Loop() {
		serve, bare := serveHandler(b, true), serveHandler(b, false)
		for _, body := range bodies {
			t0 := time.Now()
			post(b, decodeOnly, body)
			t1 := time.Now()
			post(b, serve, body)
			t2 := time.Now()
			post(b, bare, body)
			t3 := time.Now()
			tDecode += t1.Sub(t0)
			tServe += t2.Sub(t1)
			tBare += t3.Sub(t2)
		}
		total = n
	}
	records := float64(total * b.N)
	decodeRate := records / tDecode.Seconds()
	serveRate := records / tServe.Seconds()
	b.ReportMetric(float64(total), "records")
	b.ReportMetric(decodeRate, "json-decode-records/s")
	b.ReportMetric(serveRate, "serve-records/s")
	b.ReportMetric(records/tBare.Seconds(), "serve-no-rules-records/s")
	b.ReportMetric(serveRate/decodeRate, "ratio")
	b.ReportMetric(float64(tDecode-tBare)/1e3/records, "rules-room-µs/record")
	b.ReportMetric(0, "ns/op")
}

// serveHandler is the AuditEvents handler as `serve` wires it, with
// in-memory state and outbox, the default pack (or, without withRules, no
// rule at all) and no receivers.
func serveHandler(tb testing.TB, withRules bool) http.Handler {
	tb.Helper()
	f, err := config.Parse("kvwatch.yaml", pack.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		tb.Fatal(err)
	}
	rs, s, err := rules.Compile(f)
	if err != nil {
		tb.Fatal(err)
	}
	if !withRules {
		rs = nil
	}
	cooldowns := map[string]time.Duration{}
	for _, r := range rs {
		cooldowns[r.ID] = r.Cooldown
	}
	store := state.NewMemory()
	disp := delivery.New(delivery.Options{Outbox: delivery.NewMemory(), Cooldowns: cooldowns, Log: zerolog.Nop()})
	en := detect.New(rs, s, detect.Options{Store: store, Sink: disp, Log: zerolog.Nop()})
	hb := heartbeat.New(heartbeat.Options{Store: store, After: time.Hour, Log: zerolog.Nop()})
	proc := &pipeline.Pipeline{Letters: &deadletter.Memory{}, Dedup: pipeline.NewDedup(200_000),
		Next: hb.Stage(stats.New(store).Stage(en)), Log: zerolog.Nop()}
	return handlers.New(handlers.Config{}, proc, zerolog.Nop())
}

func post(tb testing.TB, h http.Handler, body []byte) {
	req := httptest.NewRequest(http.MethodPost, "/AuditEvents", bytes.NewReader(body))
	req.RemoteAddr = "127.0.0.1:50000"
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		tb.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
}

// tenantInvocations turns a tenant's traffic into host invocation bodies
// of 100 events (of 10 records) of one partition each, the partitions'
// batches interleaved as they fill.
func tenantInvocations(tb testing.TB, o demo.TenantOptions) (bodies [][]byte, records int) {
	tb.Helper()
	s := demo.Tenant(o)
	parts := make([]host.Batch, s.Options().Partitions)
	seqs := make([]int64, len(parts))
	flush := func(p int) {
		if len(parts[p].Events) == 0 {
			return
		}
		b, err := host.Body(parts[p], host.StringOfObjects)
		if err != nil {
			tb.Fatal(err)
		}
		bodies = append(bodies, b)
		parts[p].Events = nil
	}
	for {
		e, ok := s.Next()
		if !ok {
			break
		}
		p := e.Partition
		parts[p].Partition = strconv.Itoa(p)
		parts[p].Events = append(parts[p].Events, host.Event{Body: demo.EventBody(e.Records), Sequence: seqs[p], Enqueued: time.Unix(0, 0)})
		seqs[p]++
		records += len(e.Records)
		if len(parts[p].Events) == 100 {
			flush(p)
		}
	}
	for p := range parts {
		flush(p)
	}
	return bodies, records
}

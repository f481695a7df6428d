package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
	"github.com/kvwatch/kvwatch/internal/tablestore"
)

// faultStage sits in front of the real stages and fails on demand: a call
// holding the record whose UPN starts with "forced-permanent" first
// applies everything else (as a store whose other writes went through
// would) and then fails as unstorable; with transient set, the next call
// fails as a passing outage would, before anything is written.
type faultStage struct {
	mu        sync.Mutex
	next      pipeline.Stage
	transient bool
}

func (f *faultStage) Consume(ctx context.Context, events []audit.Event) (pipeline.Result, error) {
	f.mu.Lock()
	if f.transient {
		f.transient = false
		f.mu.Unlock()
		return pipeline.Result{}, errors.New("table storage transaction: 503 ServerBusy")
	}
	f.mu.Unlock()
	var rest []audit.Event
	for _, e := range events {
		if !strings.HasPrefix(e.Caller.UPN, "forced-permanent") {
			rest = append(rest, e)
		}
	}
	if len(rest) == len(events) {
		return f.next.Consume(ctx, events)
	}
	if len(rest) > 0 {
		if _, err := f.next.Consume(ctx, rest); err != nil {
			return pipeline.Result{}, err
		}
	}
	return pipeline.Result{}, state.Unstorable(errors.New("entity group transaction failed: 400 PropertyValueTooLarge"))
}

func fillerRecord(i int, upn, clientInfo string) string {
	return fmt.Sprintf(`{"time":"2026-11-23T10:%02d:%02dZ","resourceId":"/SUBSCRIPTIONS/8F3B2C1D-4E5A-4B6C-9D7E-0A1B2C3D4E5F/RESOURCEGROUPS/RG-SECURITY-PROD/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-CONTOSO-PROD","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":"OK","durationMs":"9","callerIpAddress":"10.20.4.%d","correlationId":"c0ffee00-0000-4000-8000-%012d","identity":{"claim":{"oid":"00000000-0000-4000-8000-%012d","upn":%q}},"properties":{"id":"https://kv-contoso-prod.vault.azure.net/secrets/app-%d/6a1b2c3d4e5f40718293a4b5c6d7e8f9","clientInfo":%q,"httpStatusCode":200}}`,
		1+i/60, i%60, i%250, i, i%7, upn, i%5, clientInfo)
}

// The hostile-length corpus (testdata/hostile) in a batch of 100 records
// with a VaultPatch, through the real handler and the real runtime with
// Table state on Azurite: the batch answers 200, every string stored is
// bounded, the VaultPatch is alerted, and every record is counted once. A
// record the store refuses for good (forced by a test stage) is
// dead-lettered with its partition, sequence number, record index and raw
// bytes while the rest of its batch is applied once; a passing failure
// still answers 500 and its retry applies the batch once.
func TestHostileBatchWithTableState(t *testing.T) {
	conn := azuritetest.Start(t)
	cfg := filepath.Join(t.TempDir(), "kvwatch.yaml")
	var hookMu sync.Mutex
	var hooked []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		hooked = append(hooked, string(b))
		hookMu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer hook.Close()
	os.WriteFile(cfg, []byte("receivers:\n  - name: hook\n    webhook: {url: \"${HOOK}\"}\n"), 0o644)
	env := map[string]string{"KVWATCH_TABLE_CONNECTION_STRING": conn, "KVWATCH_TABLE_PREFIX": fmt.Sprintf("h%d", time.Now().UnixNano()%1e9),
		"HOOK": hook.URL, "KVWATCH_CONFIG": cfg}
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	rt, err := wireRuntime(ctx, "", getenv, io.Discard, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	fault := &faultStage{next: rt.Proc.Next}
	rt.Proc.Next = fault
	srv := httptest.NewServer(handlers.New(handlers.Config{Letters: rt.Letters}, rt.Proc, zerolog.Nop()))
	defer srv.Close()

	// 7 hostile records, one per event; 93 ordinary ones, ten to an event,
	// one of which the store will refuse (the largest of its event).
	files, err := filepath.Glob("../../testdata/hostile/*.json")
	if err != nil || len(files) != 7 {
		t.Fatalf("hostile corpus: %v %v", files, err)
	}
	var bodies [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, append(append([]byte(`{"records":[`), bytes.TrimSpace(b)...), ']', '}'))
	}
	const forcedEvent, forcedRecord = 9, 4 // in the third event of ten records
	var recs []string
	for i := range 93 {
		upn, ci := fmt.Sprintf("user%d@contoso.com", i%7), "azsdk-go-azsecrets/1.1.0"
		if len(recs) == forcedRecord && len(bodies) == forcedEvent {
			upn, ci = "forced-permanent@contoso.com", strings.Repeat("z", 900)
		}
		recs = append(recs, fillerRecord(i, upn, ci))
		if len(recs) == 10 || i == 92 {
			bodies = append(bodies, []byte(`{"records":[`+strings.Join(recs, ",")+`]}`))
			recs = nil
		}
	}
	batch := func(partition string, from int64, bodies [][]byte) []byte {
		hb := host.Batch{Namespace: "kvwatch-test.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "$Default", Partition: partition}
		for i, b := range bodies {
			hb.Events = append(hb.Events, host.Event{Body: b, Sequence: from + int64(i), Enqueued: time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC)})
		}
		body, err := host.Body(hb, host.StringOfStrings)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	invoke := func(body []byte) *host.Response {
		t.Helper()
		r, err := host.Invoke(ctx, http.DefaultClient, srv.URL, "AuditEvents", body)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	requests := func() int64 {
		t.Helper()
		st, err := openStores(ctx, getenv, zerolog.Nop()) // a fresh instance: what the tables hold
		if err != nil {
			t.Fatal(err)
		}
		vaults, err := stats.Vaults(ctx, st.State)
		if err != nil {
			t.Fatal(err)
		}
		var keys []state.Key
		for v := range vaults {
			if len(v) > audit.MaxVault {
				t.Errorf("vault %d bytes long in the statistics index", len(v))
			}
			keys = append(keys, stats.DayKey(v, stats.Day(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))))
		}
		got, err := st.State.Get(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, e := range got {
			for _, c := range stats.ReadDay(e).Hours {
				n += c.Requests
			}
		}
		return n
	}

	body := batch("0", 5000, bodies)
	r := invoke(body)
	if r.Status != 200 {
		t.Fatalf("the hostile batch answered %d: %v", r.Status, r.Logs)
	}
	if logs := strings.Join(r.Logs, "\n"); !strings.Contains(logs, "100 records") || !strings.Contains(logs, "1 could not be stored") {
		t.Fatalf("logs:\n%s", logs)
	}
	if n := requests(); n != 99 {
		t.Fatalf("%d requests counted, want 99 (100 records, one dead-lettered)", n)
	}

	// The dead letter: partition, sequence number, record index, raw bytes.
	ls, err := rt.Letters.(*tablestore.DeadLetters).List(ctx, time.Now().Add(-24*time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var mine []deadletter.Letter
	for _, l := range ls {
		if l.Partition == "0" {
			mine = append(mine, l)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%d dead letters, want the one refused record: %+v", len(mine), mine)
	}
	l := mine[0]
	if !l.HasSequence || l.Sequence != 5000+forcedEvent || l.Event != forcedEvent || l.Record != forcedRecord ||
		!strings.Contains(string(l.Bytes()), `"forced-permanent@contoso.com"`) || !json.Valid(l.Bytes()) ||
		!strings.Contains(string(bodies[forcedEvent]), string(l.Bytes())) {
		t.Fatalf("dead letter: sequence %d event %d record %d reason %q raw %.100q", l.Sequence, l.Event, l.Record, l.Reason, l.Bytes())
	}

	// The VaultPatch of the same batch was alerted, as the user sees it.
	if _, err := rt.Timers["Housekeeping"](ctx, handlers.TimerInfo{}); err != nil {
		t.Fatal(err)
	}
	var list bytes.Buffer
	if code := run(ctx, []string{"alerts", "list", "-n", "100"}, getenv, &list, io.Discard); code != 0 {
		t.Fatalf("alerts list: %d", code)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(list.String()), "\n") {
		if line == "" {
			continue
		}
		var show bytes.Buffer
		if code := run(ctx, []string{"alerts", "show", strings.Fields(line)[0]}, getenv, &show, io.Discard); code != 0 {
			t.Fatalf("alerts show: %d", code)
		}
		if len(show.String()) > 256<<10 {
			t.Errorf("an alert of %d bytes", show.Len())
		}
		var a struct {
			Alert struct {
				Findings []struct {
					Rule    string
					Example *audit.Event
				}
			}
		}
		if err := json.Unmarshal(show.Bytes(), &a); err != nil {
			t.Fatalf("alerts show: %v\n%.300s", err, show.String())
		}
		for _, f := range a.Alert.Findings {
			if f.Rule == "vault-protection-weakened" && f.Example != nil && f.Example.Operation == "VaultPatch" &&
				f.Example.Vault == "kv-contoso-prod" {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no vault-protection-weakened alert for the VaultPatch:\n%s", list.String())
	}

	// The same batch again (a checkpoint lost): nothing counted twice.
	if r := invoke(body); r.Status != 200 {
		t.Fatalf("redelivery answered %d: %v", r.Status, r.Logs)
	}
	if n := requests(); n != 99 {
		t.Fatalf("after redelivery %d requests counted, want 99", n)
	}

	// A passing failure: 500, and the host's retry applies the batch once.
	var more [][]byte
	for i := range 3 {
		more = append(more, []byte(`{"records":[`+fillerRecord(200+i, "later@contoso.com", "x")+`]}`))
	}
	body2 := batch("1", 70, more)
	fault.mu.Lock()
	fault.transient = true
	fault.mu.Unlock()
	if r := invoke(body2); r.Status != 500 {
		t.Fatalf("a transient failure answered %d, want 500", r.Status)
	}
	if r := invoke(body2); r.Status != 200 {
		t.Fatalf("the retry answered %d: %v", r.Status, r.Logs)
	}
	if n := requests(); n != 102 {
		t.Fatalf("%d requests counted after the retried batch, want 102", n)
	}
}

package stats_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
	"github.com/kvwatch/kvwatch/internal/stats/statstest"
)

var demoDay = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// demoBatches decodes the demo day, blob by blob, and drops the records
// Azure delivered twice, as the pipeline does.
func demoBatches(tb testing.TB, opts demo.Options) ([][]audit.Event, [][]byte) {
	tb.Helper()
	var d ingest.Decoder
	dedup := pipeline.NewDedup(200_000)
	var out [][]audit.Event
	var raw [][]byte
	for _, b := range demo.Generate(opts) {
		batch := d.File(b.Path, b.Data)
		evs, _ := dedup.Filter(batch.Events)
		out = append(out, evs)
		raw = append(raw, b.Data)
	}
	return out, raw
}

func collect(tb testing.TB, c *stats.Collector, batches [][]audit.Event) {
	tb.Helper()
	for _, b := range batches {
		if err := c.Collect(context.Background(), b); err != nil {
			tb.Fatal(err)
		}
	}
}

// snapshot returns every stats entity of the store, for comparisons.
func snapshot(tb testing.TB, st *state.Memory, vaults []string, days []int64) map[state.Key]*state.Entity {
	tb.Helper()
	var keys []state.Key
	for _, v := range vaults {
		keys = append(keys, stats.MetaKey(v))
		for _, d := range days {
			keys = append(keys, stats.DayKey(v, d))
		}
	}
	keys = append(keys, stats.IndexKey)
	got, err := st.Get(context.Background(), keys)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

var vaults = []string{"kv-data-dev", "kv-payments-prod", "kv-shared-infra", "kv-web-prod"}

func TestPositionOfIsDetectPosition(t *testing.T) {
	for _, s := range []audit.Source{
		{Partition: "3", Sequence: 42, HasSequence: true, Event: 7, Record: 2},
		{Partition: "", Sequence: 0, HasSequence: true},
		{File: "a/PT1H.json", Line: 12, Event: 11},
		{File: "body.json", Event: 4, Record: 9},
		{},
	} {
		gs, gp := stats.PositionOf(s)
		ws, wp := detect.Position(s)
		if gs != ws || gp != wp {
			t.Errorf("%+v: (%q, %d), detect says (%q, %d)", s, gs, gp, ws, wp)
		}
	}
}

func TestPositionsAsDetect(t *testing.T) {
	// The collector derives positions without allocating; they must be
	// detect.Position's exactly, or exactly-once would differ between the
	// two. Checked through behaviour: a batch replayed at the same
	// positions counts nothing, at other positions counts again.
	batches, _ := demoBatches(t, demo.Options{})
	for _, b := range batches[:3] {
		for i := range b {
			s, p := detect.Position(b[i].Source)
			if s == "" || p <= 0 {
				t.Fatalf("demo event without a position: %+v", b[i].Source)
			}
		}
	}
	st := state.NewMemory()
	c := stats.New(st)
	collect(t, c, batches[:1])
	before := snapshot(t, st, vaults, []int64{stats.Day(demoDay)})
	moved := append([]audit.Event(nil), batches[0]...)
	for i := range moved {
		moved[i].Source.File += ".again"
	}
	collect(t, c, [][]audit.Event{batches[0]})
	if after := snapshot(t, st, vaults, []int64{stats.Day(demoDay)}); !reflect.DeepEqual(before, after) {
		t.Fatal("the same batch at the same positions changed the statistics")
	}
	collect(t, c, [][]audit.Event{moved})
	after := snapshot(t, st, vaults, []int64{stats.Day(demoDay)})
	v := batches[0][0].Vault
	k := stats.DayKey(v, stats.Day(demoDay))
	var n1, n2 int64
	for _, c := range stats.ReadDay(before[k]).Hours {
		n1 += c.Requests
	}
	for _, c := range stats.ReadDay(after[k]).Hours {
		n2 += c.Requests
	}
	if n2 != 2*n1 {
		t.Fatalf("other positions: %d requests, want %d", n2, 2*n1)
	}
}

func TestSameBatchTwiceCountsOnce(t *testing.T) {
	batches, _ := demoBatches(t, demo.Options{})
	day := []int64{stats.Day(demoDay)}

	once := state.NewMemory()
	collect(t, stats.New(once), batches)
	want := snapshot(t, once, vaults, day)

	// Every batch twice in a row, by one collector.
	twice := state.NewMemory()
	c := stats.New(twice)
	for _, b := range batches {
		collect(t, c, [][]audit.Event{b, b})
	}
	if got := snapshot(t, twice, vaults, day); !reflect.DeepEqual(got, want) {
		t.Error("each batch applied twice: statistics differ from applying it once")
	}

	// The whole day again by a second collector (another instance: no
	// shared cache) on the same store.
	collect(t, stats.New(twice), batches)
	if got := snapshot(t, twice, vaults, day); !reflect.DeepEqual(got, want) {
		t.Error("the whole day replayed by another instance changed the statistics")
	}

	// Cut differently: halves first, then the whole batch, then overlapping
	// thirds.
	cut := state.NewMemory()
	c = stats.New(cut)
	for _, b := range batches {
		h := len(b) / 2
		collect(t, c, [][]audit.Event{b[:h], b, b[h/2 : h+h/2], b[h:]})
	}
	if got := snapshot(t, cut, vaults, day); !sameWithinAnHour(got, want) {
		t.Error("batches cut differently: statistics differ")
	}
}

// sameWithinAnHour compares snapshots allowing last sightings (Seen.Last,
// moved forward only by an hour or more) to differ by up to an hour: they
// depend on how the input was cut into batches. Everything else must be
// equal.
func sameWithinAnHour(a, b map[state.Key]*state.Entity) bool {
	if len(a) != len(b) {
		return false
	}
	for k, ea := range a {
		eb := b[k]
		if eb == nil {
			return false
		}
		ca, cb := ea.Clone(), eb.Clone()
		if len(ca.Seen) != len(cb.Seen) {
			return false
		}
		for v, sa := range ca.Seen {
			sb, ok := cb.Seen[v]
			if !ok || sa.First != sb.First || sa.Last-sb.Last > 3600 || sb.Last-sa.Last > 3600 {
				return false
			}
			sa.Last, sb.Last = 0, 0
			ca.Seen[v], cb.Seen[v] = sa, sb
		}
		if !reflect.DeepEqual(ca, cb) {
			return false
		}
	}
	return true
}

func TestDemoFiguresMatchRawRecords(t *testing.T) {
	batches, raw := demoBatches(t, demo.Options{})
	st := state.NewMemory()
	collect(t, stats.New(st), batches)
	recs := statstest.Parse(raw)
	got := snapshot(t, st, vaults, []int64{stats.Day(demoDay)})
	for _, v := range vaults {
		d := stats.ReadDay(got[stats.DayKey(v, stats.Day(demoDay))])
		var c stats.Counters
		for h := int64(0); h < 24; h++ {
			hc := d.Hours[stats.Day(demoDay)*24+h]
			c.Add(hc)
			want := statstest.Tally(recs, demoDay.Add(time.Duration(h)*time.Hour), demoDay.Add(time.Duration(h+1)*time.Hour),
				func(r *statstest.Record) bool { return r.Vault == v })
			if hc.Requests != want.Requests || hc.Denied != want.Denied || hc.Success != want.Success ||
				hc.Challenges != want.Challenges || hc.LatencySum != want.LatencySum {
				t.Errorf("%s hour %d: got %+v, want %+v", v, h, hc, want)
			}
		}
		want := statstest.Tally(recs, demoDay, demoDay.Add(24*time.Hour), func(r *statstest.Record) bool { return r.Vault == v })
		if c.Requests == 0 || c.Requests != want.Requests || c.LatencyN != want.Requests {
			t.Errorf("%s: %d requests, want %d", v, c.Requests, want.Requests)
		}
		var fam int64
		for _, m := range d.Families {
			for _, n := range m {
				fam += n
			}
		}
		if fam != want.Requests {
			t.Errorf("%s: families add up to %d, want %d", v, fam, want.Requests)
		}
		if n := d.Latency.Count(); n != want.Requests {
			t.Errorf("%s: histogram holds %d, want %d", v, n, want.Requests)
		}
		p95, exact := d.Latency.Quantile(0.95), want.P95()
		if math.Abs(p95-exact) > 0.125*exact+1 {
			t.Errorf("%s: p95 %.1f ms, exact %.0f ms", v, p95, exact)
		}
		callers := map[string]bool{}
		for _, r := range recs {
			if r.Vault == v && !r.Anonymous && !r.Notification() {
				callers[r.Caller] = true
			}
		}
		if len(d.Callers) != len(callers) {
			t.Errorf("%s: %d distinct callers, want %d", v, len(d.Callers), len(callers))
		}
	}
	// The planted incidents show.
	web := stats.ReadDay(got[stats.DayKey("kv-web-prod", stats.Day(demoDay))])
	if web.DeniedIPs["203.0.113.66"] != 30 {
		t.Errorf("kv-web-prod: denied from 203.0.113.66: %d, want 30", web.DeniedIPs["203.0.113.66"])
	}
	pay := stats.ReadDay(got[stats.DayKey("kv-payments-prod", stats.Day(demoDay))])
	dave := "55e6f708-192a-43b4-85d6-e7f8091a2b3c"
	readers := 0
	for _, m := range pay.Readers {
		if m[dave] > 0 {
			readers++
		}
	}
	if readers != 40 {
		t.Errorf("kv-payments-prod: dave read %d different secrets, want 40", readers)
	}
	dev := stats.ReadDay(got[stats.DayKey("kv-data-dev", stats.Day(demoDay))])
	var patch *stats.AdminOp
	for i, op := range dev.Admin {
		if op.Operation == "VaultPatch" {
			patch = &dev.Admin[i]
		}
	}
	if patch == nil || patch.Config == nil || patch.Config.PublicNetworkAccess != "Enabled" || patch.CallerName != "ravi.patel@contoso.com" {
		t.Errorf("kv-data-dev: VaultPatch not recorded with its configuration: %+v", patch)
	}
	meta := stats.ReadMeta(got[stats.MetaKey("kv-data-dev")])
	if n := len(meta.Configs); n != 1 || meta.Configs[0].Config.NetworkDefaultAction != "Allow" {
		t.Errorf("kv-data-dev: configurations %+v", meta.Configs)
	}
	if meta.Names["33c4d5e6-f708-4192-a3b4-c5d6e7f8091a"] != "ravi.patel@contoso.com" {
		t.Errorf("kv-data-dev: names %v", meta.Names)
	}
	idx, err := stats.Vaults(context.Background(), st)
	if err != nil || len(idx) != 5 { // and kv-legacy-archive, deleted at 16:40
		t.Errorf("index: %v %v", idx, err)
	}
}

func TestBounds(t *testing.T) {
	st := state.NewMemory()
	c := stats.New(st)
	at := demoDay.Add(10 * time.Hour)
	var evs []audit.Event
	for i := range 2500 {
		caller := fmt.Sprintf("caller-%04d", i)
		e := audit.Event{Time: at.Add(time.Duration(i) * time.Millisecond), Vault: "kv-x", Operation: "SecretGet",
			Family: audit.FamilySecret, Kind: audit.KindRead, Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
			ObjectType: "secret", ObjectName: fmt.Sprintf("s-%04d", i%700), DurationMs: int64(i % 50),
			Caller: audit.Caller{Key: caller, KeyFrom: "oid"}, CallerIP: fmt.Sprintf("10.0.%d.%d", i/250, i%250),
			Source: audit.Source{File: "f", Line: i + 1}}
		if i%2 == 0 {
			e.Outcome, e.HTTPStatus = audit.OutcomeDenied, 403
		}
		evs = append(evs, e)
	}
	// A hostile value: long, with the separator inside.
	evs[0].Caller.Key = strings.Repeat("x", 1000) + stats.Sep + "y"
	for i := 0; i < len(evs); i += 100 {
		collect(t, c, [][]audit.Event{evs[i:min(i+100, len(evs))]})
	}
	got := snapshot(t, st, []string{"kv-x"}, []int64{stats.Day(at)})
	e := got[stats.DayKey("kv-x", stats.Day(at))]
	d := stats.ReadDay(e)
	if len(d.Callers) != stats.MaxCallers || !d.CallersCapped {
		t.Errorf("callers: %d kept, capped %v", len(d.Callers), d.CallersCapped)
	}
	for name, n := range map[string]int{"denied callers": len(d.DeniedCallers), "denied IPs": len(d.DeniedIPs),
		"secrets": len(d.Secrets)} {
		if n > stats.MaxTally*6/5 || n < stats.MaxTally {
			t.Errorf("%s: %d entries kept", name, n)
		}
	}
	readers := 0
	for _, m := range d.Readers {
		readers += len(m)
	}
	if readers > stats.MaxTally*6/5 {
		t.Errorf("readers: %d entries kept", readers)
	}
	for k := range e.Tally {
		if len(k) > 600 {
			t.Errorf("tally key of %d bytes kept", len(k))
		}
	}
	for _, ks := range d.Callers {
		if strings.Contains(ks, stats.Sep) {
			t.Errorf("separator kept in %q", ks)
		}
	}
	var reqs int64
	for _, h := range d.Hours {
		reqs += h.Requests
	}
	if reqs != 2500 {
		t.Errorf("%d requests, want 2500", reqs)
	}
}

func TestHistogram(t *testing.T) {
	for ms := int64(0); ms < 1<<20; ms = ms*9/8 + 1 {
		b := stats.Bucket(ms)
		lo, hi := stats.BucketRange(b)
		if ms < lo || ms >= hi {
			t.Fatalf("%d ms in bucket %d [%d, %d)", ms, b, lo, hi)
		}
		if lo >= 16 && float64(hi-lo)/float64(lo) > 0.125 {
			t.Fatalf("bucket %d [%d, %d) wider than 12.5%%", b, lo, hi)
		}
	}
	if b := stats.Bucket(1 << 40); b != stats.NBuckets-1 {
		t.Errorf("huge duration in bucket %d", b)
	}
	var h stats.Histogram
	for i := int64(1); i <= 1000; i++ {
		h[stats.Bucket(i)]++
	}
	if q := h.Quantile(0.95); math.Abs(q-950) > 950*0.125 {
		t.Errorf("p95 of 1..1000: %.1f", q)
	}
	if q := h.Quantile(0.005); q != 5 {
		t.Errorf("p0.5 of 1..1000: %.1f", q)
	}
}

func TestStageHandsOn(t *testing.T) {
	batches, _ := demoBatches(t, demo.Options{})
	st := state.NewMemory()
	n := 0
	stage := stats.New(st).Stage(pipeline.StageFunc(func(_ context.Context, evs []audit.Event) (pipeline.Result, error) {
		n += len(evs)
		return pipeline.Result{Findings: 1}, nil
	}))
	res, err := stage.Consume(context.Background(), batches[0])
	if err != nil || res.Findings != 1 || n != len(batches[0]) {
		t.Fatalf("stage: %v %v %d", res, err, n)
	}
}

// BenchmarkStats measures what the statistics stage adds to ingest on
// seven demo days: each blob is decoded (ingest), then its events are
// collected (stats), timed separately blob by blob, so the machine's noise
// falls on both alike. Goal: ingest+stats costs less than 15% over ingest
// alone (overhead-% = stats time / ingest time).
func BenchmarkStats(b *testing.B) {
	var blobs []demo.Blob
	for d := range 7 {
		for _, bl := range demo.Generate(demo.Options{Day: demoDay.AddDate(0, 0, d)}) {
			if !bytes.Contains([]byte(bl.Path), []byte("/mixed/")) {
				blobs = append(blobs, bl)
			}
		}
	}
	ctx := context.Background()
	var tIngest, tStats time.Duration
	records := 0
	var writes int64
	for b.Loop() {
		var d ingest.Decoder
		st := state.NewMemory()
		c := stats.New(st)
		records = 0
		for _, bl := range blobs {
			t0 := time.Now()
			batch := d.File(bl.Path, bl.Data)
			t1 := time.Now()
			if err := c.Collect(ctx, batch.Events); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			tIngest += t1.Sub(t0)
			tStats += t2.Sub(t1)
			records += len(batch.Events)
		}
		writes = st.Writes
	}
	b.ReportMetric(float64(records), "records")
	b.ReportMetric(float64(records*b.N)/tIngest.Seconds(), "ingest-records/s")
	b.ReportMetric(float64(records*b.N)/(tIngest+tStats).Seconds(), "ingest+stats-records/s")
	b.ReportMetric(tStats.Seconds()/tIngest.Seconds()*100, "overhead-%")
	b.ReportMetric(float64(writes), "writes")
	b.ReportMetric(0, "ns/op")
}

// A day entity can hold a negative tally for a while: another instance's
// trim of the list, folded before the additions it undid (state.Delta).
// The digest reads it as absent, never as a negative count.
func TestReadDayNegativeTallyAbsent(t *testing.T) {
	e := &state.Entity{Tally: map[string]int64{"sr|kept": 2, "sr|dropped": -3, "dc|gone": -1}}
	d := stats.ReadDay(e)
	if want := map[string]int64{"kept": 2}; !maps.Equal(d.Secrets, want) {
		t.Errorf("secrets %v, want %v", d.Secrets, want)
	}
	if len(d.DeniedCallers) != 0 {
		t.Errorf("denied callers %v, want none", d.DeniedCallers)
	}
}

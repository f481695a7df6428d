package detect_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func compile(t testing.TB, yaml string) ([]*rules.Rule, *rules.Settings) {
	t.Helper()
	f, err := config.Parse("test.yaml", []byte(yaml), config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	rs, s, err := rules.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return rs, s
}

type harness struct {
	en    *detect.Engine
	store *state.Memory
	found []finding.Finding
	seen  map[string]bool
	// handed counts every finding handed to the sink, repeats included.
	handed int
}

func newHarness(t testing.TB, yaml string) *harness {
	rs, s := compile(t, yaml)
	h := &harness{store: state.NewMemory(), seen: map[string]bool{}}
	h.en = detect.New(rs, s, detect.Options{Store: h.store, Log: zerolog.Nop(),
		Now: func() time.Time { return t0 },
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			for _, f := range fs {
				h.handed++
				if !h.seen[f.ID] {
					h.seen[f.ID] = true
					h.found = append(h.found, f)
				}
			}
			return nil
		})})
	return h
}

func (h *harness) feed(t testing.TB, evs []audit.Event) {
	t.Helper()
	if _, err := h.en.Consume(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) ids() []string {
	var ids []string
	for _, f := range h.found {
		ids = append(ids, f.Rule+"|"+finding.GroupString(f.Group)+"|"+f.Period.Format(time.RFC3339)+"|"+f.Value)
	}
	slices.Sort(ids)
	return ids
}

// ev builds a secret read by caller at t, at a partition position.
func ev(caller string, t time.Time, seq int64, mods ...func(*audit.Event)) audit.Event {
	e := audit.Event{Time: t, Vault: "kv1", Operation: "SecretGet", Family: audit.FamilySecret, Kind: audit.KindRead,
		Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret", ObjectName: fmt.Sprintf("s%d", seq%7),
		CallerIP: "10.0.0.1", Caller: audit.Caller{ObjectID: caller, Key: caller, KeyFrom: "oid"},
		Source: audit.Source{Partition: "0", Sequence: seq, HasSequence: true}}
	for _, m := range mods {
		m(&e)
	}
	return e
}

const thresholdRule = `
rules:
  - id: burst
    kind: threshold
    match: {families: [secret], kinds: [read]}
    group_by: [vault, caller]
    window: 5m
    count: 10
    cooldown: 1h
`

func series(caller string, start time.Time, n int, every time.Duration, seq0 int64) []audit.Event {
	out := make([]audit.Event, n)
	for i := range out {
		out[i] = ev(caller, start.Add(time.Duration(i)*every), seq0+int64(i))
	}
	return out
}

func TestThresholdWindowEdges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		evs   []audit.Event
		count int
	}{
		{"exactly the count within the window", series("a", t0, 10, 29*time.Second, 0), 1},
		{"one short", series("a", t0, 9, 10*time.Second, 0), 0},
		// 10 events one per 33 s span 5 min of buckets 0..4 plus one at 4:57 → inside
		{"spread to the window's last bucket", series("a", t0, 10, 33*time.Second, 0), 1},
		// 10 events one per 40 s span 6 min: never 10 within 5 one-minute buckets
		{"spread wider than the window", series("a", t0, 10, 40*time.Second, 0), 0},
		{"two callers, five each", append(series("a", t0, 5, time.Second, 0), series("b", t0, 5, time.Second, 100)...), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, thresholdRule)
			h.feed(t, tc.evs)
			if len(h.found) != tc.count {
				t.Fatalf("%d findings, want %d: %v", len(h.found), tc.count, h.ids())
			}
		})
	}
}

func TestThresholdCooldownPeriods(t *testing.T) {
	h := newHarness(t, thresholdRule)
	evs := series("a", t0.Add(10*time.Minute), 12, time.Second, 0)                                    // 09:10
	evs = append(evs, series("a", t0.Add(40*time.Minute), 12, time.Second, 100)...)                   // 09:40, same period
	evs = append(evs, series("a", t0.Add(58*time.Minute+30*time.Second), 12, 15*time.Second, 200)...) // straddles 10:00
	evs = append(evs, series("a", t0.Add(80*time.Minute), 12, time.Second, 300)...)                   // 10:20, separate burst
	h.feed(t, evs)
	want := []string{"burst|vault=kv1 caller=a|2026-11-23T09:00:00Z|", "burst|vault=kv1 caller=a|2026-11-23T10:00:00Z|"}
	if got := h.ids(); !slices.Equal(got, want) {
		t.Fatalf("findings %v, want %v", got, want)
	}
}

// The same batch delivered twice, or cut differently the second time,
// changes no count and raises nothing again.
func TestRedeliveryIsExactlyOnce(t *testing.T) {
	evs := series("a", t0, 60, 10*time.Second, 1000) // 60 reads over 10 minutes
	once := newHarness(t, thresholdRule)
	once.feed(t, evs)
	snapshot := func(h *harness) map[state.Key]int64 {
		out := map[state.Key]int64{}
		keys := []state.Key{}
		for b := int64(-1); b < 3; b++ {
			keys = append(keys, state.Key{Rule: "burst", Group: "kv1\x1fa", Block: t0.Unix()/3600 + b})
		}
		got, err := h.store.Get(context.Background(), keys)
		if err != nil {
			t.Fatal(err)
		}
		for k, e := range got {
			for _, c := range e.Counts {
				out[k] += c
			}
		}
		return out
	}
	want := snapshot(once)
	if len(once.found) != 1 {
		t.Fatalf("%d findings", len(once.found))
	}
	for _, tc := range []struct {
		name string
		cuts [][2]int
	}{
		{"same batch twice", [][2]int{{0, 60}, {0, 60}}},
		{"halves, then the whole", [][2]int{{0, 30}, {30, 60}, {0, 60}}},
		{"overlapping cuts", [][2]int{{0, 25}, {10, 45}, {20, 60}, {59, 60}}},
		{"a prefix twice, then the rest", [][2]int{{0, 10}, {0, 10}, {10, 60}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, thresholdRule)
			for _, c := range tc.cuts {
				h.feed(t, slices.Clone(evs[c[0]:c[1]]))
			}
			if got := snapshot(h); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("counts %v, want %v", got, want)
			}
			if len(h.found) != 1 {
				t.Fatalf("%d findings, want exactly 1: %v", len(h.found), h.ids())
			}
		})
	}
}

// windowsPack has a rule of each window kind, and an each rule.
const windowsPack = `
rules:
  - id: burst
    kind: threshold
    match: {families: [secret], kinds: [read]}
    group_by: [vault, caller]
    window: 5m
    count: 10
    cooldown: 30m
  - id: sweep
    kind: distinct
    match: {families: [secret], kinds: [read]}
    group_by: [caller]
    field: object_name
    window: 10m
    count: 5
    cooldown: 30m
  - id: list-then-read
    kind: sequence
    match: {operations: [SecretList]}
    then: {families: [secret], kinds: [read]}
    group_by: [caller]
    window: 10m
    count: 8
    cooldown: 30m
  - id: each-list
    kind: each
    match: {operations: [SecretList]}
    group_by: [caller]
    cooldown: 30m
`

// Records in any order within the lateness give the same findings, for
// every window kind.
func TestShuffledInputGivesSameFindings(t *testing.T) {
	pack := windowsPack
	var evs []audit.Event
	r := rand.New(rand.NewPCG(1, 2))
	seq := int64(0)
	for _, caller := range []string{"a", "b", "c", "d"} {
		at := t0
		for i := 0; i < 200; i++ {
			at = at.Add(time.Duration(r.IntN(40)) * time.Second)
			e := ev(caller, at, seq)
			e.ObjectName = fmt.Sprintf("s%d", r.IntN(12))
			if r.IntN(25) == 0 {
				e.Operation, e.Kind, e.ObjectName = "SecretList", audit.KindList, ""
			}
			evs = append(evs, e)
			seq++
		}
	}
	slices.SortFunc(evs, func(a, b audit.Event) int { return a.Time.Compare(b.Time) })
	in := newHarness(t, pack)
	for i := 0; i < len(evs); i += 50 {
		in.feed(t, slices.Clone(evs[i:min(i+50, len(evs))]))
	}
	want := in.ids()
	if len(want) < 4 {
		t.Fatalf("the scenario should raise several findings, got %v", want)
	}
	for seed := uint64(1); seed <= 5; seed++ {
		// Shuffle within a 10-minute lateness: sort by time plus a random delay.
		r := rand.New(rand.NewPCG(seed, 99))
		type late struct {
			e   audit.Event
			arr time.Time
		}
		ls := make([]late, len(evs))
		for i, e := range evs {
			e.Source = audit.Source{} // arrival order no longer follows positions
			ls[i] = late{e, e.Time.Add(time.Duration(r.IntN(600)) * time.Second)}
		}
		slices.SortFunc(ls, func(a, b late) int { return a.arr.Compare(b.arr) })
		h := newHarness(t, pack)
		for i := 0; i < len(ls); i += 37 {
			var b []audit.Event
			for _, l := range ls[i:min(i+37, len(ls))] {
				b = append(b, l.e)
			}
			h.feed(t, b)
		}
		if got := h.ids(); !slices.Equal(got, want) {
			t.Fatalf("seed %d: findings\n%v\nwant\n%v", seed, got, want)
		}
	}
}

func TestEachBurstIsOneFindingWithACount(t *testing.T) {
	h := newHarness(t, `
rules:
  - id: purge
    kind: each
    match: {kinds: [purge]}
    group_by: [vault, caller]
    cooldown: 1h
`)
	var evs []audit.Event
	for i := 0; i < 5; i++ {
		evs = append(evs, ev("a", t0.Add(time.Duration(i)*time.Minute), int64(i), func(e *audit.Event) {
			e.Operation, e.Kind = "SecretPurge", audit.KindPurge
		}))
	}
	h.feed(t, evs[:3])
	h.feed(t, evs[3:]) // same period: nothing new
	if len(h.found) != 1 || h.found[0].Count != 3 {
		t.Fatalf("findings %+v", h.found)
	}
}

func TestSequenceNeedsOrderInEventTime(t *testing.T) {
	const rule = `
rules:
  - id: seq
    kind: sequence
    match: {operations: [SecretList]}
    then: {families: [secret], kinds: [read]}
    group_by: [caller]
    window: 10m
    count: 3
`
	list := func(at time.Time, seq int64) audit.Event {
		return ev("a", at, seq, func(e *audit.Event) { e.Operation, e.Kind = "SecretList", audit.KindList })
	}
	reads := series("a", t0.Add(2*time.Minute), 3, 10*time.Second, 10)
	for _, tc := range []struct {
		name string
		evs  []audit.Event
		want int
	}{
		{"list then reads", append([]audit.Event{list(t0, 1)}, reads...), 1},
		{"reads then list", append(slices.Clone(reads), list(t0.Add(5*time.Minute), 20)), 0},
		{"list after the window", append([]audit.Event{list(t0.Add(-20*time.Minute), 1)}, reads...), 0},
		{"list arriving late, after the reads", append(slices.Clone(reads), list(t0, 30)), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, rule)
			for _, e := range tc.evs { // one event per batch: arrival order matters here
				h.feed(t, []audit.Event{e})
			}
			if len(h.found) != tc.want {
				t.Fatalf("%d findings, want %d", len(h.found), tc.want)
			}
		})
	}
}

func TestSpikeLearnsThenFires(t *testing.T) {
	h := newHarness(t, `
rules:
  - id: spike
    kind: spike
    match: {families: [secret], kinds: [read]}
    group_by: [caller]
    window: 1h
    learning: 3d
    baseline: {days: 7, k: 3, ratio: 3, min_count: 20}
`)
	seq := int64(0)
	// Four days of 10 reads an hour.
	for hr := 0; hr < 4*24; hr++ {
		h.feed(t, series("a", t0.Add(time.Duration(hr)*time.Hour), 10, time.Minute, seq))
		seq += 10
	}
	if len(h.found) != 0 {
		t.Fatalf("steady traffic raised %v", h.ids())
	}
	// Then an hour of 100.
	h.feed(t, series("a", t0.Add(96*time.Hour), 100, 30*time.Second, seq))
	if len(h.found) != 1 || h.found[0].Baseline == nil || h.found[0].Baseline.Mean != 10 {
		t.Fatalf("findings %+v", h.found)
	}
	// A new caller bursting on day one is still learning.
	h2 := newHarness(t, `
rules:
  - id: spike
    kind: spike
    match: {families: [secret], kinds: [read]}
    group_by: [caller]
    window: 1h
`)
	h2.feed(t, series("b", t0, 500, time.Second, 0))
	if len(h2.found) != 0 {
		t.Fatalf("a burst with no history raised %v (never 0 against 0)", h2.ids())
	}
}

func TestNewValueAfterLearning(t *testing.T) {
	h := newHarness(t, `
rules:
  - id: new-caller
    kind: new_value
    match: {families: [secret]}
    group_by: [vault]
    fields: [caller]
    learning: 7d
    horizon: 30d
`)
	h.feed(t, []audit.Event{ev("a", t0, 1)})
	h.feed(t, []audit.Event{ev("b", t0.Add(24*time.Hour), 2)}) // new, but still learning
	h.feed(t, []audit.Event{ev("c", t0.Add(8*24*time.Hour), 3), ev("c", t0.Add(8*24*time.Hour+time.Minute), 4)})
	h.feed(t, []audit.Event{ev("a", t0.Add(9*24*time.Hour), 5), ev("c", t0.Add(9*24*time.Hour), 6)})
	if got := h.ids(); len(got) != 1 || h.found[0].Value != "c" {
		t.Fatalf("findings %v, want only c", got)
	}
	// Seen again after more than the horizon: new again.
	h.feed(t, []audit.Event{ev("b", t0.Add(40*24*time.Hour), 7)})
	if len(h.found) != 2 || h.found[1].Value != "b" {
		t.Fatalf("findings %v", h.ids())
	}
}

// State stays bounded over a long run: old blocks are pruned.
func TestStateIsPruned(t *testing.T) {
	h := newHarness(t, thresholdRule)
	seq := int64(0)
	var sizes []int
	for day := 0; day < 6; day++ {
		for hr := 0; hr < 24; hr++ {
			h.feed(t, series("a", t0.Add(time.Duration(day*24+hr)*time.Hour), 5, time.Minute, seq))
			seq += 5
		}
		sizes = append(sizes, h.store.Len())
	}
	if sizes[len(sizes)-1] > 3 || sizes[len(sizes)-1] > sizes[1] {
		t.Fatalf("entities per day %v: not flat", sizes)
	}
}

func TestFindingExplainsItself(t *testing.T) {
	h := newHarness(t, thresholdRule)
	evs := series("a", t0, 12, 5*time.Second, 0)
	for i := range evs {
		evs[i].CorrelationID = fmt.Sprintf("corr-%d", i)
		evs[i].Caller.UPN = "alice@contoso.com"
	}
	h.feed(t, evs)
	if len(h.found) != 1 {
		t.Fatalf("%d findings", len(h.found))
	}
	f := h.found[0]
	switch {
	case f.Count != 12 || f.Threshold != 10:
		t.Errorf("count %d threshold %d", f.Count, f.Threshold)
	case len(f.CorrelationIDs) != 10:
		t.Errorf("correlation ids %v", f.CorrelationIDs)
	case f.Example == nil || f.Vault != "kv1" || len(f.TopObjects) == 0 || len(f.TopIPs) != 1:
		t.Errorf("evidence %+v", f)
	case f.FirstEvent != t0 || f.WindowEnd.Sub(f.WindowStart) != 5*time.Minute:
		t.Errorf("times %v %v %v", f.FirstEvent, f.WindowStart, f.WindowEnd)
	case f.KQL == "" || f.Summary == "":
		t.Errorf("kql %q summary %q", f.KQL, f.Summary)
	}
	if want := "Burst"; f.Title == "" {
		t.Errorf("title %q, want %s", f.Title, want)
	}
}

// A batch whose findings could not be handed on (delivery down) is retried
// by the host; the retry must hand them on, although state already
// absorbed the batch and the finding is already recorded.
func TestFindingsAreHandedOnAgainAfterASinkFailure(t *testing.T) {
	rs, s := compile(t, thresholdRule)
	fail := true
	var got []finding.Finding
	en := detect.New(rs, s, detect.Options{Store: state.NewMemory(), Log: zerolog.Nop(),
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			if fail {
				return fmt.Errorf("receiver store unavailable")
			}
			got = append(got, fs...)
			return nil
		})})
	evs := series("a", t0, 12, time.Second, 0)
	if _, err := en.Consume(context.Background(), slices.Clone(evs)); err == nil {
		t.Fatal("a sink failure must fail the batch, so the host retries it")
	}
	fail = false
	res, err := en.Consume(context.Background(), slices.Clone(evs))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || res.Findings != 0 {
		t.Fatalf("retry handed on %d findings (want 1) and counted %d new (want 0: recorded the first time)", len(got), res.Findings)
	}
}

// A batch whose events all lack the field a distinct or new-value rule
// reads gives that rule's group nothing to count: no finding, and no
// panic (the load run found one: a group with no contributions).
func TestEventsWithoutTheFieldCountNothing(t *testing.T) {
	h := newHarness(t, `
rules:
  - id: many-secrets
    kind: distinct
    match: {families: [secret], kinds: [read]}
    group_by: [caller]
    field: object_name
    window: 10m
    count: 2
    cooldown: 30m
  - id: new-ip
    kind: new_value
    match: {families: [secret]}
    group_by: [vault]
    fields: [ip]
    learning: 0s
    horizon: 30d
`)
	noName := func(e *audit.Event) { e.ObjectName, e.CallerIP = "", "" }
	h.feed(t, []audit.Event{ev("a", t0, 1, noName), ev("a", t0.Add(time.Second), 2, noName)})
	if len(h.found) != 0 {
		t.Fatalf("findings from events without the field: %v", h.ids())
	}
	// The same groups still count once events carry the field.
	h.feed(t, []audit.Event{ev("a", t0.Add(2*time.Second), 3), ev("a", t0.Add(3*time.Second), 4)})
	if ids := h.ids(); len(ids) != 1 || !strings.HasPrefix(ids[0], "many-secrets|") {
		t.Fatalf("findings %v, want one many-secrets", ids)
	}
}

// A day-long distinct window slides by 15-minute buckets (ruleBucket): the
// user still sees the finding the moment both conditions are crossed, with
// the caller's count, over a window of exactly the rule's width, and reads
// a day and a half apart are never counted together.
func TestDayWindowDistinct(t *testing.T) {
	const rule = `
rules:
  - id: day
    kind: distinct
    match: {families: [secret], kinds: [read]}
    group_by: [caller]
    field: object_name
    window: 24h
    count: 11
    min_events: 51
    cooldown: 24h
`
	read := func(caller string, at time.Time, name string, seq int64) audit.Event {
		return ev(caller, at, seq, func(e *audit.Event) { e.ObjectName = name })
	}
	h := newHarness(t, rule)
	seq := int64(0)
	// Caller a: 12 secrets, 5 reads each, one read every 17 minutes (17 hours), an hour per batch.
	var batch []audit.Event
	for i := range 60 {
		at := t0.Add(time.Duration(i*17) * time.Minute)
		batch = append(batch, read("a", at, fmt.Sprintf("s%02d", i%12), seq))
		seq++
		if i%4 == 3 {
			h.feed(t, batch)
			batch = nil
		}
	}
	h.feed(t, batch)
	if len(h.found) != 1 {
		t.Fatalf("findings %v, want one for a", h.ids())
	}
	f := h.found[0]
	if f.Count != 12 || f.WindowEnd.Sub(f.WindowStart) != 24*time.Hour || f.WindowStart.Minute()%15 != 0 {
		t.Errorf("count %d over %v..%v, want 12 distinct over a 24h window starting on a quarter hour", f.Count, f.WindowStart, f.WindowEnd)
	}
	// Caller b: the same reads, but half of them 36 hours after the other half.
	h2 := newHarness(t, rule)
	for i := range 60 {
		at := t0.Add(time.Duration(i) * time.Minute)
		if i%2 == 1 {
			at = at.Add(36 * time.Hour)
		}
		h2.feed(t, []audit.Event{read("b", at, fmt.Sprintf("s%02d", i%12), int64(i))})
	}
	if len(h2.found) != 0 {
		t.Fatalf("reads 36 hours apart counted together: %v", h2.ids())
	}
}

package tablestore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

const routinePack = `
rules:
  - id: list-then-read
    kind: sequence
    match: {operations: [SecretList]}
    then: {families: [secret], kinds: [read]}
    group_by: [vault, caller]
    window: 15m
    count: 10
    cooldown: 1h
    routine: {after: 3, within: 7d, growth: 2}
`

// routineStarts are a configuration provider's starts (a listing, then
// reads of n secrets; the caller an application identity, as routine
// learns those only), at the hours given after t0, one start per
// partition in turn ("0", "1", …, parts of them), sequence numbers
// counting per partition.
func routineStarts(caller string, parts int, n int, hours ...int) [][]audit.Event {
	seq := map[string]int64{}
	var out [][]audit.Event
	for i, h := range hours {
		p := fmt.Sprint(i % parts)
		at := t0.Add(time.Duration(h)*time.Hour + 10*time.Minute)
		var b []audit.Event
		for j := range n + 1 {
			op, fam, kind := "SecretGet", audit.FamilySecret, audit.KindRead
			if j == 0 {
				op, kind = "SecretList", audit.KindList
			}
			b = append(b, audit.Event{Time: at.Add(time.Duration(j) * time.Second), Vault: "kv1", Operation: op, Family: fam, Kind: kind,
				Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret", ObjectName: fmt.Sprintf("s%d", j),
				CallerIP: "10.0.0.1", Caller: audit.Caller{ObjectID: caller, AppID: "app-" + caller, Key: caller, KeyFrom: "oid"},
				Source: audit.Source{Partition: p, Sequence: seq[p], HasSequence: true}})
			seq[p]++
		}
		out = append(out, b)
	}
	return out
}

// routineVerdicts runs batches through an engine over store, each batch
// with the engines given in turn (instances), and returns the findings'
// last versions: "period count routine|alerted", in period order.
func routineVerdicts(t *testing.T, stores []state.Store, batches [][]audit.Event) []string {
	t.Helper()
	rs, s := compilePack(t, routinePack)
	last := map[string]finding.Finding{}
	var ens []*detect.Engine
	for _, st := range stores {
		ens = append(ens, detect.New(rs, s, detect.Options{Store: st, Log: zerolog.Nop(), Now: func() time.Time { return t0 },
			Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
				for _, f := range fs {
					last[f.ID] = f
				}
				return nil
			})}))
	}
	for i, b := range batches {
		if _, err := ens[i%len(ens)].Consume(context.Background(), slices.Clone(b)); err != nil {
			t.Fatal(err)
		}
	}
	var fs []finding.Finding
	for _, f := range last {
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(a, b finding.Finding) int { return a.Period.Compare(b.Period) })
	var out []string
	for _, f := range fs {
		v := "alerted"
		if f.Routine {
			v = "routine"
		} else if strings.Contains(f.Summary, "routine from now on") {
			v = "told"
		} else if strings.Contains(f.Summary, "above its routine") {
			v = "above"
		}
		out = append(out, fmt.Sprintf("%s %s %d %s", finding.GroupString(f.Group), f.Period.Format("01-02T15"), f.Count, v))
	}
	return out
}

// Routine learning through Table state (a Journal): the provider's starts
// on two partitions, served by two instances in turn, and redelivered,
// learn exactly as memory state does in one batch; the routine's entity
// is merged from both streams' logs.
func TestRoutineTableState(t *testing.T) {
	starts := routineStarts("provider", 2, 20, 0, 3, 6, 9, 30)
	starts = append(starts, routineStarts("provider", 2, 60, 33)[0])                 // 3× its reads
	starts[len(starts)-1] = shiftSeq(starts[len(starts)-1], 100)                     // on partition 0, after the others
	starts = append(starts, shiftSeq(routineStarts("newcomer", 1, 20, 33)[0], 1000)) // another caller

	var all []audit.Event
	for _, b := range starts {
		all = append(all, b...)
	}
	want := routineVerdicts(t, []state.Store{state.NewMemory()}, [][]audit.Event{all})
	wantLines := []string{
		"vault=kv1 caller=newcomer 11-24T18 20 alerted",
		"vault=kv1 caller=provider 11-23T09 20 alerted",
		"vault=kv1 caller=provider 11-23T12 20 alerted",
		"vault=kv1 caller=provider 11-23T15 20 told",
		"vault=kv1 caller=provider 11-23T18 20 routine",
		"vault=kv1 caller=provider 11-24T15 20 routine",
		"vault=kv1 caller=provider 11-24T18 60 above",
	}
	slices.Sort(want)
	if !slices.Equal(want, wantLines) {
		t.Fatalf("memory state:\n  %s\nwant\n  %s", strings.Join(want, "\n  "), strings.Join(wantLines, "\n  "))
	}

	j1, prefix := newJournal(t, "", JournalOptions{})
	j2, _ := newJournal(t, prefix, JournalOptions{})
	// Every start delivered twice (a redelivery), the instances taking
	// turns.
	var twice [][]audit.Event
	for _, b := range starts {
		twice = append(twice, b, b)
	}
	got := routineVerdicts(t, []state.Store{j1, j2, j2, j1}, twice)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Table state, two instances, redelivered:\n  %s\nmemory state:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// Both instances' views hold one routine entity for the provider: the
	// newest three periods, the learned counts.
	k := state.Key{Rule: "list-then-read", Group: "kv1\x1fprovider", Block: detect.BlockRoutine}
	for i, j := range []*Journal{caughtUp(t, j1), caughtUp(t, j2)} {
		e, err := j.Get(context.Background(), []state.Key{k})
		if err != nil {
			t.Fatal(err)
		}
		if len(e[k].Seen) != 3 || e[k].Seen[fmt.Sprint(t0.Add(33*time.Hour).Unix())].Last != 60 {
			t.Errorf("instance %d: routine entity %+v", i+1, e[k])
		}
	}
}

func shiftSeq(evs []audit.Event, by int64) []audit.Event {
	out := slices.Clone(evs)
	for i := range out {
		out[i].Source.Sequence += by
	}
	return out
}

// The outbox keeps a routine decision (a finding recorded, not alerted),
// read alone or with others, and the first decision stays.
func TestOutboxRoutineDecision(t *testing.T) {
	o := newStore(t, testPrefix(), Options{}).Outbox()
	ctx := context.Background()
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if err := o.Decide(ctx, map[string]delivery.Decision{"f-routine": {Routine: true, At: at}, "f-alert": {Alert: "a1", At: at}}); err != nil {
		t.Fatal(err)
	}
	if err := o.Decide(ctx, map[string]delivery.Decision{"f-routine": {Alert: "a2", At: at}}); err != nil {
		t.Fatal(err)
	}
	d, ok, err := o.Decision(ctx, "f-routine")
	if err != nil || !ok || !d.Routine || d.Alert != "" {
		t.Fatalf("decision %+v %v %v", d, ok, err)
	}
	ds, err := o.Decisions(ctx, []string{"f-routine", "f-alert", "f-none"})
	if err != nil || len(ds) != 2 || !ds["f-routine"].Routine || ds["f-alert"].Routine || ds["f-alert"].Alert != "a1" {
		t.Fatalf("decisions %+v %v", ds, err)
	}
}

// Through the Table outbox, as in memory: a routine finding is recorded
// (a routine decision), sent to no one, however often it is handed on, by
// one instance or two; handed on above its routine it is alerted once.
func TestOutboxRoutineFindings(t *testing.T) {
	prefix := testPrefix()
	o1, o2 := newStore(t, prefix, Options{}).Outbox(), newStore(t, prefix, Options{}).Outbox()
	clk := &testClock{t: t0}
	h := newHook(t)
	d1, d2 := newTestDispatcher(t, o1, clk, h, "a"), newTestDispatcher(t, o2, clk, h, "b")
	ctx := context.Background()
	found := func(d *delivery.Dispatcher, fs ...finding.Finding) {
		t.Helper()
		if err := d.Found(ctx, fs); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	told := burst("app", t0)
	found(d1, told)
	quiet := burst("app", t0.Add(2*time.Hour))
	quiet.Routine = true
	other := burst("newcomer", t0.Add(2*time.Hour))
	found(d1, quiet, other)
	found(d2, quiet, other)
	found(d1, quiet)
	if got := h.got(); len(got) != 2 || got[0].Findings[0].ID != told.ID || got[1].Findings[0].ID != other.ID {
		t.Fatalf("%d alerts, want the one before the routine and the newcomer's: %+v", len(got), got)
	}
	dec, ok, err := o2.Decision(ctx, quiet.ID)
	if err != nil || !ok || !dec.Routine || dec.Alert != "" {
		t.Fatalf("decision %+v %v %v, want routine", dec, ok, err)
	}
	// What was not alerted is listed, with what it was about, for the
	// digests and `kvwatch alerts list`, by either instance.
	for _, o := range []*Outbox{o1, o2} {
		rds, truncated, err := o.RoutineDecisions(ctx, t0.Add(-time.Hour), t0.Add(24*time.Hour), 100)
		if err != nil || truncated || len(rds) != 1 || rds[0].Finding != quiet.ID || rds[0].Of == nil ||
			rds[0].Of.Rule != "burst" || rds[0].Of.Vault != "kv1" || rds[0].Of.Caller != "app" || rds[0].Of.Count != 30 {
			t.Fatalf("routine decisions %+v (truncated %v, %v), want the routine finding's", rds, truncated, err)
		}
	}
	if rds, _, err := o1.RoutineDecisions(ctx, t0.Add(time.Second), t0.Add(24*time.Hour), 100); err != nil || len(rds) != 0 {
		t.Fatalf("decided before the range, listed: %+v %v", rds, err)
	}
	above := quiet
	above.Routine, above.Count = false, 90
	found(d2, above)
	found(d1, above) // a retry, by the other instance
	got := h.got()
	if len(got) != 3 || got[2].Findings[0].ID != above.ID || got[2].Findings[0].Count != 90 {
		t.Fatalf("%d alerts, want the finding above its routine alerted once: %+v", len(got), got)
	}
}

// A routine decision's brief is kept on its row, bounded: a group of huge
// values (attacker-controlled) keeps the rule, vault and a cut caller; a
// routine decision from before briefs were written is listed without one;
// other decisions are not listed; finding IDs that are not plain row keys
// are listed by their own ID.
func TestOutboxRoutineBrief(t *testing.T) {
	o := newStore(t, testPrefix(), Options{}).Outbox()
	ctx := context.Background()
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	huge := strings.Repeat("x", 40_000)
	ds := map[string]delivery.Decision{
		"f-big":      {Routine: true, At: at, Of: &delivery.Brief{Rule: "r", Vault: "kv1", Caller: huge, Group: []finding.Pair{{Field: "caller", Value: huge}}}},
		"f-old":      {Routine: true, At: at.Add(time.Second)},
		"f/odd'key":  {Routine: true, At: at.Add(2 * time.Second), Of: &delivery.Brief{Rule: "r2", Caller: "c"}},
		"f-alert":    {Alert: "a1", At: at},
		"f-held":     {Suppressed: true, At: at},
		"f-tomorrow": {Routine: true, At: at.Add(24 * time.Hour)},
	}
	if err := o.Decide(ctx, ds); err != nil {
		t.Fatal(err)
	}
	got, truncated, err := o.RoutineDecisions(ctx, at, at.Add(time.Hour), 10)
	if err != nil || truncated || len(got) != 3 {
		t.Fatalf("%d routine decisions (truncated %v, %v): %+v", len(got), truncated, err, got)
	}
	if got[0].Finding != "f/odd'key" || got[0].Of == nil || got[0].Of.Rule != "r2" {
		t.Errorf("newest: %+v", got[0])
	}
	if got[1].Finding != "f-old" || got[1].Of != nil {
		t.Errorf("without a brief: %+v", got[1])
	}
	if b := got[2].Of; got[2].Finding != "f-big" || b == nil || b.Rule != "r" || b.Vault != "kv1" || len(b.Caller) != 1024 || b.Group != nil {
		t.Errorf("huge brief: %s %+v", got[2].Finding, b)
	}
	if got, truncated, _ := o.RoutineDecisions(ctx, at, at.Add(time.Hour), 1); len(got) != 1 || !truncated {
		t.Errorf("limit 1: %d, truncated %v", len(got), truncated)
	}
}

// Routine findings are reported from Table state as from memory (issue
// 12.4): detection on a Journal, delivery on the Table outbox, two
// instances taking turns, every start delivered twice; the weekly digest
// computed from the tables (as the Digest timer in serve does) says what
// was learned as routine and not alerted, per rule and group, and a
// person sweeping as often is not there.
func TestDigestRoutineTableState(t *testing.T) {
	ctx := context.Background()
	prefix := testPrefix()
	rs, settings := compilePack(t, routinePack)
	var mu sync.Mutex
	var latest time.Time
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return latest }
	var procs []pipelineStage
	var outbox *Outbox
	for i := range 2 {
		s := newStore(t, prefix, Options{})
		if i == 0 {
			t.Cleanup(func() { serviceClient(t).DeleteTable(context.Background(), prefix+JournalTable, nil) })
			outbox = s.Outbox()
		}
		j, err := s.Journal(ctx, serviceClient(t), JournalOptions{Direct: func(k state.Key) bool { return k.Rule == "_claim" }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(j.Wait)
		disp := delivery.New(delivery.Options{Outbox: s.Outbox(), Now: now, Log: zerolog.Nop(), Instance: fmt.Sprint("i", i),
			Cooldowns: map[string]time.Duration{"list-then-read": time.Hour},
			Receivers: map[string]delivery.Notifier{"console": delivery.NotifierFunc(func(context.Context, *alert.Alert) error { return nil })}})
		en := detect.New(rs, settings, detect.Options{Store: j, Log: zerolog.Nop(), Now: func() time.Time { return t0 },
			Sink: detect.SinkFunc(func(ctx context.Context, fs []finding.Finding) error {
				mu.Lock()
				for _, f := range fs {
					if f.LastEvent.After(latest) {
						latest = f.LastEvent
					}
				}
				mu.Unlock()
				if err := disp.Found(ctx, fs); err != nil {
					return err
				}
				_, err := disp.Flush(ctx)
				return err
			})})
		procs = append(procs, pipelineStage{j, stats.New(j).Stage(en)})
	}
	// The provider: told at its third start, routine at its 4th and 5th
	// (Monday 18:10, Tuesday 15:10). A person (a UPN beside Azure CLI's
	// app id) starting as often: alerted every time.
	starts := routineStarts("provider", 1, 20, 0, 3, 6, 9, 30)
	for _, b := range routineStarts("dave", 1, 20, 1, 4, 7, 10, 31) {
		for i := range b {
			b[i].Caller.UPN, b[i].Caller.AppID = "dave.okafor@contoso.com", "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
		}
		starts = append(starts, shiftSeq(b, 1000))
	}
	slices.SortStableFunc(starts, func(a, b []audit.Event) int { return a[0].Time.Compare(b[0].Time) })
	for i, b := range starts {
		for k := range 2 { // delivered twice, by either instance
			if _, err := procs[(i+k)%2].next.Consume(ctx, slices.Clone(b)); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := digest.Compute(ctx, procs[0].store, outbox, digest.Weekly, time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	text := digest.Text(r)
	for _, want := range []string{
		"  routine           2 findings learned as routine, not alerted\n",
		"Learned as routine, not alerted: 2 findings (list-then-read: provider on kv1 ×2)\n",
		"  list-then-read                   ×2    provider on kv1, 2026-11-23 18:10 – 2026-11-24 15:10\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("weekly digest from Table state lacks %q:\n%s", want, text)
		}
	}
	if section := text[strings.Index(text, "Learned as routine"):]; strings.Contains(section[:strings.Index(section, "\n\n")], "dave") {
		t.Errorf("a person in the routine section:\n%s", section)
	}
	alerted := 0
	for _, f := range r.Findings {
		if strings.Contains(f.Summary, "dave.okafor@contoso.com") {
			alerted++
		}
	}
	if alerted == 0 {
		t.Errorf("the person's sweeps are not among the findings alerted:\n%s", text)
	}
}

type pipelineStage struct {
	store state.Store
	next  pipeline.Stage
}

package detect_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
)

const routineRule = `
rules:
  - id: burst
    kind: threshold
    match: {families: [secret]}
    group_by: [vault, caller]
    window: 5m
    count: 10
    cooldown: 1h
    routine: {after: 3, within: 7d, growth: 2}
`

// routineRun is an engine over memory state whose sink keeps every
// finding's last version.
type routineRun struct {
	en    *detect.Engine
	store *state.Memory
	last  map[string]finding.Finding
	order []string
}

func newRoutineRun(t testing.TB, yaml string) *routineRun {
	rs, s := compile(t, yaml)
	r := &routineRun{store: state.NewMemory(), last: map[string]finding.Finding{}}
	r.en = detect.New(rs, s, detect.Options{Store: r.store, Log: zerolog.Nop(), Now: func() time.Time { return t0 },
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			for _, f := range fs {
				if _, ok := r.last[f.ID]; !ok {
					r.order = append(r.order, f.ID)
				}
				r.last[f.ID] = f
			}
			return nil
		})})
	return r
}

func (r *routineRun) feed(t testing.TB, evs []audit.Event) {
	t.Helper()
	if _, err := r.en.Consume(context.Background(), slices.Clone(evs)); err != nil {
		t.Fatal(err)
	}
}

// verdicts lists the findings of a group in period order: "period count
// routine|alerted".
func (r *routineRun) verdicts(caller string) []string {
	var fs []finding.Finding
	for _, id := range r.order {
		f := r.last[id]
		if strings.Contains(finding.GroupString(f.Group), "caller="+caller) {
			fs = append(fs, f)
		}
	}
	slices.SortFunc(fs, func(a, b finding.Finding) int { return a.Period.Compare(b.Period) })
	var out []string
	for _, f := range fs {
		v := "alerted"
		if f.Routine {
			v = "routine"
		}
		out = append(out, fmt.Sprintf("%s %d %s", f.Period.Format("01-02T15"), f.Count, v))
	}
	return out
}

// entity returns a group's routine entity as JSON.
func (r *routineRun) entity(t testing.TB, group string) string {
	t.Helper()
	k := state.Key{Rule: "burst", Group: group, Block: detect.BlockRoutine}
	got, err := r.store.Get(context.Background(), []state.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got[k])
	return string(b)
}

// judged returns a routine entity as the group's next judgement reads it:
// its newest period's count is written when a later period is judged
// (until then it is the count it was first judged with), so it is left
// out.
func judged(t testing.TB, js string) string {
	t.Helper()
	var e state.Entity
	if err := json.Unmarshal([]byte(js), &e); err != nil {
		t.Fatal(err)
	}
	newest := ""
	for k := range e.Seen {
		if len(k) > len(newest) || (len(k) == len(newest) && k > newest) {
			newest = k
		}
	}
	if s, ok := e.Seen[newest]; ok {
		s.Last = 0
		e.Seen[newest] = s
	}
	b, _ := json.Marshal(&e)
	return string(b)
}

// bursts makes caller's bursts of n reads (2 s apart) at each start, at
// consecutive sequence numbers from seq0. The caller is an application
// identity (an app id, no UPN): routine learns those only.
func bursts(caller string, seq0 int64, n int, starts ...time.Time) []audit.Event {
	return burstsBy(caller, asApp, seq0, n, starts...)
}

// asApp and asPerson make an event's caller an application identity (a
// service principal: app id, no UPN) or a person (a UPN beside the app id
// of the client used, as Azure CLI's tokens carry).
func asApp(e *audit.Event) { e.Caller.AppID = "appid-" + e.Caller.Key }

func asPerson(e *audit.Event) {
	e.Caller.AppID, e.Caller.UPN = "04b07795-8ddb-461a-bbee-02f9e1bf7b46", e.Caller.Key+"@contoso.com"
}

func burstsBy(caller string, who func(*audit.Event), seq0 int64, n int, starts ...time.Time) []audit.Event {
	var out []audit.Event
	for _, s := range starts {
		for i := range n {
			out = append(out, ev(caller, s.Add(time.Duration(i)*2*time.Second), seq0, who))
			seq0++
		}
	}
	return out
}

func hours(hs ...int) []time.Time {
	out := make([]time.Time, len(hs))
	for i, h := range hs {
		out[i] = t0.Add(time.Duration(h)*time.Hour + 7*time.Minute)
	}
	return out
}

// A group's routine is state like any other: a batch delivered again, in
// part or cut differently, changes neither the verdicts nor the entity (as
// the next judgement reads it); and the verdicts do not depend on the
// batching.
func TestRoutineExactlyOnce(t *testing.T) {
	evs := bursts("app", 0, 12, hours(0, 3, 6, 9, 30)...)
	want := []string{"11-23T09 12 alerted", "11-23T12 12 alerted", "11-23T15 12 alerted", "11-23T18 12 routine", "11-24T15 12 routine"}

	clean := newRoutineRun(t, routineRule)
	clean.feed(t, evs)
	if got := clean.verdicts("app"); !slices.Equal(got, want) {
		t.Fatalf("one batch: %q, want %q", got, want)
	}
	group := clean.last[clean.order[0]].Group
	key := group[0].Value + "\x1f" + group[1].Value
	wantEntity := clean.entity(t, key)
	if !strings.Contains(wantEntity, `"s":`) {
		t.Fatalf("no routine entity under %q: %s", key, wantEntity)
	}

	for _, tc := range []struct {
		name string
		cuts func() [][]audit.Event
	}{
		{"every batch twice", func() (out [][]audit.Event) {
			for i := 0; i < len(evs); i += 7 {
				b := evs[i:min(i+7, len(evs))]
				out = append(out, b, b)
			}
			return out
		}},
		{"halves, then the whole again", func() [][]audit.Event {
			return [][]audit.Event{evs[:len(evs)/2], evs[len(evs)/2:], evs}
		}},
		{"overlapping cuts", func() (out [][]audit.Event) {
			for i := 0; i < len(evs); i += 5 {
				out = append(out, evs[max(i-3, 0):min(i+5, len(evs))])
			}
			return out
		}},
		{"one event at a time", func() (out [][]audit.Event) {
			for i := range evs {
				out = append(out, evs[i:i+1])
			}
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRoutineRun(t, routineRule)
			for _, b := range tc.cuts() {
				r.feed(t, b)
			}
			if got := r.verdicts("app"); !slices.Equal(got, want) {
				t.Errorf("verdicts %q, want %q", got, want)
			}
			if got := r.entity(t, key); judged(t, got) != judged(t, wantEntity) {
				t.Errorf("routine entity\n  %s\nwant\n  %s", got, wantEntity)
			}
		})
	}
}

// The routine keeps at most `after` periods, none older than `within`
// behind the newest: a caller that bursts every hour for 10 days holds 3.
func TestRoutineStateBounded(t *testing.T) {
	r := newRoutineRun(t, routineRule)
	var hs []int
	for h := range 240 {
		hs = append(hs, h)
	}
	evs := bursts("app", 0, 10, hours(hs...)...)
	for i := 0; i < len(evs); i += 100 {
		r.feed(t, evs[i:min(i+100, len(evs))])
	}
	got := r.verdicts("app")
	if len(got) != 240 || strings.HasSuffix(got[1], "routine") || strings.HasSuffix(got[2], "routine") || !strings.HasSuffix(got[3], "routine") {
		t.Fatalf("%d findings: %q ...", len(got), got[:min(5, len(got))])
	}
	for _, v := range got[3:] {
		if !strings.HasSuffix(v, "routine") {
			t.Fatalf("%s is not routine", v)
		}
	}
	var e state.Entity
	if err := json.Unmarshal([]byte(r.entity(t, "kv1\x1fapp")), &e); err != nil {
		t.Fatal(err)
	}
	if len(e.Seen) != 3 || len(e.Values) != 0 {
		t.Errorf("routine entity holds %d periods and %d operation lists, want 3 and none: %+v", len(e.Seen), len(e.Values), e)
	}
}

// A routine group's finding that carries a reportable operation (a
// delete, purge, backup, restore, policy, recovery or vault write) its
// routine periods did not is alerted, and says which; the next one with it
// is routine again (learned).
func TestRoutineReportableOperation(t *testing.T) {
	r := newRoutineRun(t, routineRule)
	evs := bursts("app", 0, 12, hours(0, 3, 6)...)
	del := bursts("app", 100, 12, hours(9, 12)...)
	for i := range del {
		if i%12 == 5 {
			del[i].Operation, del[i].Kind = "SecretDelete", audit.KindDelete
		}
	}
	r.feed(t, evs)
	r.feed(t, del[:12])
	r.feed(t, del[12:])
	want := []string{"11-23T09 12 alerted", "11-23T12 12 alerted", "11-23T15 12 alerted", "11-23T18 12 alerted", "11-23T21 12 routine"}
	if got := r.verdicts("app"); !slices.Equal(got, want) {
		t.Fatalf("verdicts %q, want %q", got, want)
	}
	for _, f := range r.last {
		if f.Period.Hour() == 18 && !strings.HasSuffix(f.Summary, "; above its routine: SecretDelete, which its routine did not have") {
			t.Errorf("summary %q", f.Summary)
		}
	}
}

// Rules without routine are not judged (no entity), and a routine is per
// rule: the same group fires routinely for one rule and not another.
func TestRoutinePerRule(t *testing.T) {
	r := newRoutineRun(t, routineRule+`
  - id: burst-plain
    kind: threshold
    match: {families: [secret]}
    group_by: [vault, caller]
    window: 5m
    count: 10
    cooldown: 1h
`)
	r.feed(t, bursts("app", 0, 12, hours(0, 3, 6, 9)...))
	routine := map[string]int{}
	for _, f := range r.last {
		if f.Routine {
			routine[f.Rule]++
		}
	}
	if routine["burst"] != 1 || routine["burst-plain"] != 0 || len(r.last) != 8 {
		t.Errorf("routine findings %v of %d", routine, len(r.last))
	}
	got, _ := r.store.Get(context.Background(), []state.Key{{Rule: "burst-plain", Group: "kv1\x1fapp", Block: detect.BlockRoutine}})
	if len(got) != 0 {
		t.Errorf("a rule without routine keeps routine state")
	}
}

// Issue 12.4: only application identities are learned as routine. An app
// that sweeps a vault every day for 4 days is told on the 3rd and routine
// on the 4th; a person doing the same (a UPN beside Azure CLI's app id, a
// UPN alone, a guest's or Resource Manager's name that is an address) is
// alerted every day, and writes no routine state; so is a caller with no
// app id at all. One batch a day, and all 4 days in one batch.
func TestRoutineAppsOnlyNotPeople(t *testing.T) {
	const daily = `
rules:
  - id: burst
    kind: threshold
    match: {families: [secret]}
    group_by: [vault, caller]
    window: 5m
    count: 10
    cooldown: 24h
    routine: {after: 3, within: 7d, growth: 2}
`
	days := []time.Time{t0.Add(2 * time.Hour), t0.Add(26 * time.Hour), t0.Add(50 * time.Hour), t0.Add(74 * time.Hour)}
	alerted4 := []string{"11-23T00 12 alerted", "11-24T00 12 alerted", "11-25T00 12 alerted", "11-26T00 12 alerted"}
	for _, tc := range []struct {
		name    string
		who     func(*audit.Event)
		want    []string
		learned bool
	}{
		{"service principal", asApp, []string{"11-23T00 12 alerted", "11-24T00 12 alerted", "11-25T00 12 alerted", "11-26T00 12 routine"}, true},
		{"managed identity known by app id alone", func(e *audit.Event) {
			e.Caller = audit.Caller{AppID: e.Caller.Key, Key: e.Caller.Key, KeyFrom: "appid"}
		}, []string{"11-23T00 12 alerted", "11-24T00 12 alerted", "11-25T00 12 alerted", "11-26T00 12 routine"}, true},
		{"person through Azure CLI", asPerson, alerted4, false},
		{"person, UPN only", func(e *audit.Event) { e.Caller.UPN = e.Caller.Key + "@contoso.com" }, alerted4, false},
		{"guest (unique_name)", func(e *audit.Event) {
			e.Caller.AppID, e.Caller.UPN = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "live.com#"+e.Caller.Key+"@outlook.com"
		}, alerted4, false},
		{"person through Resource Manager (name claim)", func(e *audit.Event) {
			e.Caller.AppID, e.Caller.Name = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", e.Caller.Key+"@contoso.com"
		}, alerted4, false},
		{"no app id", func(*audit.Event) {}, alerted4, false},
	} {
		for _, batching := range []string{"a batch a day", "one batch"} {
			t.Run(tc.name+"/"+batching, func(t *testing.T) {
				r := newRoutineRun(t, daily)
				evs := burstsBy("sweeper", tc.who, 0, 12, days...)
				if batching == "one batch" {
					r.feed(t, evs)
				} else {
					for i := 0; i < len(evs); i += 12 {
						r.feed(t, evs[i:i+12])
					}
				}
				if got := r.verdicts("sweeper"); !slices.Equal(got, tc.want) {
					t.Errorf("verdicts %q, want %q", got, tc.want)
				}
				told := 0
				for _, f := range r.last {
					if strings.Contains(f.Summary, "routine from now on") {
						told++
					}
				}
				if ent := r.entity(t, "kv1\x1fsweeper"); (ent != "null") != tc.learned || told != map[bool]int{true: 1}[tc.learned] {
					t.Errorf("routine entity %s, %d findings say routine from now on; learned: %v", ent, told, tc.learned)
				}
			})
		}
	}
}

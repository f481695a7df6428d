package digest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// The callers of the routine day: two applications (a service principal
// and a managed identity: an app id, no UPN) and a person (a UPN beside
// Azure CLI's app id).
var (
	ordersAPI = audit.Caller{ObjectID: "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", AppID: "0f1e2d3c-4b5a-4968-8776-5a4b3c2d1e0f",
		Key: "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", KeyFrom: "oid"}
	nightlyJob = audit.Caller{ObjectID: "e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9", AppID: "7d9e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
		Key: "e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9", KeyFrom: "oid"}
	dave = audit.Caller{ObjectID: "55e6f708-192a-43b4-85d6-e7f8091a2b3c", AppID: "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
		UPN: "dave.okafor@contoso.com", Key: "55e6f708-192a-43b4-85d6-e7f8091a2b3c", KeyFrom: "oid"}
)

// routineDay is 23 November 2026 through statistics, the pack's
// listing-then-read-burst (routine: after 3 hours within 7 days) and
// delivery, in memory, on event time, a batch per start:
//
//   - orders-api lists kv-payments-prod's secrets and reads 20 at 12
//     starts, one an hour from 00:10: alerted at the first two, told at the
//     third, routine at the 9 others; at its last, 40 more reads in a later
//     batch put it above its routine (60 > 2×20): alerted, so not routine;
//   - a nightly job does the same on kv-orders at 5 starts: 2 routine;
//   - dave does the same on kv-payments-prod at 5 starts: a person, never
//     routine, alerted every time.
func routineDay(t *testing.T, st state.Store, outbox delivery.Outbox) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Parse("kvwatch.yaml", pack.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	rs, settings, err := rules.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The sweep's other rules learn the same way: one keeps the counts
	// readable.
	rs = slices.DeleteFunc(rs, func(r *rules.Rule) bool { return r.ID != "listing-then-read-burst" })
	cooldowns := map[string]time.Duration{}
	for _, r := range rs {
		cooldowns[r.ID] = r.Cooldown
	}
	var latest time.Time
	disp := delivery.New(delivery.Options{Outbox: outbox, Cooldowns: cooldowns, Instance: "test", Log: zerolog.Nop(),
		Receivers: map[string]delivery.Notifier{"console": delivery.NotifierFunc(func(context.Context, *alert.Alert) error { return nil })},
		Now:       func() time.Time { return latest }})
	en := detect.New(rs, settings, detect.Options{Store: st, Log: zerolog.Nop(), Sink: detect.SinkFunc(func(ctx context.Context, fs []finding.Finding) error {
		for _, f := range fs {
			if f.LastEvent.After(latest) {
				latest = f.LastEvent
			}
		}
		if err := disp.Found(ctx, fs); err != nil {
			return err
		}
		_, err := disp.Flush(ctx)
		return err
	})})
	proc := &pipeline.Pipeline{Dedup: pipeline.NewDedup(10_000), Next: stats.New(st).Stage(en), Log: zerolog.Nop()}
	seq := int64(0)
	feed := func(vault string, c audit.Caller, at time.Time, list bool, reads, from int) {
		t.Helper()
		var evs []audit.Event
		if list {
			evs = append(evs, sweepEvent(vault, c, "SecretList", at, 0, &seq))
		}
		for i := range reads {
			evs = append(evs, sweepEvent(vault, c, "SecretGet", at.Add(time.Duration(i+1)*2*time.Second), from+i, &seq))
		}
		if _, err := proc.Next.Consume(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	day := time.Date(2026, 11, 23, 0, 10, 0, 0, time.UTC)
	for h := range 12 {
		feed("kv-payments-prod", ordersAPI, day.Add(time.Duration(h)*time.Hour), true, 20, 0)
		if h < 5 {
			feed("kv-orders", nightlyJob, day.Add(time.Duration(h)*time.Hour+5*time.Minute), true, 20, 0)
			feed("kv-payments-prod", dave, day.Add(time.Duration(h)*time.Hour+20*time.Minute), true, 20, 0)
		}
	}
	feed("kv-payments-prod", ordersAPI, day.Add(11*time.Hour+time.Minute), false, 40, 20)
}

func sweepEvent(vault string, c audit.Caller, op string, at time.Time, n int, seq *int64) audit.Event {
	*seq++
	fam, kind := audit.Classify(op)
	e := audit.Event{Time: at, Vault: vault, Operation: op, Family: fam, Kind: kind, Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
		ObjectType: "secret", DurationMs: 9, CallerIP: "10.20.6.15", Caller: c,
		Source: audit.Source{Partition: "0", Sequence: *seq, HasSequence: true}}
	if op != "SecretList" {
		e.ObjectName = fmt.Sprintf("app-secret-%d", n)
	}
	return e
}

// Issue 12.4: findings learned as routine are reported, not invisible. The
// daily digest says how many were recorded and not alerted, per rule and
// group with the caller, the vault and when, in every form (text, card,
// HTML, JSON), and the Digest timer sends it so; a routine finding alerted
// later above its routine is not counted, and a person's are never there.
func TestDigestReportsRoutine(t *testing.T) {
	st, outbox := state.NewMemory(), delivery.NewMemory()
	routineDay(t, st, outbox)
	checkRoutineDigest(t, st, outbox)
}

func checkRoutineDigest(t *testing.T, st state.Store, outbox delivery.Outbox) {
	t.Helper()
	ctx := context.Background()
	r, err := digest.Compute(ctx, st, outbox, digest.Daily, time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	const line = "Learned as routine, not alerted: 10 findings (listing-then-read-burst: 4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d on kv-payments-prod ×8, " +
		"listing-then-read-burst: e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9 on kv-orders ×2)"
	text := digest.Text(r)
	for _, want := range []string{
		"  routine           10 findings learned as routine, not alerted\n",
		line + "\n",
		"  listing-then-read-burst          ×8    4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d on kv-payments-prod, 03:10 – 10:10\n",
		"  listing-then-read-burst          ×2    e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9 on kv-orders, 03:15 – 04:15\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text digest lacks %q:\n%s", want, text)
		}
	}
	section := text[strings.Index(text, "Learned as routine"):]
	section = section[:strings.Index(section, "\n\n")]
	if strings.Contains(section, dave.Key) || strings.Contains(section, "dave") {
		t.Errorf("a person in the routine section:\n%s", section)
	}
	// orders-api's 12th start was decided routine, then alerted above its
	// routine: 11 routine decisions, 10 routine findings.
	ds, _, err := outbox.(delivery.RoutineLister).RoutineDecisions(ctx, r.Start, r.End, 100)
	if err != nil || len(ds) != 11 {
		t.Fatalf("%d routine decisions (%v), want 11", len(ds), err)
	}
	above := false
	for _, f := range r.Findings {
		above = above || strings.Contains(f.Summary, "above its routine: count 60 is more than 2× the learned 20")
	}
	if !above {
		t.Error("the start above its routine is not among the findings alerted")
	}

	card, err := json.Marshal(digest.Card(r))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"title":"Routine","value":"10 findings learned as routine, not alerted"`,
		`Learned as routine, not alerted \\(10 findings\\)`,
		`"title":"listing\\-then\\-read\\-burst ×8","value":"4b5c6d7e\\-8f90\\-4a1b\\-8c2d\\-3e4f5a6b7c8d on kv\\-payments\\-prod, 03:10 – 10:10"`,
	} {
		if !strings.Contains(string(card), want) {
			t.Errorf("card lacks %s:\n%s", want, card)
		}
	}
	html, err := digest.HTML(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10 findings learned as routine, not alerted", "Learned as routine, not alerted (10 findings)",
		"<td>4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d on kv-payments-prod</td>", "×8"} {
		if !strings.Contains(html, want) {
			t.Errorf("html digest lacks %q", want)
		}
	}
	js, err := digest.JSON(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		RoutineCount int `json:"routineCount"`
		Routine      []struct {
			Rule, Vault, Caller string
			Findings            int
			Events              int64
		} `json:"routine"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.RoutineCount != 10 || len(doc.Routine) != 2 || doc.Routine[0].Caller != ordersAPI.Key || doc.Routine[0].Vault != "kv-payments-prod" ||
		doc.Routine[0].Findings != 8 || doc.Routine[0].Events != 8*20 || doc.Routine[1].Findings != 2 {
		t.Errorf("JSON digest: %s", js)
	}

	// The Digest timer (serve) sends the same.
	rcv := &fakeDigestReceiver{}
	tm := timer(st, outbox, map[string]delivery.Notifier{"teams": rcv}, time.UTC, func() time.Time { return time.Date(2026, 11, 24, 8, 5, 0, 0, time.UTC) })
	if _, err := tm.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rcv.reports) != 1 || rcv.reports[0].RoutineCount != 10 || !strings.Contains(digest.Text(rcv.reports[0]), line) {
		t.Errorf("the Digest timer sent %d digests without the routine line", len(rcv.reports))
	}
	// The day after: none.
	next, err := digest.Compute(ctx, st, outbox, digest.Daily, time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if next.RoutineCount != 0 || strings.Contains(digest.Text(next), "routine") {
		t.Errorf("the next day's digest reports routine findings: %d", next.RoutineCount)
	}
}

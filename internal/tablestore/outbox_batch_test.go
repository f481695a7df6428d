package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/delivery/deliverytest"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// A batch's findings decided together on the Table outbox: by two
// instances at once, against a shard changed under them, and again.

// keyed is a finding of rule by caller on vault at at; value tells
// findings of one key and period apart (as a new_value rule's do).
func keyed(rule, vault, caller, value string, at time.Time) finding.Finding {
	f := finding.Finding{Rule: rule, Title: rule, Severity: finding.High, Kind: "threshold",
		Group: []finding.Pair{{Field: "vault", Value: vault}, {Field: "caller", Value: caller}},
		Vault: vault, FirstEvent: at, LastEvent: at.Add(time.Minute), WindowStart: at, Count: 30, Value: value,
		Summary: rule + " by " + caller, Period: at.Truncate(time.Hour)}
	f.ID = finding.NewID(rule, vault+"|"+caller, f.Period, value)
	return f
}

// eachKey is a finding of each of manyKeys' 20 keys, of value at at.
func eachKey(value string, at time.Time) []finding.Finding {
	var fs []finding.Finding
	for _, rule := range []string{"burst", "other"} {
		for v := range 5 {
			for _, caller := range []string{"alice", "bob"} {
				fs = append(fs, keyed(rule, fmt.Sprintf("kv%d", v), caller, value, at))
			}
		}
	}
	return fs
}

// manyKeys is a batch of 60 findings over 20 keys (2 rules × 5 vaults × 2
// callers), three to a key, 10 minutes apart from at: each key's first
// opens an incident, its next two are held back by the 1h cooldown. The
// 10 alerts (a rule and vault each) carry 2 findings.
func manyKeys(at time.Time) []finding.Finding {
	var fs []finding.Finding
	for _, rule := range []string{"burst", "other"} {
		for v := range 5 {
			for _, caller := range []string{"alice", "bob"} {
				for i := range 3 {
					fs = append(fs, keyed(rule, fmt.Sprintf("kv%d", v), caller, fmt.Sprintf("v%d", i), at.Add(time.Duration(i)*10*time.Minute)))
				}
			}
		}
	}
	return fs
}

// delivered reads what the outbox holds about fs: every entry carrying one
// of them, their decisions, and their keys' cooldowns, through a store of
// its own (its view starts empty: it reads).
func delivered(t *testing.T, prefix string, fs []finding.Finding) ([]*delivery.Entry, map[string]delivery.Decision, map[string]delivery.Cooldown) {
	t.Helper()
	ctx := context.Background()
	o := newStore(t, prefix, Options{}).Outbox()
	snap := &delivery.Snapshot{}
	var q delivery.Query
	for i := range fs {
		q.Read = append(q.Read, delivery.Ref{Shard: delivery.Shard(&fs[i]), Key: alert.CooldownKey(&fs[i])})
		q.Decisions = append(q.Decisions, delivery.Ref{Shard: delivery.Shard(&fs[i]), Key: fs[i].ID})
	}
	if err := o.Load(ctx, snap, q); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(fs))
	for i := range fs {
		ids[i] = fs[i].ID
	}
	decs, err := o.Decisions(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	es, err := o.Recent(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es, decs, snap.Cooldowns
}

// checkOnce checks that every finding of fs was decided once: in exactly
// one entry, which its decision names, or held back.
func checkOnce(t *testing.T, fs []finding.Finding, es []*delivery.Entry, decs map[string]delivery.Decision) {
	t.Helper()
	in := map[string][]string{}
	for _, e := range es {
		for _, f := range e.Alert.Findings {
			in[f.ID] = append(in[f.ID], e.Alert.ID)
		}
	}
	for _, f := range fs {
		d, ok := decs[f.ID]
		switch {
		case !ok:
			t.Errorf("%s (%s %s): no decision", f.ID, alert.CooldownKey(&f), f.Value)
		case d.Suppressed:
			if len(in[f.ID]) != 0 {
				t.Errorf("%s: held back and in alerts %v", f.ID, in[f.ID])
			}
		case len(in[f.ID]) != 1 || in[f.ID][0] != d.Alert:
			t.Errorf("%s: in alerts %v, decided into %s", f.ID, in[f.ID], d.Alert)
		}
	}
}

// Two instances handed overlapping batches of many findings over many keys
// at once, and again (the host's retries): each finding is decided once,
// each alert made once, and every key's cooldown counts its held-back
// findings once, which the next alert of its group says.
func TestOutboxBatchTwoInstancesRace(t *testing.T) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	h := newHook(t)
	clk := &testClock{t: t0.Add(30 * time.Minute)}
	da := newTestDispatcher(t, a.Outbox(), clk, h, "a")
	db := newTestDispatcher(t, b.Outbox(), clk, h, "b")
	ctx := context.Background()
	fs := manyKeys(t0)
	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	for i := range 6 {
		for _, d := range []*delivery.Dispatcher{da, db} {
			// Each call a shuffled batch, some of them without findings
			// the others have: the instances see overlapping parts of the
			// stream.
			batch := slices.Clone(fs)
			if i%2 == 1 { // without the keys' last findings
				batch = slices.DeleteFunc(batch, func(f finding.Finding) bool { return f.Value == "v2" })
			}
			rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.Found(ctx, batch); err != nil {
					t.Errorf("Found: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	for _, d := range []*delivery.Dispatcher{da, db} { // the retries
		if err := d.Found(ctx, fs); err != nil {
			t.Fatal(err)
		}
	}
	if a.Stats().Conflicts+b.Stats().Conflicts == 0 {
		t.Fatal("no transaction met the other instance's: the race was not exercised")
	}
	es, decs, cools := delivered(t, p, fs)
	checkOnce(t, fs, es, decs)
	if len(es) != 10 {
		t.Fatalf("%d alerts, want 10 (a rule and vault each)", len(es))
	}
	for _, e := range es {
		if len(e.Alert.Findings) != 2 {
			t.Errorf("alert %s %s: %d findings, want alice's and bob's first", e.Alert.Rule, e.Alert.Vault, len(e.Alert.Findings))
		}
	}
	for i := range fs {
		k := alert.CooldownKey(&fs[i])
		if c := cools[k]; c.Suppressed != 2 || !c.Last.Equal(t0) {
			t.Errorf("%s: cooldown %+v, want the first alerted and 2 held back", k, c)
		}
	}
	// The next alert of each group, a reminder (within twice the cooldown
	// of the first), says how many were held back: 2 per key.
	clk.Add(time.Hour)
	next := eachKey("later", t0.Add(85*time.Minute))
	if err := db.Found(ctx, next); err != nil {
		t.Fatal(err)
	}
	es, _, _ = delivered(t, p, next)
	n := 0
	for _, e := range es {
		if e.Alert.Findings[0].Value != "later" {
			continue
		}
		n++
		if e.Alert.Suppressed != 4 || e.Alert.Repeat != 1 {
			t.Errorf("reminder %s %s: suppressed %d, repeat %d; want 4 (2 per key) and 1", e.Alert.Rule, e.Alert.Vault, e.Alert.Suppressed, e.Alert.Repeat)
		}
	}
	if n != 10 {
		t.Fatalf("%d reminders, want 10", n)
	}
	t.Logf("conflicts: %d and %d; round trips: %d and %d", a.Stats().Conflicts, b.Stats().Conflicts, a.Stats().RoundTrips(), b.Stats().RoundTrips())
}

// commitHook runs before on an outbox's first Commit.
type commitHook struct {
	*Outbox
	once   sync.Once
	before func()
}

func (c *commitHook) Commit(ctx context.Context, s *delivery.Snapshot, us []*delivery.Unit) ([]error, error) {
	c.once.Do(c.before)
	return c.Outbox.Commit(ctx, s, us)
}

// A commit whose shard another instance changed after it was loaded (its
// log has an entry after the one it was loaded at) writes nothing, and the finding is
// decided again from what is there now: the other instance's held-back
// finding is counted, not overwritten.
func TestOutboxBatchPreconditionFailureRetried(t *testing.T) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	h := newHook(t)
	clk := &testClock{t: t0}
	ctx := context.Background()
	db := newTestDispatcher(t, b.Outbox(), clk, h, "b")
	first := keyed("burst", "kv1", "alice", "v0", t0)
	if err := db.Found(ctx, []finding.Finding{first}); err != nil {
		t.Fatal(err)
	}
	mine, theirs := keyed("burst", "kv1", "alice", "v1", t0.Add(10*time.Minute)), keyed("burst", "kv1", "alice", "v2", t0.Add(20*time.Minute))
	hooked := &commitHook{Outbox: a.Outbox(), before: func() {
		// Between a's load and a's commit, b holds back another finding
		// of the same key.
		if err := db.Found(ctx, []finding.Finding{theirs}); err != nil {
			t.Error(err)
		}
	}}
	da := newTestDispatcher(t, hooked, clk, h, "a")
	conflicts := a.Stats().Conflicts
	if err := da.Found(ctx, []finding.Finding{mine}); err != nil {
		t.Fatal(err)
	}
	if a.Stats().Conflicts == conflicts {
		t.Fatal("a's commit did not fail on the changed head")
	}
	fs := []finding.Finding{first, mine, theirs}
	es, decs, cools := delivered(t, p, fs)
	checkOnce(t, fs, es, decs)
	if c := cools[alert.CooldownKey(&first)]; c.Suppressed != 2 {
		t.Fatalf("cooldown %+v: want both held-back findings counted", c)
	}
	if len(es) != 1 {
		t.Fatalf("%d alerts, want the first only", len(es))
	}
}

// An instance that started after another alerted a key lists the
// shard's cooldown keys when it starts, reads the key's cooldown before
// deciding (no failed insert) and holds the finding back: not alerted
// twice.
func TestOutboxBatchUnknownKeyRead(t *testing.T) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	h := newHook(t)
	clk := &testClock{t: t0}
	ctx := context.Background()
	db := newTestDispatcher(t, b.Outbox(), clk, h, "b")
	first := keyed("burst", "kv1", "alice", "v0", t0)
	if err := db.Found(ctx, []finding.Finding{first}); err != nil {
		t.Fatal(err)
	}
	// a knows nothing of the shard yet: its first load reads the head only.
	da := newTestDispatcher(t, a.Outbox(), clk, h, "a")
	later := keyed("burst", "kv1", "alice", "v1", t0.Add(10*time.Minute))
	if err := da.Found(ctx, []finding.Finding{later}); err != nil {
		t.Fatal(err)
	}
	if n := a.Stats().Conflicts; n != 0 {
		t.Fatalf("%d conflicts: a did not read the key it listed", n)
	}
	fs := []finding.Finding{first, later}
	es, decs, cools := delivered(t, p, fs)
	checkOnce(t, fs, es, decs)
	if len(es) != 1 || !decs[later.ID].Suppressed || cools[alert.CooldownKey(&first)].Suppressed != 1 {
		t.Fatalf("%d alerts, later's decision %+v, cooldown %+v: want it held back", len(es), decs[later.ID], cools[alert.CooldownKey(&first)])
	}
}

// A batch handed on again (a retry, a redelivery) changes nothing: on the
// instance that decided it, without a write; on another that started
// since, without a write either (it listed the shard's decisions when it
// started; one that could not finds out by a failed insert:
// TestOutboxBatchColdInstanceUnderContention).
func TestOutboxBatchRetriedChangesNothing(t *testing.T) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	h, _, da, db := pairDispatchers(t, a, b)
	ctx := context.Background()
	fs := manyKeys(t0)
	if err := da.Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	if _, err := da.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	es0, decs0, cools0 := delivered(t, p, fs)
	st := a.Stats()
	if err := da.Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	if d := a.Stats().Transactions - st.Transactions; d != 0 {
		t.Errorf("the retry on the same instance wrote %d transactions, want none", d)
	}
	st = b.Stats()
	if err := db.Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	if d := b.Stats().Transactions - st.Transactions; d != 0 {
		t.Errorf("the batch handed on again to another instance wrote %d transactions, want none (it listed the decisions when it started)", d)
	}
	if _, err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	es1, decs1, cools1 := delivered(t, p, fs)
	if entryIDs(es0) != entryIDs(es1) || jsonOf(t, decs0) != jsonOf(t, decs1) || jsonOf(t, cools0) != jsonOf(t, cools1) {
		t.Fatalf("the retried batch changed the outbox:\n%s\n%s", entryIDs(es0), entryIDs(es1))
	}
	if got := len(h.got()); got != 10 {
		t.Fatalf("%d alerts sent, want 10", got)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func entryIDs(es []*delivery.Entry) string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.Alert.ID + "@" + fmt.Sprint(len(e.Alert.Findings))
	}
	slices.Sort(ids)
	return fmt.Sprint(ids)
}

// A batch's findings cost a bounded number of requests, whatever their
// number: recording, a query (the first time, a read of the head) and a
// transaction per outbox partition; sending (Flush), a query per
// partition for what is due, and a claim and a record per partition.
func TestOutboxBatchRoundTripsBounded(t *testing.T) {
	s := newStore(t, testPrefix(), Options{})
	h := newHook(t)
	clk := &testClock{t: t0.Add(30 * time.Minute)}
	d := newTestDispatcher(t, s.Outbox(), clk, h, "a")
	ctx := context.Background()
	for round, fs := range [][]finding.Finding{manyKeys(t0), manyKeys(t0.Add(3 * time.Hour))} {
		if round == 1 {
			clk.Add(3 * time.Hour)
		}
		st0 := s.Stats()
		if err := d.Found(ctx, fs); err != nil {
			t.Fatal(err)
		}
		st1 := s.Stats()
		if _, err := d.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		st2 := s.Stats()
		record, send := st1.RoundTrips()-st0.RoundTrips(), st2.RoundTrips()-st1.RoundTrips()
		t.Logf("batch %d: %d findings, recorded in %d round trips, sent in %d", round, len(fs), record, send)
		if record > 2*outboxShards || send > 3*outboxShards {
			t.Errorf("batch %d: %d round trips to record, %d to send; want at most %d and %d", round, record, send, 2*outboxShards, 3*outboxShards)
		}
	}
	if got := len(h.got()); got != 20 {
		t.Fatalf("%d alerts sent, want 20", got)
	}
}

// An instance that knows nothing of the outbox (just started) decides a
// big batch over keys that exist while another instance keeps committing
// to the same partitions: rounds that commit part of the batch go on
// until it is all decided, each finding once.
func TestOutboxBatchColdInstanceUnderContention(t *testing.T) {
	// b lists nothing when it starts (as over the bounds): it knows none
	// of the keys and decisions.
	keepRows, keepDecs := listRows, listDecisions
	listRows, listDecisions = 0, 0
	t.Cleanup(func() { listRows, listDecisions = keepRows, keepDecs })
	p := testPrefix()
	a := newStore(t, p, Options{})
	h := newHook(t)
	clk := &testClock{t: t0.Add(30 * time.Minute)}
	ctx := context.Background()
	da := newTestDispatcher(t, a.Outbox(), clk, h, "a")
	batch := func(at time.Time, value string, callers int) []finding.Finding {
		var fs []finding.Finding
		for _, rule := range []string{"burst", "other", "third"} {
			for v := range 12 {
				for c := range callers {
					fs = append(fs, keyed(rule, fmt.Sprintf("kv%d", v), fmt.Sprintf("app%d", c), value, at))
				}
			}
		}
		return fs
	}
	if err := da.Found(ctx, batch(t0, "a", 8)); err != nil { // 288 keys alerted
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a goes on: every key held back again and again, 50 batches a second
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if err := da.Found(ctx, batch(t0.Add(time.Duration(1+i%50)*time.Minute), fmt.Sprintf("a%d", i), 2)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	b := newStore(t, p, Options{})
	db := newTestDispatcher(t, b.Outbox(), clk, h, "b")
	fs := batch(t0.Add(55*time.Minute), "b", 8)
	err := db.Found(ctx, fs)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	es, decs, _ := delivered(t, p, fs)
	checkOnce(t, fs, es, decs)
	for _, f := range fs {
		if !decs[f.ID].Suppressed {
			t.Fatalf("%s: %+v, want held back (its key alerted 55 minutes before)", f.ID, decs[f.ID])
		}
	}
	t.Logf("b: %d round trips, %d conflicts; a: %d conflicts", b.Stats().RoundTrips(), b.Stats().Conflicts, a.Stats().Conflicts)
}

// While a sender loop runs, the alerts a Found records go out claimed by
// its process: the loop sends them without a claim of its own (a write per
// partition to record the outcomes, none to claim), another instance's
// Flush leaves them alone, and if the process stops before sending them
// they are sent once the lease has run out.
func TestOutboxPreclaimed(t *testing.T) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	h, clk, da, db := pairDispatchers(t, a, b)
	ctx := context.Background()
	sa := da.NewSender(delivery.SenderOptions{Interval: time.Hour})
	go sa.Run(ctx)
	for range 100 { // until the loop runs
		if _, err := da.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	st0 := a.Stats()
	fs := manyKeys(t0) // 10 alerts over 5 vaults
	if err := da.Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	st1 := a.Stats()
	if rep, err := db.Flush(ctx); err != nil || rep.Delivered != 0 {
		t.Fatalf("the other instance's flush: %+v %v, want nothing sent (claimed by a)", rep, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(h.got()) < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The hook has them; the loop records the outcomes after: stopped
	// before that, it would record the last answer lost (a retry later).
	for time.Now().Before(deadline) {
		es, _, _ := delivered(t, p, fs)
		done := 0
		for _, e := range es {
			if e.Receivers["hook"].State == delivery.Delivered {
				done++
			}
		}
		if done == len(fs) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sa.Stop()
	if got := len(h.got()); got != 10 {
		t.Fatalf("%d alerts sent, want 10", got)
	}
	sendTx := a.Stats().Transactions - st1.Transactions
	t.Logf("recorded in %d round trips; sent with %d transactions", st1.RoundTrips()-st0.RoundTrips(), sendTx)
	if sendTx > outboxShards {
		t.Errorf("sending took %d transactions, want at most one per partition (the outcomes; no claims)", sendTx)
	}
	es, _, _ := delivered(t, p, fs)
	for _, e := range es {
		if r := e.Receivers["hook"]; r.State != delivery.Delivered || r.Attempts != 1 || r.LeaseBy != "" {
			t.Fatalf("%s: %+v", e.Alert.ID, r)
		}
	}

	// A process that stops before it sends what it recorded claimed (its
	// sender stuck on an earlier alert meanwhile): the claims hold until
	// the lease runs out.
	c := newStore(t, p, Options{})
	hung := deliverytest.NewHungReceiver(t)
	dc := delivery.New(delivery.Options{Outbox: c.Outbox(), Now: clk.Now, Log: zerolog.Nop(), Instance: "c",
		Receivers: deliverytest.Webhooks(t, map[string]string{"hook": hung.Srv.URL})})
	sc := dc.NewSender(delivery.SenderOptions{Interval: time.Hour})
	go sc.Run(ctx)
	for range 100 {
		if _, err := dc.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	clk.Add(3 * time.Hour)
	if err := dc.Found(ctx, []finding.Finding{keyed("burst", "kv0", "mallory", "x", clk.Now())}); err != nil {
		t.Fatal(err)
	}
	<-hung.Entered // c's sender is stuck on it
	if err := dc.Found(ctx, manyKeys(t0.Add(3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	sc.Stop()
	before := len(h.got())
	if rep, err := db.Flush(ctx); err != nil || rep.Delivered != 0 {
		t.Fatalf("flush while c's claims hold: %+v %v, want nothing", rep, err)
	}
	clk.Add(2 * time.Minute) // c's leases ran out
	if rep, err := db.Flush(ctx); err != nil || rep.Delivered != 11 || len(h.got())-before != 11 {
		t.Fatalf("flush after c's leases: %+v %v, %d sent; want the 11 alerts c recorded", rep, err, len(h.got())-before)
	}
}

// A view that knows which cooldown rows of its shard exist (it listed
// them, with their content, when it started, and follows the log since)
// reads none of the keys it is asked for.
func TestOutboxCompleteViewReadsNoAbsentKey(t *testing.T) {
	keep := reuseCatchUp
	reuseCatchUp = 0 // every load catches up
	t.Cleanup(func() { reuseCatchUp = keep })
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	ctx := context.Background()
	if err := b.Outbox().SetCooldown(ctx, "exists", delivery.Cooldown{Last: t0, Repeat: 2}); err != nil {
		t.Fatal(err)
	}
	refs := func(prefix string, n int) []delivery.Ref {
		var out []delivery.Ref
		for i := range n {
			out = append(out, delivery.Ref{Key: fmt.Sprintf("%s-%d", prefix, i)})
		}
		return out
	}
	load := func(q delivery.Query) (*delivery.Snapshot, Stats) {
		st0 := a.Stats()
		snap := &delivery.Snapshot{}
		if err := a.Outbox().Load(ctx, snap, q); err != nil {
			t.Fatal(err)
		}
		return snap, addStats(Stats{}, st0, a.Stats())
	}
	// Its first load: the head, the list of the rows (one query, which
	// brings the row that exists too); 30 absent keys cost nothing.
	snap, st := load(delivery.Query{Read: append(refs("absent", 30), delivery.Ref{Key: "exists"})})
	if st.Queries != 1 || st.Reads != 1 {
		t.Fatalf("first load: %d queries and %d reads, want 1 and 1", st.Queries, st.Reads)
	}
	if c := snap.Cooldowns["exists"]; c.Repeat != 2 || snap.Unknown["exists"] {
		t.Fatalf("exists: %+v", c)
	}
	for _, r := range refs("absent", 30) {
		if c, ok := snap.Cooldowns[r.Key]; !ok || c.Version != "" || snap.Unknown[r.Key] {
			t.Fatalf("%s: %+v (known %v), want known absent", r.Key, c, !snap.Unknown[r.Key])
		}
	}
	// Written by another instance since: the catch-up brings it.
	if err := b.Outbox().SetCooldown(ctx, "new", delivery.Cooldown{Last: t0, Repeat: 3}); err != nil {
		t.Fatal(err)
	}
	snap, st = load(delivery.Query{Read: append(refs("other", 30), delivery.Ref{Key: "new"}), Keys: refs("more", 30)})
	if st.Queries != 1 || st.Reads != 0 {
		t.Fatalf("second load: %d queries and %d reads, want the catch-up only", st.Queries, st.Reads)
	}
	if c := snap.Cooldowns["new"]; c.Repeat != 3 || c.Version == "" {
		t.Fatalf("new: %+v", c)
	}
}

// queryLog is a transport to the Table service that notes the filter of
// every query.
type queryLog struct {
	mu      sync.Mutex
	filters []string
}

func (l *queryLog) Do(req *http.Request) (*http.Response, error) {
	if f := req.URL.Query().Get("$filter"); req.Method == http.MethodGet && f != "" {
		l.mu.Lock()
		l.filters = append(l.filters, f)
		l.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// A shard's catch-up reads its log entries with one range of row keys:
// in Azure Table Storage a filter that joins row key conditions with
// "or" scans the whole partition (every alert, decision and cooldown of
// the shard, growing with every alert), a range of row keys does not.
// Two instances decide the same findings, each catching up with the
// other's commits: each finding is still decided once.
func TestOutboxCatchUpIsARangeQuery(t *testing.T) {
	p := testPrefix()
	log := &queryLog{}
	a, b := storeVia(t, p, log, Options{})
	_, _, da, db := pairDispatchers(t, a, b)
	ctx := context.Background()
	fs := manyKeys(t0)
	for i := range 3 {
		for _, d := range []*delivery.Dispatcher{db, da} {
			batch := slices.Clone(fs)
			if i%2 == 0 { // without the keys' last findings
				batch = slices.DeleteFunc(batch, func(f finding.Finding) bool { return f.Value == "v2" })
			}
			if err := d.Found(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	es, decs, _ := delivered(t, p, fs)
	checkOnce(t, fs, es, decs)
	if len(es) != 10 {
		t.Fatalf("%d alerts, want 10 (a rule and vault each)", len(es))
	}
	catchUps := 0
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, f := range log.filters {
		if !strings.Contains(f, "'"+rkLog) {
			continue
		}
		catchUps++
		if strings.Contains(f, " or ") || strings.Contains(f, rkHead) {
			t.Errorf("catch-up %q: not one range of row keys", f)
		}
	}
	if catchUps == 0 {
		t.Fatalf("no catch-up among a's %d queries: %q", len(log.filters), log.filters)
	}
}

// An instance that has not looked at a shard for resyncAfter reads the
// head first, and starts its view again from it when the log entries it
// missed are gone: they may be pruned by then, and a catch-up that read only what is left would decide from
// what it knew before (its commit's log entry taking the place of a
// pruned one). Here a alerts a first batch, b the next (three hours
// later), and a is handed later findings of the same keys: a decides
// them as it does when it reads b's log entries, whether or not they were
// deleted (as Prune does once they are older than logKeep) before it
// looked.
func TestOutboxStaleViewStartsAfresh(t *testing.T) {
	oldResync, oldReuse := resyncAfter, reuseCatchUp
	t.Cleanup(func() { resyncAfter, reuseCatchUp = oldResync, oldReuse })
	reuseCatchUp = 0 // every Load catches up
	want := staleView(t, false)
	resyncAfter = time.Millisecond // a's view is stale when it decides
	if got := staleView(t, true); got != want {
		t.Fatalf("a's view after b's log entries were pruned decided\n%s\nwant, as when it read them,\n%s", got, want)
	}
}

// pairDispatchers returns two instances' dispatchers, on a's and b's
// outboxes, sending to one hook, on one clock at t0 + 30 minutes.
func pairDispatchers(t *testing.T, a, b *Store) (*hook, *testClock, *delivery.Dispatcher, *delivery.Dispatcher) {
	t.Helper()
	h := newHook(t)
	clk := &testClock{t: t0.Add(30 * time.Minute)}
	return h, clk, newTestDispatcher(t, a.Outbox(), clk, h, "a"), newTestDispatcher(t, b.Outbox(), clk, h, "b")
}

// staleView runs TestOutboxStaleViewStartsAfresh's story, pruning b's log
// entries before a looks if prune, and describes a's decisions: the
// alerts of the later findings and the keys' cooldowns.
func staleView(t *testing.T, prune bool) string {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	_, _, da, db := pairDispatchers(t, a, b)
	ctx := context.Background()
	if err := da.Found(ctx, manyKeys(t0.Add(-3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := db.Found(ctx, manyKeys(t0)); err != nil {
		t.Fatal(err)
	}
	if prune {
		var refs []deleteRef
		for _, pk := range allPKs() {
			filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey gt '%s' and RowKey lt '%s'", pk, rkLog, rkLog[:1]+".")
			err := b.query(ctx, b.outbox, filter, nil, func(raw []byte) error {
				var ent aztables.EDMEntity
				if err := json.Unmarshal(raw, &ent); err != nil {
					return err
				}
				refs = append(refs, deleteRef{pk, ent.RowKey, "*", false})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(refs) == 0 {
			t.Fatal("b's commits wrote no log entries")
		}
		if err := b.deleteAll(ctx, b.outbox, refs); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond)
	later := eachKey("later", t0.Add(25*time.Minute))
	if err := da.Found(ctx, later); err != nil {
		t.Fatal(err)
	}
	es, decs, cools := delivered(t, p, later)
	var out []string
	for _, e := range es {
		if e.Alert.Findings[0].Value == "later" {
			out = append(out, fmt.Sprintf("alert %s %s: %d findings, suppressed %d, repeat %d", e.Alert.Rule, e.Alert.Vault, len(e.Alert.Findings), e.Alert.Suppressed, e.Alert.Repeat))
		}
	}
	for i := range later {
		k := alert.CooldownKey(&later[i])
		d := decs[later[i].ID]
		out = append(out, fmt.Sprintf("%s: decided alert=%v suppressed=%v; cooldown last %s, suppressed %d", k, d.Alert != "", d.Suppressed,
			cools[k].Last.Format(time.TimeOnly), cools[k].Suppressed))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// A refused transaction says which of its operations failed: a commit
// that meets another's log entry (operation 1) is a plain conflict,
// one that meets a row it assumed absent reads what it assumed.
func TestTransactionFailureNamesItsOperation(t *testing.T) {
	s := newStore(t, testPrefix(), Options{})
	ctx := context.Background()
	ent := func(rk string) []byte {
		b, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "o0", RowKey: rk}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	add := func(rks ...string) error {
		var actions []aztables.TransactionAction
		for _, rk := range rks {
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: ent(rk)})
		}
		_, err := s.transact(ctx, s.outbox, actions)
		return err
	}
	if err := add("x-1", "x-2"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rks []string
		op  int
	}{{[]string{"x-0", "x-1", "x-3"}, 1}, {[]string{"x-2", "x-4"}, 0}, {[]string{"x-5", "x-6", "x-7", "x-1"}, 3}} {
		var f *txFailure
		if err := add(c.rks...); !errors.As(err, &f) || f.status != http.StatusConflict || f.op != c.op {
			t.Errorf("%v: %v (%+v), want 409 at operation %d", c.rks, err, f, c.op)
		}
	}
}

// Rows read by key: one or two with point reads (index seeks in Azure
// Table Storage), more with one query; a row that does not exist is not
// found; every row found carries its ETag, as a query's rows do.
func TestReadKeys(t *testing.T) {
	log := &queryLog{}
	s, _ := storeVia(t, testPrefix(), log, Options{})
	ctx := context.Background()
	for _, rk := range []string{"k1", "k2", "k3"} {
		ent, _ := json.Marshal(map[string]any{"PartitionKey": "o0", "RowKey": rk, "V": rk})
		if _, err := s.outbox.AddEntity(ctx, ent, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		rks     []string
		found   string
		queries int
	}{
		{[]string{"k1"}, "k1", 0},
		{[]string{"k2", "absent"}, "k2", 0},
		{[]string{"k1", "absent", "k3"}, "k1 k3", 1},
	} {
		log.mu.Lock()
		before := len(log.filters)
		log.mu.Unlock()
		var found []string
		err := s.Outbox().readKeys(ctx, "o0", c.rks, nil, func(ent *aztables.EDMEntity) error {
			if ent.ETag == "" || ent.Properties["V"] != ent.RowKey {
				t.Errorf("%v: row %s without its ETag or value: %+v", c.rks, ent.RowKey, ent)
			}
			found = append(found, ent.RowKey)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(found)
		log.mu.Lock()
		queries := len(log.filters) - before
		log.mu.Unlock()
		if got := strings.Join(found, " "); got != c.found || queries != c.queries {
			t.Errorf("%v: found %q in %d queries, want %q in %d", c.rks, got, queries, c.found, c.queries)
		}
	}
}

// A catch-up that found nothing new is followed by a point read of the
// entry that would come next, not a query: a shard no one wrote to costs
// an index seek (and in Azurite a walk of one partition, not of the whole
// table); a view idle past resyncAfter reads the head, and stands if no
// one wrote since. The next commit of another instance is still seen: a,
// its views quiet, is handed the findings b alerted meanwhile and alerts
// none again.
func TestOutboxQuietCatchUpIsAPointRead(t *testing.T) {
	p := testPrefix()
	log := &queryLog{}
	a, b := storeVia(t, p, log, Options{})
	old := reuseCatchUp
	reuseCatchUp = 0 // every Load catches up
	t.Cleanup(func() { reuseCatchUp = old })
	_, _, da, db := pairDispatchers(t, a, b)
	ctx := context.Background()
	if err := da.Found(ctx, manyKeys(t0.Add(-3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	logQueries := func() int {
		log.mu.Lock()
		defer log.mu.Unlock()
		n := 0
		for _, f := range log.filters {
			if strings.Contains(f, "'"+rkLog) {
				n++
			}
		}
		return n
	}
	// Two catch-ups of every shard with nothing written: the second of
	// each is a point read.
	for range 2 {
		if err := a.Outbox().refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	q0 := logQueries()
	reads0 := a.Stats().Reads
	if err := a.Outbox().refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if q := logQueries() - q0; q != 0 {
		t.Fatalf("%d queries of log entries catching up quiet shards, want point reads", q)
	}
	if r := a.Stats().Reads - reads0; r != int64(outboxShards) {
		t.Fatalf("%d reads catching up %d quiet shards, want one each", r, outboxShards)
	}
	// Idle past resyncAfter, a's views read each shard's head (whose
	// entry is theirs: nothing was written) and stand: no listing again.
	oldResync := resyncAfter
	resyncAfter = time.Millisecond
	t.Cleanup(func() { resyncAfter = oldResync })
	time.Sleep(5 * time.Millisecond)
	st0 := a.Stats()
	if err := a.Outbox().refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Queries != st0.Queries || st.Reads-st0.Reads != int64(outboxShards) {
		t.Fatalf("idle views caught up with %d queries and %d reads, want a read of each shard's head", st.Queries-st0.Queries, st.Reads-st0.Reads)
	}
	resyncAfter = oldResync
	fs := manyKeys(t0)
	if err := db.Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	before, _, _ := delivered(t, p, fs)
	if err := da.Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	es, decs, _ := delivered(t, p, fs)
	checkOnce(t, fs, es, decs)
	if got, want := entryIDs(es), entryIDs(before); got != want {
		t.Fatalf("alerts %s, want b's %s and none again", got, want)
	}
}

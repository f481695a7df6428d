package deliverytest

import (
	"context"
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
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// World is the default pack's detection and delivery over one outbox, fed
// batch by batch as the Functions host would, with a webhook receiver:
// what a user sees of several small batches through the same state.
type World struct {
	t      *testing.T
	engine *detect.Engine
	disp   *delivery.Dispatcher
	Outbox delivery.Outbox
	Hook   *Fast
	now    time.Time
	seq    int64
}

// NewWorld runs the embedded kvwatch.yaml (its rules, update_on and
// inhibit) against out, on event time.
func NewWorld(t *testing.T, out delivery.Outbox) *World {
	t.Helper()
	f, err := config.Parse("kvwatch.yaml (embedded)", pack.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Resolve(f, nil); err != nil {
		t.Fatal(err)
	}
	rs, settings, err := rules.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	c, err := delivery.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	w := &World{t: t, Outbox: out, Hook: NewFast(t)}
	cooldowns := map[string]time.Duration{}
	for _, r := range rs {
		cooldowns[r.ID] = r.Cooldown
	}
	w.disp = delivery.New(delivery.Options{Outbox: out, Receivers: Webhooks(t, map[string]string{"hook": w.Hook.Srv.URL}),
		Cooldowns: cooldowns, Updates: c.Updates, Inhibits: c.Inhibits, InhibitWait: c.Settings.InhibitWaitOrDefault(),
		Log: zerolog.Nop(), Now: func() time.Time { return w.now }})
	w.engine = detect.New(rs, settings, detect.Options{Store: state.NewMemory(), Sink: w.disp, Log: zerolog.Nop(),
		Now: func() time.Time { return w.now }})
	return w
}

// Op is one audit event of operation op by caller on vault at at (a
// success); mods change it further.
func (w *World) Op(op, vault, caller string, at time.Time, mods ...func(*audit.Event)) audit.Event {
	w.seq++
	fam, kind := audit.Classify(op)
	e := audit.Event{Time: at, Vault: vault, Operation: op, Family: fam, Kind: kind, Outcome: audit.OutcomeSuccess,
		HTTPStatus: 200, CallerIP: "203.0.113.24", SubscriptionID: "sub", ResourceGroup: "rg",
		ResourceID: "/SUBSCRIPTIONS/SUB/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/" + strings.ToUpper(vault),
		Caller:     audit.Caller{ObjectID: caller, Key: caller, KeyFrom: "oid"},
		Source:     audit.Source{Partition: "0", Sequence: w.seq, HasSequence: true}}
	switch fam {
	case audit.FamilySecret, audit.FamilyKey, audit.FamilyCertificate:
		e.ObjectType = string(fam)
		e.ObjectName = "app-secret"
	}
	for _, m := range mods {
		m(&e)
	}
	return e
}

// Object names an event's object.
func Object(name string) func(*audit.Event) { return func(e *audit.Event) { e.ObjectName = name } }

// Batch runs one batch through detection and delivery, and delivers what
// it recorded; it returns the alerts the webhook received for it.
func (w *World) Batch(evs ...audit.Event) []alert.Alert {
	w.t.Helper()
	for _, e := range evs {
		if e.Time.After(w.now) {
			w.now = e.Time
		}
	}
	before := len(w.Hook.Got())
	if _, err := w.engine.Consume(context.Background(), evs); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.disp.Flush(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	return w.Hook.Got()[before:]
}

// Wait lets d pass with no records (event time: the next records are
// that much later) and delivers what became due; it returns the alerts
// the webhook received meanwhile.
func (w *World) Wait(d time.Duration) []alert.Alert {
	w.t.Helper()
	w.now = w.now.Add(d)
	before := len(w.Hook.Got())
	if _, err := w.disp.Flush(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	return w.Hook.Got()[before:]
}

// relatedRules are the rules an alert names as also fired, sorted.
func relatedRules(a alert.Alert) []string {
	var rules []string
	for _, r := range a.Related {
		rules = append(rules, r.Rule)
	}
	slices.Sort(rules)
	return rules
}

// Describe is one line per alert: rule, version, changes, related rules.
func Describe(as []alert.Alert) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "[%s v%d %s count %d changes %q related", a.Rule, a.Version, a.Severity, a.Count, a.Changes)
		for _, r := range a.Related {
			b.WriteString(" " + r.Rule)
		}
		b.WriteString("] ")
	}
	return b.String()
}

// Monday 2026-11-23, in business hours.
var day = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

func at(hhmm string, sec ...int) time.Time {
	t, err := time.Parse("15:04", hhmm)
	if err != nil {
		panic(err)
	}
	d := day.Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute)
	for _, s := range sec {
		d = d.Add(time.Duration(s) * time.Second)
	}
	return d
}

// IncidentScenarios are what the user sees of incidents that grow, over
// several small batches through the same state and outbox (newOutbox
// gives each scenario an empty one).
func IncidentScenarios(t *testing.T, newOutbox func(t *testing.T) delivery.Outbox) {
	// A VaultPatch at 11:05 is alerted; the VaultDelete and VaultPurge of
	// the same caller on the same vault at 11:30, a later batch of the same
	// hour, are alerted at once as an update of that incident naming them;
	// a VaultPatch again at 11:40 and the next hour's patch, delete and
	// purge within the cooldown repeat known facts and are held back.
	t.Run("a vault deleted after a patch is an update naming the delete and the purge", func(t *testing.T) {
		w := NewWorld(t, newOutbox(t))
		got := w.Batch(w.Op("VaultPatch", "kv-pay", "alice", at("11:05")))
		if len(got) != 1 || got[0].Rule != "vault-admin-operation" || got[0].Version != 1 || got[0].Incident == "" {
			t.Fatalf("the patch: %s", Describe(got))
		}
		first := got[0]
		got = w.Batch(w.Op("VaultDelete", "kv-pay", "alice", at("11:30")), w.Op("VaultPurge", "kv-pay", "alice", at("11:30", 20)))
		if len(got) != 1 || got[0].Version != 2 || got[0].Incident != first.Incident || got[0].ID == first.ID ||
			!slices.Equal(got[0].Changes, []string{"+VaultDelete", "+VaultPurge"}) {
			t.Fatalf("the delete and purge: want one update of incident %s naming +VaultDelete, +VaultPurge, got %s", first.Incident, Describe(got))
		}
		if got := w.Batch(w.Op("VaultPatch", "kv-pay", "alice", at("11:40"))); len(got) != 0 {
			t.Fatalf("a patch again, the same fact: %s", Describe(got))
		}
		got = w.Batch(w.Op("VaultPatch", "kv-pay", "alice", at("12:01")), w.Op("VaultDelete", "kv-pay", "alice", at("12:02")),
			w.Op("VaultPurge", "kv-pay", "alice", at("12:02", 5)))
		if len(got) != 0 {
			t.Fatalf("the next hour's patch, delete and purge within the cooldown are known facts: %s", Describe(got))
		}
	})

	// Twenty SecretPurge calls after one SecretDelete reach the user (the
	// purge is new), and more purges do not.
	t.Run("purges after a delete reach the user", func(t *testing.T) {
		w := NewWorld(t, newOutbox(t))
		got := w.Batch(w.Op("SecretDelete", "kv-pay", "mallory", at("14:00")))
		if len(got) != 1 || got[0].Rule != "object-destroyed" {
			t.Fatalf("the delete: %s", Describe(got))
		}
		var purges []audit.Event
		for i := range 20 {
			purges = append(purges, w.Op("SecretPurge", "kv-pay", "mallory", at("14:10", i), Object(fmt.Sprintf("s%d", i))))
		}
		got = w.Batch(purges...)
		if len(got) != 1 || got[0].Version != 2 || !slices.Contains(got[0].Changes, "+SecretPurge") || got[0].Count != 20 {
			t.Fatalf("twenty purges: want an update naming +SecretPurge with count 20, got %s", Describe(got))
		}
		if got := w.Batch(w.Op("SecretPurge", "kv-pay", "mallory", at("14:20"), Object("s99"))); len(got) != 0 {
			t.Fatalf("one more purge: %s", Describe(got))
		}
	})

	// A burst alerted at 25 reads says so again when 500 more follow, once:
	// 40 (under twice 25) and 625 (under twice 525) make no message.
	t.Run("a burst that grows is an update of its count, by bands", func(t *testing.T) {
		w := NewWorld(t, newOutbox(t))
		reads := func(from time.Time, n int, every time.Duration) []audit.Event {
			var evs []audit.Event
			for i := range n {
				evs = append(evs, w.Op("SecretGet", "kv-pay", "bob", from.Add(time.Duration(i)*every)))
			}
			return evs
		}
		// A burst is a target of the sweep's inhibitions: it waits
		// delivery.inhibit_wait (1m) for a listing that would take it in.
		if got := w.Batch(reads(at("10:00"), 25, time.Second)...); len(got) != 0 {
			t.Fatalf("25 reads: sent before the inhibit wait: %s", Describe(got))
		}
		got := w.Wait(time.Minute)
		if len(got) != 1 || got[0].Rule != "secret-retrieval-burst" || got[0].Count != 25 {
			t.Fatalf("25 reads, a minute later: %s", Describe(got))
		}
		if got := w.Batch(reads(at("10:01", 30), 15, time.Second)...); len(got) != 0 {
			t.Fatalf("40 reads: %s", Describe(got))
		}
		w.Batch(reads(at("10:02"), 485, 200*time.Millisecond)...)
		got = w.Wait(time.Minute)
		if len(got) != 1 || got[0].Version != 2 || !slices.Equal(got[0].Changes, []string{"count 25 → 525"}) {
			t.Fatalf("525 reads: want one update saying count 25 → 525, got %s", Describe(got))
		}
		if got := w.Batch(reads(at("10:04", 20), 100, 300*time.Millisecond)...); len(got) != 0 {
			t.Fatalf("625 reads: %s", Describe(got))
		}
		if got := w.Wait(time.Minute); len(got) != 0 {
			t.Fatalf("625 reads: %s", Describe(got))
		}
	})

	// A VaultPatch that opens a vault to public networks is one message,
	// the weakening's, naming the administrative operation it also is; the
	// admin alert is recorded as inhibited by it. The vault's delete later
	// is not the weakening's evidence: it reaches the user.
	t.Run("one VaultPatch, two rules, one message", func(t *testing.T) {
		out := newOutbox(t)
		w := NewWorld(t, out)
		strong := func(e *audit.Event) {
			e.Config = &audit.VaultConfig{NetworkDefaultAction: "Deny", PublicNetworkAccess: "Disabled"}
		}
		weak := func(e *audit.Event) {
			e.Config = &audit.VaultConfig{NetworkDefaultAction: "Allow", PublicNetworkAccess: "Enabled"}
		}
		if got := w.Batch(w.Op("VaultGet", "kv-pay", "resource-graph", at("15:00"), strong)); len(got) != 0 {
			t.Fatalf("a strong configuration seen: %s", Describe(got))
		}
		got := w.Batch(w.Op("VaultPatch", "kv-pay", "carol", at("15:42"), weak))
		if len(got) != 1 || got[0].Rule != "vault-protection-weakened" || len(got[0].Related) != 1 ||
			got[0].Related[0].Rule != "vault-admin-operation" || got[0].Severity.String() != "critical" {
			t.Fatalf("the weakening patch: want one critical message naming both rules, got %s", Describe(got))
		}
		inhibited := got[0].Related[0].Alert
		e, err := out.Get(context.Background(), inhibited)
		if err != nil || e == nil || !strings.HasPrefix(e.InhibitedBy, "vault-protection-weakened (alert "+got[0].ID) || e.Pending() {
			t.Fatalf("the admin alert in the outbox: %+v (%v), want it inhibited by the weakening's", e, err)
		}
		got = w.Batch(w.Op("VaultDelete", "kv-pay", "carol", at("15:50")))
		if len(got) != 1 || got[0].Rule != "vault-admin-operation" || !slices.Contains(got[0].Changes, "+VaultDelete") {
			t.Fatalf("the delete after: %s", Describe(got))
		}
	})

	// One sweep (a listing, then 30 different secrets read in a minute) is
	// one message, the listing's, naming the mass read, the burst and the
	// reads across vaults; reads of the sweep arriving in a later batch
	// add nothing the listing did not report.
	t.Run("one sweep, four rules, one message", func(t *testing.T) {
		w := NewWorld(t, newOutbox(t))
		evs := []audit.Event{w.Op("SecretList", "kv-pay", "dave", at("13:37"), Object(""))}
		for i := range 30 {
			evs = append(evs, w.Op("SecretGet", "kv-pay", "dave", at("13:37", 10+i), Object(fmt.Sprintf("secret-%02d", i))))
		}
		got := w.Batch(evs...)
		var related []string
		if len(got) == 1 {
			related = relatedRules(got[0])
		}
		if len(got) != 1 || got[0].Rule != "listing-then-read-burst" ||
			!slices.Equal(related, []string{"mass-secret-retrieval", "secret-retrieval-burst", "secrets-read-across-vaults"}) {
			t.Fatalf("the sweep: want one message of the listing naming the three others, got %s", Describe(got))
		}
		var more []audit.Event
		for i := range 5 {
			more = append(more, w.Op("SecretGet", "kv-pay", "dave", at("13:38", 10+i), Object(fmt.Sprintf("secret-%02d", i))))
		}
		if got := w.Batch(more...); len(got) != 0 {
			t.Fatalf("more of the sweep: %s", Describe(got))
		}
	})

	// The same sweep with its reads on one partition and its listing on
	// another, whose batch comes later: the mass read, the burst and the
	// reads across vaults wait (delivery.inhibit_wait) and the listing's
	// message, when it comes, names them; nothing else is sent, then or
	// when their wait is over.
	t.Run("a sweep whose listing comes a batch after its reads is one message", func(t *testing.T) {
		out := newOutbox(t)
		w := NewWorld(t, out)
		var reads []audit.Event
		for i := range 30 {
			reads = append(reads, w.Op("SecretGet", "kv-pay", "dave", at("13:37", 10+i), Object(fmt.Sprintf("secret-%02d", i))))
		}
		if got := w.Batch(reads[:12]...); len(got) != 0 {
			t.Fatalf("the first reads: %s", Describe(got))
		}
		if got := w.Batch(reads[12:]...); len(got) != 0 {
			t.Fatalf("the sweep's reads, no listing yet: sent before the inhibit wait: %s", Describe(got))
		}
		got := w.Batch(w.Op("SecretList", "kv-pay", "dave", at("13:37"), Object("")))
		var related []string
		if len(got) == 1 {
			related = relatedRules(got[0])
		}
		if len(got) != 1 || got[0].Rule != "listing-then-read-burst" ||
			!slices.Equal(related, []string{"mass-secret-retrieval", "secret-retrieval-burst", "secrets-read-across-vaults"}) {
			t.Fatalf("the listing, a batch later: want one message of the listing naming the three others, got %s", Describe(got))
		}
		// Each is recorded inhibited: the mass read by the listing, the
		// burst and the reads across vaults by the mass read (a chain).
		var mass string
		for _, r := range got[0].Related {
			if r.Rule == "mass-secret-retrieval" {
				mass = r.Alert
			}
		}
		for _, r := range got[0].Related {
			by := "listing-then-read-burst (alert " + got[0].ID + ")"
			if r.Rule != "mass-secret-retrieval" {
				by = "mass-secret-retrieval (alert " + mass + ")"
			}
			e, err := out.Get(context.Background(), r.Alert)
			if err != nil || e == nil || e.InhibitedBy != by || e.Pending() {
				t.Fatalf("%s in the outbox: %+v (%v), want it inhibited by %s", r.Rule, e, err, by)
			}
		}
		if got := w.Wait(10 * time.Minute); len(got) != 0 {
			t.Fatalf("after the wait: %s", Describe(got))
		}
	})

	// A target no source comes for is sent alone once its wait is over.
	t.Run("a mass read with no listing is sent after the inhibit wait", func(t *testing.T) {
		w := NewWorld(t, newOutbox(t))
		var reads []audit.Event
		for i := range 30 {
			reads = append(reads, w.Op("SecretGet", "kv-pay", "erin", at("16:00", 10+i), Object(fmt.Sprintf("secret-%02d", i))))
		}
		if got := w.Batch(reads...); len(got) != 0 {
			t.Fatalf("the reads: sent before the inhibit wait: %s", Describe(got))
		}
		if got := w.Wait(30 * time.Second); len(got) != 0 {
			t.Fatalf("half the wait: %s", Describe(got))
		}
		got := w.Wait(time.Minute)
		var related []string
		if len(got) == 1 {
			related = relatedRules(got[0])
		}
		if len(got) != 1 || got[0].Rule != "mass-secret-retrieval" ||
			!slices.Equal(related, []string{"secret-retrieval-burst", "secrets-read-across-vaults"}) {
			t.Fatalf("after the wait: want the mass read naming the burst and the reads across vaults, got %s", Describe(got))
		}
	})
}

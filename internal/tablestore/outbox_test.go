package tablestore

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// testAlert makes an alert of n findings of one rule, created at created.
func testAlert(rule string, n int, created time.Time) *alert.Alert {
	fs := make([]finding.Finding, n)
	for i := range fs {
		at := created.Add(-time.Duration(n-i) * time.Minute)
		caller := fmt.Sprintf("caller-%03d@contoso.example", i)
		var b [64]byte
		crand.Read(b[:])
		fs[i] = finding.Finding{
			Rule: rule, Title: "Secret read burst", Severity: finding.High, Kind: "threshold",
			Tags:  []string{"exfiltration", "T1555"},
			Group: []finding.Pair{{Field: "vault", Value: "kv1"}, {Field: "caller", Value: caller}},
			Vault: "kv1", ResourceID: "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1",
			Period: at.Truncate(time.Hour), WindowStart: at, WindowEnd: at.Add(5 * time.Minute), Window: 5 * time.Minute,
			Count: int64(10 + i), Threshold: 10, FirstEvent: at, LastEvent: at.Add(time.Minute),
			TopObjects:     []finding.Count{{Value: "secret-" + hex.EncodeToString(b[:16]), Count: 3}, {Value: "db-password", Count: 2}},
			TopIPs:         []finding.Count{{Value: "10.0.0.7", Count: 5}},
			CorrelationIDs: []string{hex.EncodeToString(b[16:32]), hex.EncodeToString(b[32:48])},
			Summary:        fmt.Sprintf("%s read %d secrets of kv1 in 5 minutes (%s)", caller, 10+i, hex.EncodeToString(b[48:])),
			KQL:            "AzureDiagnostics | where ResourceProvider == 'MICROSOFT.KEYVAULT' | where CallerIPAddress == '10.0.0.7'",
			Raised:         created,
		}
		fs[i].ID = finding.NewID(rule, "kv1|"+caller, fs[i].Period, "")
	}
	fs[0].Example = &audit.Event{Time: created.Add(-time.Hour), Vault: "kv1", Operation: "SecretGet", Family: audit.FamilySecret,
		Kind: audit.KindRead, ObjectType: "secret", ObjectName: "db-password", Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
		CallerIP: "10.0.0.7", Caller: audit.Caller{UPN: "caller-000@contoso.example", TenantID: "t1"},
		Source: audit.Source{Partition: "3", Sequence: 42, HasSequence: true, Enqueued: created.Add(-59 * time.Minute)}}
	return alert.New(fs, created)
}

// entryJSON is an entry's content without its version, for comparisons.
func entryJSON(t *testing.T, e *delivery.Entry) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// entryRules lists entries by their alerts' rules (the tests name
// entries so).
func entryRules(es []*delivery.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Alert.Rule
	}
	return out
}

// outboxContract checks what the dispatcher relies on from any
// delivery.Outbox. It runs against delivery.Memory (the reference) and the
// Table outbox alike.
func outboxContract(t *testing.T, newOutbox func(t *testing.T) delivery.Outbox) {
	ctx := context.Background()

	t.Run("decisions are inserted if absent", func(t *testing.T) {
		o := newOutbox(t)
		odd := "it's/odd#?\x01 id"
		if _, ok, err := o.Decision(ctx, "f1"); err != nil || ok {
			t.Fatalf("Decision of nothing: %v, %v", ok, err)
		}
		if err := o.Decide(ctx, map[string]delivery.Decision{"f1": {Alert: "a1"}, "f2": {Suppressed: true}, odd: {Alert: "a3"}}); err != nil {
			t.Fatal(err)
		}
		many := map[string]delivery.Decision{"f1": {Alert: "other"}, "f2": {Alert: "other"}}
		for i := range 150 { // more than one transaction's worth, some there already
			many[fmt.Sprintf("g%03d", i)] = delivery.Decision{Alert: fmt.Sprintf("b%d", i)}
		}
		if err := o.Decide(ctx, many); err != nil {
			t.Fatal(err)
		}
		if err := o.Decide(ctx, many); err != nil { // all there: nothing changes, no error
			t.Fatal(err)
		}
		want := map[string]delivery.Decision{"f1": {Alert: "a1"}, "f2": {Suppressed: true}, odd: {Alert: "a3"},
			"g000": {Alert: "b0"}, "g149": {Alert: "b149"}}
		for id, w := range want {
			d, ok, err := o.Decision(ctx, id)
			if err != nil || !ok || d != w {
				t.Fatalf("Decision(%q) = %+v, %v, %v; want %+v", id, d, ok, err, w)
			}
		}
		// A batch's decisions read together (more than one query's worth)
		// are what Decision reads one by one; undecided IDs are left out.
		if dr, ok := o.(delivery.DecisionsReader); ok {
			ids := []string{"f1", "f2", odd, "nothing", "nothing-either"}
			for i := 0; i < 150; i += 5 {
				ids = append(ids, fmt.Sprintf("g%03d", i))
			}
			got, err := dr.Decisions(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(ids)-2 {
				t.Fatalf("Decisions returned %d, want %d", len(got), len(ids)-2)
			}
			for _, id := range ids {
				d, ok, _ := o.Decision(ctx, id)
				if g, have := got[id]; have != ok || g != d {
					t.Fatalf("Decisions[%q] = %+v (%v), Decision = %+v (%v)", id, g, have, d, ok)
				}
			}
		}
	})

	t.Run("cooldowns are written with their version", func(t *testing.T) {
		o := newOutbox(t)
		key := "burst|vault=kv1 caller=a/b#c?"
		c, err := o.Cooldown(ctx, key)
		if err != nil || !reflect.DeepEqual(c, delivery.Cooldown{}) {
			t.Fatalf("Cooldown of nothing: %+v, %v", c, err)
		}
		c1 := delivery.Cooldown{Last: t0, Repeat: 1, Suppressed: 2, LastFinding: "f1"}
		if err := o.SetCooldown(ctx, key, c1); err != nil {
			t.Fatal(err)
		}
		if err := o.SetCooldown(ctx, key, delivery.Cooldown{Last: t0.Add(time.Hour)}); !errors.Is(err, delivery.ErrConflict) {
			t.Fatalf("a second insert (no version): %v, want ErrConflict", err)
		}
		got, err := o.Cooldown(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version == "" || !got.Last.Equal(t0) || got.Repeat != 1 || got.Suppressed != 2 || got.LastFinding != "f1" {
			t.Fatalf("read back %+v", got)
		}
		if c, _ := o.Cooldown(ctx, "burst|vault=kv1 caller=a/b#c"); !reflect.DeepEqual(c, delivery.Cooldown{}) {
			t.Fatalf("another key read %+v", c)
		}
		stale := got
		got.Repeat = 2
		if err := o.SetCooldown(ctx, key, got); err != nil {
			t.Fatal(err)
		}
		if err := o.SetCooldown(ctx, key, stale); !errors.Is(err, delivery.ErrConflict) {
			t.Fatalf("a stale version: %v, want ErrConflict", err)
		}
		if c, _ := o.Cooldown(ctx, key); c.Repeat != 2 || c.Version == got.Version || c.Version == stale.Version {
			t.Fatalf("after the update: %+v", c)
		}

		// Writers racing from the same version: exactly one wins.
		cur, _ := o.Cooldown(ctx, key)
		var wins, conflicts int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := cur
				c.Suppressed = 10 + i
				err := o.SetCooldown(ctx, key, c)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, delivery.ErrConflict):
					conflicts++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || conflicts != 5 {
			t.Fatalf("%d writers won, %d conflicted; want 1 and 5", wins, conflicts)
		}
	})

	t.Run("entries are added once and written with their version", func(t *testing.T) {
		o := newOutbox(t)
		a := testAlert("burst", 2, t0)
		e := &delivery.Entry{Alert: a, Receivers: map[string]*delivery.Attempt{
			"hook": {State: delivery.Pending, Next: t0}, "mail": {State: delivery.Pending, Next: t0}}}
		if got, err := o.Get(ctx, a.ID); err != nil || got != nil {
			t.Fatalf("Get of nothing: %v, %v", got, err)
		}
		if added, err := o.Add(ctx, e); err != nil || !added {
			t.Fatalf("Add: %v, %v", added, err)
		}
		again := &delivery.Entry{Alert: testAlert("burst", 2, t0.Add(time.Minute)), Receivers: map[string]*delivery.Attempt{}}
		again.Alert.ID = a.ID
		if added, err := o.Add(ctx, again); err != nil || added {
			t.Fatalf("Add of the same ID: %v, %v; want not added", added, err)
		}
		got, err := o.Get(ctx, a.ID)
		if err != nil || got == nil {
			t.Fatalf("Get: %v, %v", got, err)
		}
		if got.Version == "" || entryJSON(t, got) != entryJSON(t, e) {
			t.Fatalf("Get returned version %q, %s\nwant %s", got.Version, entryJSON(t, got), entryJSON(t, e))
		}
		if rs, _ := o.Recent(ctx, 10); len(rs) != 1 {
			t.Fatalf("Recent lists %d entries after a refused Add, want 1", len(rs))
		}

		v1 := got.Version
		got.Receivers["hook"].State, got.Receivers["hook"].Attempts = delivery.Delivered, 1
		if err := o.Put(ctx, got); err != nil {
			t.Fatal(err)
		}
		if got.Version == v1 || got.Version == "" {
			t.Fatalf("Put left the version %q", got.Version)
		}
		stale := &delivery.Entry{Alert: a, Receivers: map[string]*delivery.Attempt{"hook": {State: delivery.Undelivered}}, Version: v1}
		if err := o.Put(ctx, stale); !errors.Is(err, delivery.ErrConflict) {
			t.Fatalf("Put with a stale version: %v, want ErrConflict", err)
		}
		stale.Version = ""
		if err := o.Put(ctx, stale); !errors.Is(err, delivery.ErrConflict) {
			t.Fatalf("Put without a version: %v, want ErrConflict", err)
		}
		ghost := &delivery.Entry{Alert: testAlert("ghost", 1, t0), Receivers: map[string]*delivery.Attempt{}, Version: got.Version}
		if err := o.Put(ctx, ghost); !errors.Is(err, delivery.ErrConflict) {
			t.Fatalf("Put of an entry never added: %v, want ErrConflict", err)
		}
		if g, _ := o.Get(ctx, ghost.Alert.ID); g != nil {
			t.Fatal("Put of an entry never added created it")
		}
		now, err := o.Get(ctx, a.ID)
		if err != nil || now.Version != got.Version || now.Receivers["hook"].State != delivery.Delivered ||
			now.Receivers["mail"].State != delivery.Pending {
			t.Fatalf("after Put: %+v, %v", now, err)
		}

		// Senders racing to claim from the same version: exactly one wins.
		var wins, conflicts int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine, err := o.Get(ctx, a.ID)
				if err != nil {
					t.Error(err)
					return
				}
				mine.Version = now.Version
				mine.Receivers["mail"].Lease, mine.Receivers["mail"].LeaseBy = t0.Add(time.Minute), fmt.Sprint("s", i)
				err = o.Put(ctx, mine)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, delivery.ErrConflict):
					conflicts++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || conflicts != 5 {
			t.Fatalf("%d senders won, %d conflicted; want 1 and 5", wins, conflicts)
		}
	})

	t.Run("due lists pending receivers due by now, oldest first", func(t *testing.T) {
		o := newOutbox(t)
		add := func(name string, created time.Time, rs map[string]*delivery.Attempt) {
			t.Helper()
			a := testAlert(name, 1, created)
			e := &delivery.Entry{Alert: a, Receivers: rs}
			if rs == nil {
				e.Receivers = map[string]*delivery.Attempt{}
			}
			if added, err := o.Add(ctx, e); err != nil || !added {
				t.Fatalf("Add %s: %v, %v", name, added, err)
			}
		}
		p := func(next time.Time) *delivery.Attempt { return &delivery.Attempt{State: delivery.Pending, Next: next} }
		// Added in creation order (Memory lists in the order added).
		add("A", t0, map[string]*delivery.Attempt{"hook": p(t0)})
		add("B", t0.Add(1*time.Second), map[string]*delivery.Attempt{"hook": p(t0.Add(time.Hour))})
		add("C", t0.Add(2*time.Second), map[string]*delivery.Attempt{"hook": {State: delivery.Delivered, Next: t0}})
		add("D", t0.Add(3*time.Second), map[string]*delivery.Attempt{"hook": {State: delivery.Muted, Next: t0}})
		add("E", t0.Add(4*time.Second), map[string]*delivery.Attempt{
			"hook": {State: delivery.Undelivered}, "mail": p(t0.Add(-time.Minute)), "chat": p(t0.Add(2 * time.Hour))})
		add("F", t0.Add(5*time.Second), map[string]*delivery.Attempt{"hook": p(time.Time{})})
		add("G", t0.Add(6*time.Second), nil) // routed nowhere
		add("H", t0.Add(7*time.Second), map[string]*delivery.Attempt{"hook": p(t0.Add(time.Second))})

		due := func(now time.Time, limit int) string {
			t.Helper()
			es, err := o.Due(ctx, now, limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if e.Version == "" {
					t.Fatalf("Due returned %s without a version", e.Alert.Rule)
				}
			}
			return strings.Join(entryRules(es), "")
		}
		for _, tc := range []struct {
			now   time.Time
			limit int
			want  string
		}{
			{t0.Add(-time.Hour), 10, "F"},
			{t0, 10, "AEF"},
			{t0.Add(time.Second - 1), 10, "AEF"},
			{t0.Add(time.Second), 10, "AEFH"},
			{t0.Add(time.Hour), 10, "ABEFH"},
			{t0.Add(time.Hour), 2, "AB"},
			{t0.Add(time.Hour), 1, "A"},
		} {
			if got := due(tc.now, tc.limit); got != tc.want {
				t.Fatalf("Due(t0%+v, %d) = %s, want %s", tc.now.Sub(t0), tc.limit, got, tc.want)
			}
		}

		// Written back: delivered leaves, retried later moves.
		es, _ := o.Due(ctx, t0.Add(time.Hour), 10)
		for _, e := range es {
			switch e.Alert.Rule {
			case "A":
				e.Receivers["hook"].State = delivery.Delivered
			case "E":
				e.Receivers["mail"].Next = t0.Add(3 * time.Hour)
			default:
				continue
			}
			if err := o.Put(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if got := due(t0.Add(time.Hour), 10); got != "BFH" {
			t.Fatalf("after writes: Due = %s, want BFH", got)
		}
		if got := due(t0.Add(2*time.Hour), 10); got != "BEFH" { // E's chat
			t.Fatalf("after writes: Due(+2h) = %s, want BEFH", got)
		}
		if got := due(t0.Add(-time.Hour), 10); got != "F" {
			t.Fatalf("after writes: Due(-1h) = %s, want F", got)
		}
	})

	t.Run("recent lists the newest first", func(t *testing.T) {
		o := newOutbox(t)
		if es, err := o.Recent(ctx, 5); err != nil || len(es) != 0 {
			t.Fatalf("Recent of nothing: %v, %v", es, err)
		}
		for i, name := range []string{"A", "B", "C", "D", "E"} {
			e := &delivery.Entry{Alert: testAlert(name, 1, t0.Add(time.Duration(i)*time.Hour)),
				Receivers: map[string]*delivery.Attempt{"hook": {State: delivery.Delivered}}}
			if _, err := o.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for limit, want := range map[int]string{1: "E", 3: "EDC", 5: "EDCBA", 50: "EDCBA"} {
			es, err := o.Recent(ctx, limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(entryRules(es), ""); got != want {
				t.Fatalf("Recent(%d) = %s, want %s", limit, got, want)
			}
		}
	})

	t.Run("an alert of 200 findings round-trips", func(t *testing.T) {
		o := newOutbox(t)
		a := testAlert("burst", 200, t0)
		e := &delivery.Entry{Alert: a, MutedBy: "silence: planned rotation", Receivers: map[string]*delivery.Attempt{
			"hook": {State: delivery.Pending, Attempts: 3, Next: t0.Add(90 * time.Second), LastError: "webhook hook: HTTP 500"},
			"mail": {State: delivery.Delivered, Attempts: 1, Done: t0.Add(time.Second)},
		}}
		want := entryJSON(t, e)
		if len(want) < 200<<10 {
			t.Fatalf("the test alert takes only %d bytes", len(want))
		}
		if added, err := o.Add(ctx, e); err != nil || !added {
			t.Fatalf("Add: %v, %v", added, err)
		}
		got, err := o.Get(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if entryJSON(t, got) != want {
			t.Fatal("the entry did not round-trip")
		}
		if len(got.Alert.Findings) != 200 || !got.Alert.Findings[199].FirstEvent.Equal(a.Findings[199].FirstEvent) {
			t.Fatalf("read back %d findings", len(got.Alert.Findings))
		}
		got.Receivers["hook"].State = delivery.Delivered
		if err := o.Put(ctx, got); err != nil {
			t.Fatal(err)
		}
		es, err := o.Recent(ctx, 1)
		if err != nil || len(es) != 1 || entryJSON(t, es[0]) != entryJSON(t, got) {
			t.Fatalf("Recent after Put: %v", err)
		}
		if slices.ContainsFunc(es[0].Alert.Findings, func(f finding.Finding) bool { return f.Summary == "" }) {
			t.Fatal("a finding lost its summary")
		}
	})
}

func TestMemoryOutboxContract(t *testing.T) {
	outboxContract(t, func(*testing.T) delivery.Outbox { return delivery.NewMemory() })
}

func TestTableOutboxContract(t *testing.T) {
	outboxContract(t, func(t *testing.T) delivery.Outbox { return newStore(t, testPrefix(), Options{}).Outbox() })
}

// The large entry is spread over several binary properties.
func TestOutboxLargeEntryChunks(t *testing.T) {
	s := newStore(t, testPrefix(), Options{})
	ctx := context.Background()
	a := testAlert("burst", 200, t0)
	for i := range a.Findings { // 100 KB that do not deflate
		var b [256]byte
		crand.Read(b[:])
		a.Findings[i].Summary += " " + hex.EncodeToString(b[:])
	}
	if _, err := s.Outbox().Add(ctx, &delivery.Entry{Alert: a, Receivers: map[string]*delivery.Attempt{}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Outbox().Get(ctx, a.ID); err != nil || got == nil || got.Alert.Findings[7].Summary != a.Findings[7].Summary {
		t.Fatalf("read back: %v", err)
	}
	resp, err := s.outbox.GetEntity(ctx, shardPK(delivery.EntryShard(&delivery.Entry{Alert: a})), rkEntry+a.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ent aztables.EDMEntity
	if err := json.Unmarshal(resp.Value, &ent); err != nil {
		t.Fatal(err)
	}
	if n := ent.Properties[propChunks].(int32); n < 2 {
		t.Fatalf("stored in %d properties: the test should need several", n)
	}

	// One too large for an entity is refused, and says so.
	huge := testAlert("burst", 1, t0)
	noise := make([]byte, 1<<20)
	crand.Read(noise)
	huge.Findings[0].Summary = hex.EncodeToString(noise) // 1 MiB of randomness: over the limit however deflated
	_, err = s.Outbox().Add(ctx, &delivery.Entry{Alert: huge, Receivers: map[string]*delivery.Attempt{}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("an alert of 2 MB: %v, want ErrTooLarge", err)
	}
}

func TestOutboxKeys(t *testing.T) {
	for _, k := range []string{"0123456789abcdef01234567", "burst|vault=kv1 caller=alice", "a/b", "x#y", "q?", "", strings.Repeat("a", 300), "é"} {
		got := outboxKey(k)
		if !validKey(got) || len(got) > 200+1 {
			t.Errorf("outboxKey(%q) = %q: not a valid key", k, got)
		}
		if plainKeyRE.MatchString(k) != (got == k) {
			t.Errorf("outboxKey(%q) = %q", k, got)
		}
	}
	if outboxKey("a/b") == outboxKey("a\\b") {
		t.Error("two keys share a row")
	}
	if a, b := recentKey(t0, "x"), recentKey(t0.Add(time.Microsecond), "x"); a <= b {
		t.Errorf("recentKey does not sort newest first: %s, %s", a, b)
	}
	if a, b := recentKey(time.Time{}, "x"), recentKey(t0, "x"); a <= b {
		t.Errorf("recentKey of the zero time sorts first: %s, %s", a, b)
	}
}

package stats_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// sizeCheck fails the test if any entity written encodes to more than
// state.MaxEntityBytes, and records the largest of each kind.
type sizeCheck struct {
	state.Store
	t       *testing.T
	largest map[string]int
}

func newSizeCheck(t *testing.T) *sizeCheck {
	return &sizeCheck{Store: state.NewMemory(), t: t, largest: map[string]int{}}
}

func (s *sizeCheck) Update(ctx context.Context, keys []state.Key, fn state.ApplyFunc) (map[state.Key]*state.Entity, error) {
	got, err := s.Store.Update(ctx, keys, fn)
	for k, e := range got {
		n := state.EncodedSize(e)
		kind := "day"
		switch {
		case k == stats.IndexKey:
			kind = "index"
		case k.Block == state.BlockMeta:
			kind = "meta"
		}
		s.largest[kind] = max(s.largest[kind], n)
		if n > state.MaxEntityBytes {
			s.t.Errorf("%s entity encodes to %d bytes, over %d", kind, n, state.MaxEntityBytes)
		}
	}
	return got, err
}

// hostile is a 2 KiB value (what normalization lets through at most) of
// characters JSON escapes six-fold.
func hostile(i int) string { return fmt.Sprintf("%06d", i) + strings.Repeat("<\x01", 1021) }

func collectIn(t *testing.T, c *stats.Collector, evs []audit.Event, n int) {
	t.Helper()
	for i := 0; i < len(evs); i += n {
		if err := c.Collect(context.Background(), evs[i:min(i+n, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
}

// Every list of a day and of a vault's meta entity pushed past its bound
// with worst-case values: each entity stays under the entity limit.
func TestWorstCaseDayAndMeta(t *testing.T) {
	st := newSizeCheck(t)
	c := stats.New(st)
	at := demoDay.Add(10 * time.Hour)
	nda := hostile(0)
	var evs []audit.Event
	for i := range 3 * stats.MaxCallers {
		e := audit.Event{Time: at.Add(time.Duration(i) * time.Second), Vault: "kv-x", Operation: hostile(i),
			Family: audit.FamilySecret, Kind: audit.KindRead, Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
			ObjectType: "secret", ObjectName: hostile(i + 1), DurationMs: int64(i),
			Caller: audit.Caller{Key: hostile(i + 2), KeyFrom: "oid", UPN: hostile(i + 3)}, CallerIP: hostile(i + 4),
			Source: audit.Source{File: "f", Line: i + 1}}
		switch i % 3 {
		case 1:
			e.Outcome, e.HTTPStatus = audit.OutcomeDenied, 403
		case 2:
			e.Family, e.Kind = audit.FamilyVault, audit.KindWrite
			e.Config = &audit.VaultConfig{NetworkDefaultAction: nda, PublicNetworkAccess: nda}
		}
		evs = append(evs, e)
	}
	collectIn(t, c, evs, 100)
	d := stats.ReadDay(st.get(t, stats.DayKey("kv-x", stats.Day(at))))
	if len(d.Admin) != stats.MaxAdmin || d.AdminCount != int64(stats.MaxCallers) || len(d.Callers) != stats.MaxCallers {
		t.Errorf("day: %d admin records of %d, %d callers", len(d.Admin), d.AdminCount, len(d.Callers))
	}
	m := stats.ReadMeta(st.get(t, stats.MetaKey("kv-x")))
	if len(m.Configs) != stats.MaxConfigs || len(m.Callers) == 0 {
		t.Errorf("meta: %d configs, %d callers", len(m.Configs), len(m.Callers))
	}
	t.Logf("largest: %v (meta keeps %d hostile identities)", st.largest, len(m.Callers))
}

// A vault's identities past MaxSeen: the ones seen lately are remembered,
// one seen after 25,000 others too, and the entity stays under the limit.
func TestIdentitiesPastBound(t *testing.T) {
	st := newSizeCheck(t)
	c := stats.New(st)
	at := demoDay.Add(time.Hour)
	var evs []audit.Event
	n := stats.MaxSeen + 5000
	for i := range n {
		evs = append(evs, audit.Event{Time: at.Add(time.Duration(i) * time.Second), Vault: "kv-x", Operation: "SecretGet",
			Family: audit.FamilySecret, Kind: audit.KindRead, Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
			Caller: audit.Caller{Key: fmt.Sprintf("%08d-4f1e-4b5e-9c3b-0a1b2c3d4e5f", i), KeyFrom: "oid",
				UPN: fmt.Sprintf("user%d@contoso.onmicrosoft.com", i)},
			Source: audit.Source{File: "f", Line: i + 1}})
	}
	collectIn(t, c, evs, 1000)
	last := fmt.Sprintf("%08d-4f1e-4b5e-9c3b-0a1b2c3d4e5f", n-1)
	m := stats.ReadMeta(st.get(t, stats.MetaKey("kv-x")))
	if _, ok := m.Callers[last]; !ok || m.Names[last] == "" {
		t.Fatalf("the identity seen last is not remembered (%d remembered)", len(m.Callers))
	}
	if _, ok := m.Callers[fmt.Sprintf("%08d-4f1e-4b5e-9c3b-0a1b2c3d4e5f", 0)]; ok {
		t.Fatal("the identity seen first is still remembered past the bound")
	}
	if len(m.Callers) > stats.MaxSeen || len(m.Callers) < 5000 || len(m.Names) != len(m.Callers) {
		t.Fatalf("%d identities, %d names remembered", len(m.Callers), len(m.Names))
	}
	t.Logf("%d of %d identities remembered; largest: %v", len(m.Callers), n, st.largest)
}

// The index past its bound: a vault seen after thousands of hostile names
// is listed, and the index stays under the limit.
func TestIndexPastBound(t *testing.T) {
	st := newSizeCheck(t)
	c := stats.New(st)
	at := demoDay.Add(time.Hour)
	var evs []audit.Event
	for i := range 2000 {
		evs = append(evs, audit.Event{Time: at.Add(time.Duration(i) * time.Second), Vault: hostile(i),
			Operation: "SecretGet", Family: audit.FamilySecret, Kind: audit.KindRead, Outcome: audit.OutcomeSuccess,
			Source: audit.Source{File: "f", Line: i + 1}})
	}
	evs = append(evs, audit.Event{Time: at.Add(time.Hour), Vault: "kv-late", Operation: "SecretGet",
		Family: audit.FamilySecret, Kind: audit.KindRead, Outcome: audit.OutcomeSuccess,
		Source: audit.Source{File: "f", Line: 5000}})
	collectIn(t, c, evs, 100)
	idx, err := stats.Vaults(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := idx["kv-late"]; !ok || len(idx) >= 2000 {
		t.Fatalf("index lists %d vaults, kv-late %v", len(idx), ok)
	}
	t.Logf("index keeps %d of 2001 vaults; largest: %v", len(idx), st.largest)
}

func (s *sizeCheck) get(t *testing.T, k state.Key) *state.Entity {
	t.Helper()
	got, err := s.Get(context.Background(), []state.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return got[k]
}

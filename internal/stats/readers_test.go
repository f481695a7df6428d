package stats_test

import (
	"context"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// A secret's readers are kept per (secret, caller) pair, whatever bytes
// the names hold, and read back as they were.
func TestReadersKeyedByPair(t *testing.T) {
	at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	pairs := [][2]string{
		{"s\x1e", "k"}, {"s", "\x1ek"}, // joined bare these would be one key
		{"s\x1e\x1e", "k"}, {"s\x1e", "\x1ek"},
		{"plain", "caller"},
	}
	var evs []audit.Event
	for i, p := range pairs {
		for j := 0; j <= i; j++ { // pair i is read i+1 times
			evs = append(evs, audit.Event{Time: at, Vault: "kv1", Operation: "SecretGet", Family: audit.FamilySecret,
				Kind: audit.KindRead, Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret",
				ObjectName: p[0], Caller: audit.Caller{ObjectID: p[1], Key: p[1], KeyFrom: "oid"},
				Source: audit.Source{Partition: "0", Sequence: int64(len(evs) + 1), HasSequence: true}})
		}
	}
	st := state.NewMemory()
	if err := stats.New(st).Collect(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	k := stats.DayKey("kv1", stats.Day(at))
	got, err := st.Get(context.Background(), []state.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	d := stats.ReadDay(got[k])
	for i, p := range pairs {
		if n := d.Readers[p[0]][p[1]]; n != int64(i+1) {
			t.Errorf("%q: %d reads, want %d (readers %v)", p, n, i+1, d.Readers)
		}
	}
}

package heartbeat_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/heartbeat"
	"github.com/kvwatch/kvwatch/internal/state"
)

// sizeCheck fails the test if any entity written is larger, encoded, than
// state.MaxEntityBytes, and records the largest.
type sizeCheck struct {
	state.Store
	t       *testing.T
	largest int
}

func (s *sizeCheck) Update(ctx context.Context, keys []state.Key, fn state.ApplyFunc) (map[state.Key]*state.Entity, error) {
	got, err := s.Store.Update(ctx, keys, fn)
	for k, e := range got {
		n := state.EncodedSize(e)
		s.largest = max(s.largest, n)
		if n > state.MaxEntityBytes {
			s.t.Errorf("entity %v encodes to %d bytes, over %d", k, n, state.MaxEntityBytes)
		}
	}
	return got, err
}

func hear(t *testing.T, m *heartbeat.Monitor, vaults []string) {
	t.Helper()
	for len(vaults) > 0 {
		n := min(len(vaults), 1000)
		evs := make([]audit.Event, n)
		for i := range evs {
			evs[i].Vault = vaults[i]
		}
		if err := m.Heard(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
		vaults = vaults[n:]
	}
}

func silences(t *testing.T, m *heartbeat.Monitor) map[string]bool {
	t.Helper()
	fs, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range fs {
		if f.Rule == heartbeat.RuleSilence {
			out[f.Vault] = true
		}
	}
	return out
}

// A tenant with 20,000 vaults: every one is watched, a vault first heard
// after all the others too, and each goes silent on its own.
func TestManyVaultsAllWatched(t *testing.T) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	store := &sizeCheck{Store: state.NewMemory(), t: t}
	m := heartbeat.New(heartbeat.Options{Store: store, After: time.Hour, Now: func() time.Time { return now }})
	var vaults []string
	for i := range 20000 {
		vaults = append(vaults, fmt.Sprintf("kv-%06d-prod-weu", i))
	}
	hear(t, m, vaults)
	now = now.Add(time.Minute)
	hear(t, m, []string{"kv-latecomer"})
	now = now.Add(2 * time.Hour)
	got := silences(t, m)
	if len(got) != 20001 || !got["kv-latecomer"] || !got["kv-000000-prod-weu"] {
		t.Fatalf("%d silences (latecomer %v), want 20001", len(got), got["kv-latecomer"])
	}
	t.Logf("largest entity: %d bytes", store.largest)
}

// Past MaxVaults the vaults heard from longest ago are forgotten, the
// batch never fails, it is logged once, and the vaults heard lately are
// all still watched.
func TestPastMaxVaults(t *testing.T) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	store := &sizeCheck{Store: state.NewMemory(), t: t}
	var log bytes.Buffer
	m := heartbeat.New(heartbeat.Options{Store: store, After: time.Hour, Now: func() time.Time { return now },
		Log: zerolog.New(&log)})
	total := heartbeat.MaxVaults + 8000
	var recent, chunk []string
	for i := range total {
		v := fmt.Sprintf("kv-%06d", i)
		if i >= total-10000 {
			recent = append(recent, v)
		}
		if chunk = append(chunk, v); len(chunk) == 1000 || i == total-1 {
			now = now.Add(time.Minute) // later vaults are heard later
			hear(t, m, chunk)
			chunk = chunk[:0]
		}
	}
	if n := strings.Count(log.String(), "\n"); n != 1 {
		t.Fatalf("%d log lines, want 1:\n%s", n, log.String())
	}
	now = now.Add(2 * time.Hour)
	got := silences(t, m)
	if len(got) > heartbeat.MaxVaults || len(got) < total-10000 {
		t.Fatalf("%d vaults watched, want between %d and %d", len(got), total-10000, heartbeat.MaxVaults)
	}
	for _, v := range recent {
		if !got[v] {
			t.Fatalf("%s, heard lately, is not watched", v)
		}
	}
	if got["kv-000000"] {
		t.Fatal("the vault heard from longest ago is still watched past the bound")
	}
	// Silences are remembered within the same bound: the next check raises
	// nothing new.
	if again := silences(t, m); len(again) != 0 {
		t.Fatalf("%d silences raised again", len(again))
	}
	t.Logf("%d of %d vaults watched; largest entity %d bytes", len(got), total, store.largest)
}

// Hostile vault names (2 KiB of characters JSON escapes six-fold) cannot
// make an entity too large, nor crowd out a vault heard after them.
func TestHostileVaultNames(t *testing.T) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	store := &sizeCheck{Store: state.NewMemory(), t: t}
	m := heartbeat.New(heartbeat.Options{Store: store, After: time.Hour, Now: func() time.Time { return now }})
	var vaults []string
	for i := range 3000 {
		vaults = append(vaults, fmt.Sprintf("%05d", i)+strings.Repeat("<\x01", 1024))
	}
	hear(t, m, vaults)
	now = now.Add(time.Minute)
	hear(t, m, []string{"kv-real"})
	now = now.Add(2 * time.Hour)
	if got := silences(t, m); !got["kv-real"] {
		t.Fatalf("kv-real not watched among %d", len(got))
	}
	if store.largest < state.MaxEntityBytes/2 {
		t.Fatalf("largest entity %d bytes: the test did not reach the byte bound", store.largest)
	}
}

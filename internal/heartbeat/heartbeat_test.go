package heartbeat_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/heartbeat"
	"github.com/kvwatch/kvwatch/internal/state"
)

func TestSilenceAndBack(t *testing.T) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	store := state.NewMemory()
	m := heartbeat.New(heartbeat.Options{Store: store, After: time.Hour,
		Overrides: map[string]time.Duration{"kv-quiet": 6 * time.Hour}, Watch: []string{"kv-new"},
		Now: func() time.Time { return now }})
	m2 := heartbeat.New(heartbeat.Options{Store: store, After: time.Hour, // a second instance
		Overrides: map[string]time.Duration{"kv-quiet": 6 * time.Hour}, Watch: []string{"kv-new"},
		Now: func() time.Time { return now }})
	ctx := context.Background()
	var all []finding.Finding
	seen := map[string]bool{}
	check := func() {
		t.Helper()
		for _, mon := range []*heartbeat.Monitor{m, m2} { // two timers firing together
			fs, err := mon.Check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				if !seen[f.ID] {
					seen[f.ID] = true
					all = append(all, f)
				}
			}
		}
	}
	ev := func(v string) []audit.Event { return []audit.Event{{Vault: v}} }
	// Every 5 minutes for 10 hours: kv-busy always talks, kv-flaky stops at
	// 02:00 and comes back at 05:00, kv-quiet talks every 4 hours.
	for step := 0; step <= 120; step++ {
		now = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).Add(time.Duration(step) * 5 * time.Minute)
		var evs []audit.Event
		evs = append(evs, ev("kv-busy")...)
		if h := now.Hour(); h < 2 || h >= 5 {
			evs = append(evs, ev("kv-flaky")...)
		}
		if now.Minute() == 0 && now.Hour()%4 == 0 {
			evs = append(evs, ev("kv-quiet")...)
		}
		if err := m.Heard(ctx, evs); err != nil {
			t.Fatal(err)
		}
		check()
	}
	var got []string
	for _, f := range all {
		got = append(got, f.Rule+" "+f.Vault)
	}
	want := "[logging-silence kv-new logging-silence kv-flaky logging-resumed kv-flaky]"
	if fmt.Sprint(got) != want {
		t.Fatalf("findings %v, want %s", got, want)
	}
	if all[1].Severity != finding.High || all[2].Severity != finding.Info {
		t.Fatalf("severities %v %v", all[1].Severity, all[2].Severity)
	}
}

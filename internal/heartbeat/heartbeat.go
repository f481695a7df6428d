// Package heartbeat notices when a vault's audit records stop arriving —
// diagnostic settings removed, the export broken, exactly what an intruder
// would do first — and when they come back. The ingest path records when
// each vault was last heard from; the LoggingSilence timer compares.
package heartbeat

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Rule ids of the findings the monitor raises.
const (
	RuleSilence = "logging-silence"
	RuleResumed = "logging-resumed"
)

var (
	heardKey  = state.Key{Rule: "_heartbeat", Group: "heard", Block: state.BlockMeta}
	silentKey = state.Key{Rule: "_heartbeat", Group: "silent", Block: state.BlockMeta}
)

// Options configure a Monitor.
type Options struct {
	Store state.Store
	// After is how long without a record makes a vault silent.
	After time.Duration
	// Overrides give vaults their own After.
	Overrides map[string]time.Duration
	// Watch names vaults to watch before any record from them was seen.
	Watch []string
	// Forget: a vault not heard from for this long is no longer watched
	// (unless listed in Watch); default 7 days.
	Forget time.Duration
	// Now is "arrival" time: the wall clock in serve, the newest event
	// time in replay.
	Now func() time.Time
}

// Monitor records arrivals and finds silences.
type Monitor struct {
	o     Options
	mu    sync.Mutex
	heard map[string]int64 // last arrival recorded by this process, unix seconds
}

// New returns a monitor.
func New(o Options) *Monitor {
	if o.After <= 0 {
		o.After = time.Hour
	}
	if o.Forget <= 0 {
		o.Forget = 7 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Monitor{o: o, heard: map[string]int64{}}
}

// Stage wraps a pipeline stage: it records the batch's vaults as heard,
// then hands the events on.
func (m *Monitor) Stage(next pipeline.Stage) pipeline.Stage {
	return pipeline.StageFunc(func(ctx context.Context, events []audit.Event) (pipeline.Result, error) {
		if err := m.Heard(ctx, events); err != nil {
			return pipeline.Result{}, err
		}
		if next == nil {
			return pipeline.Result{}, nil
		}
		return next.Consume(ctx, events)
	})
}

// Heard records that the events' vaults were heard from now. It writes
// state at most once a minute per vault per process.
func (m *Monitor) Heard(ctx context.Context, events []audit.Event) error {
	now := m.o.Now().Unix()
	m.mu.Lock()
	var stale []string
	for i := range events {
		v := events[i].Vault
		if v == "" {
			continue
		}
		if last, ok := m.heard[v]; !ok || now-last >= 60 {
			m.heard[v] = now
			if !slices.Contains(stale, v) {
				stale = append(stale, v)
			}
		}
	}
	m.mu.Unlock()
	if len(stale) == 0 {
		return nil
	}
	_, err := m.o.Store.Update(ctx, []state.Key{heardKey}, func(_ state.Key, e *state.Entity) bool {
		if e.Seen == nil {
			e.Seen = map[string]state.Span{}
		}
		changed := false
		for _, v := range stale {
			s, ok := e.Seen[v]
			if !ok {
				s.First = now
			}
			if now > s.Last {
				s.Last, changed = now, true
			}
			e.Seen[v] = s
		}
		return changed
	})
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// Check raises a logging-silence finding for every watched vault not heard
// from for its After, once per silence, and a logging-resumed notice when a
// silent vault is heard from again. The findings' IDs are stable, so two
// timers firing together raise each once.
func (m *Monitor) Check(ctx context.Context) ([]finding.Finding, error) {
	now := m.o.Now()
	got, err := m.o.Store.Get(ctx, []state.Key{heardKey, silentKey})
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	heard := map[string]state.Span{}
	if e := got[heardKey]; e != nil {
		heard = e.Seen
	}
	silent := map[string]state.Span{}
	if e := got[silentKey]; e != nil {
		silent = e.Seen
	}
	vaults := slices.Clone(m.o.Watch)
	for v, s := range heard {
		if now.Sub(time.Unix(s.Last, 0)) < m.o.Forget && !slices.Contains(vaults, v) {
			vaults = append(vaults, v)
		}
	}
	slices.Sort(vaults)
	var out []finding.Finding
	set, clear := map[string]state.Span{}, []string{}
	for _, v := range vaults {
		after := m.o.After
		if o, ok := m.o.Overrides[strings.ToLower(v)]; ok && o > 0 {
			after = o
		}
		h, seen := heard[v]
		last := time.Unix(h.Last, 0).UTC()
		if !seen {
			last = time.Time{}
		}
		quiet := !seen || now.Sub(last) >= after
		s, wasSilent := silent[v]
		switch {
		case quiet && !wasSilent:
			set[v] = state.Span{First: h.Last, Last: now.Unix()}
			out = append(out, silenceFinding(v, last, now, after))
		case !quiet && wasSilent:
			clear = append(clear, v)
			out = append(out, resumedFinding(v, time.Unix(s.First, 0).UTC(), last))
		}
	}
	if len(set)+len(clear) > 0 {
		_, err := m.o.Store.Update(ctx, []state.Key{silentKey}, func(_ state.Key, e *state.Entity) bool {
			if e.Seen == nil {
				e.Seen = map[string]state.Span{}
			}
			for v, s := range set {
				if _, ok := e.Seen[v]; !ok {
					e.Seen[v] = s
				}
			}
			for _, v := range clear {
				delete(e.Seen, v)
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("heartbeat: %w", err)
		}
	}
	return out, nil
}

func silenceFinding(vault string, last, now time.Time, after time.Duration) finding.Finding {
	since := "never heard from"
	if !last.IsZero() {
		since = "no audit record since " + last.Format(time.RFC3339)
	}
	f := finding.Finding{
		Rule: RuleSilence, Title: "Vault's audit logs went silent", Severity: finding.High, Kind: "heartbeat",
		Description: "No audit record arrived from the vault for longer than expected: diagnostic settings removed or broken, the Event Hub export failing, or the vault unused.",
		Tags:        []string{"T1562.008"},
		Group:       []finding.Pair{{Field: "vault", Value: vault}}, Vault: vault,
		Period: last, WindowStart: last, WindowEnd: now, Window: after, FirstEvent: last, LastEvent: last,
		Summary: fmt.Sprintf("Audit logs of %s went silent: %s (expected within %s)", vault, since, after),
		Runbook: "Check the vault's diagnostic settings (category group audit to the Event Hub), the Activity Log for who changed them, and the Event Hub's incoming messages.",
	}
	f.ID = finding.NewID(RuleSilence, vault, last, "")
	return f
}

func resumedFinding(vault string, silentSince, back time.Time) finding.Finding {
	f := finding.Finding{
		Rule: RuleResumed, Title: "Vault's audit logs are back", Severity: finding.Info, Kind: "heartbeat",
		Group: []finding.Pair{{Field: "vault", Value: vault}}, Vault: vault,
		Period: back, WindowStart: silentSince, WindowEnd: back, FirstEvent: back, LastEvent: back,
		Summary: fmt.Sprintf("Audit logs of %s are arriving again (silent since %s)", vault, silentSince.Format(time.RFC3339)),
	}
	f.ID = finding.NewID(RuleResumed, vault, silentSince, "")
	return f
}

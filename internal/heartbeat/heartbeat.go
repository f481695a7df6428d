// Package heartbeat notices when a vault's audit records stop arriving —
// diagnostic settings removed, the export broken, exactly what an intruder
// would do first — and when they come back. The ingest path records when
// each vault was last heard from; the LoggingSilence timer compares.
package heartbeat

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

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

// Bounds. The vaults heard from, and those known to be silent, are kept in
// Shards entities each (the vault's shard is a hash of its name), never in
// one entity that every new vault makes bigger.
const (
	// Shards is how many entities hold the vaults heard from (and as many
	// the silent ones).
	Shards = 16
	// MaxVaultsPerShard bounds the vaults one shard remembers; with
	// ShardBytes it makes MaxVaults.
	MaxVaultsPerShard = 2000
	// MaxVaults is the most vaults watched: 32,000. Past it (a shard full)
	// the vault heard from longest ago in that shard is forgotten, as a
	// vault not heard from for Forget is: no longer watched until it is
	// heard from again. It is logged once per process, and a batch never
	// fails for it.
	MaxVaults = Shards * MaxVaultsPerShard
	// ShardBytes bounds a shard's encoded vault names (Azure's are at most
	// 24 characters, so only hostile or malformed names come near it): past
	// it, as past MaxVaultsPerShard, the longest unheard are forgotten.
	ShardBytes = state.MaxEntityBytes - 16<<10
	// maxLocal bounds this process's memory of when it last wrote each
	// vault (a write throttle): past it, it starts afresh.
	maxLocal = MaxVaults
)

var (
	// legacyHeard and legacySilent are the single entities of earlier
	// versions: still read (and cleared of silences that end), never grown.
	legacyHeard  = state.Key{Rule: "_heartbeat", Group: "heard", Block: state.BlockMeta}
	legacySilent = state.Key{Rule: "_heartbeat", Group: "silent", Block: state.BlockMeta}
)

// shard returns the shard of a vault.
func shard(vault string) int {
	h := fnv.New32a()
	h.Write([]byte(vault))
	return int(h.Sum32() % Shards)
}

func heardKey(i int) state.Key {
	return state.Key{Rule: "_heartbeat", Group: fmt.Sprintf("heard/%02d", i), Block: state.BlockMeta}
}

func silentKey(i int) state.Key {
	return state.Key{Rule: "_heartbeat", Group: fmt.Sprintf("silent/%02d", i), Block: state.BlockMeta}
}

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
	// Log receives the one warning that the bound (MaxVaults) was reached.
	Log zerolog.Logger
}

// Monitor records arrivals and finds silences.
type Monitor struct {
	o     Options
	mu    sync.Mutex
	heard map[string]int64 // last arrival recorded by this process, unix seconds
	full  atomic.Bool      // the bound was reached and logged
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
	if len(m.heard) >= maxLocal {
		clear(m.heard)
	}
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
	keys := make([]state.Key, 0, 1)
	byShard := map[state.Key][]string{}
	for _, v := range stale {
		k := heardKey(shard(v))
		if _, ok := byShard[k]; !ok {
			keys = append(keys, k)
		}
		byShard[k] = append(byShard[k], v)
	}
	forget := int64(m.o.Forget / time.Second)
	var forgot atomic.Int64
	_, err := m.o.Store.Update(ctx, keys, func(k state.Key, e *state.Entity) bool {
		if e.Seen == nil {
			e.Seen = map[string]state.Span{}
		}
		changed := false
		added := false
		for _, v := range byShard[k] {
			s, ok := e.Seen[v]
			if !ok {
				s.First, added = now, true
			}
			if now > s.Last {
				s.Last, changed = now, true
			}
			e.Seen[v] = s
		}
		if added {
			// Vaults not heard from for Forget are no longer watched:
			// dropping them costs nothing. Then the bound.
			for v, s := range e.Seen {
				if now-s.Last > forget && !slices.Contains(m.o.Watch, v) {
					delete(e.Seen, v)
				}
			}
			if n := state.BoundSeen(e.Seen, MaxVaultsPerShard, ShardBytes); n > 0 {
				forgot.Store(int64(n))
			}
		}
		return changed
	})
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if n := forgot.Load(); n > 0 && m.full.CompareAndSwap(false, true) {
		m.o.Log.Warn().Int("max_vaults", MaxVaults).Int64("forgotten", n).
			Msg("heartbeat: more vaults than can be watched; the ones heard from longest ago are forgotten (logged once)")
	}
	return nil
}

// Check raises a logging-silence finding for every watched vault not heard
// from for its After, once per silence, and a logging-resumed notice when a
// silent vault is heard from again. The findings' IDs are stable, so two
// timers firing together raise each once.
func (m *Monitor) Check(ctx context.Context) ([]finding.Finding, error) {
	now := m.o.Now()
	keys := []state.Key{legacyHeard, legacySilent}
	for i := range Shards {
		keys = append(keys, heardKey(i), silentKey(i))
	}
	got, err := m.o.Store.Get(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	// A vault's last arrival: the newest of its shard's and the legacy
	// entity's. Its silence: from its shard, else the legacy entity.
	heard := map[string]state.Span{}
	if e := got[legacyHeard]; e != nil {
		maps.Copy(heard, e.Seen)
	}
	silent := map[string]state.Span{}
	legacy := map[string]bool{}
	if e := got[legacySilent]; e != nil {
		for v, s := range e.Seen {
			silent[v], legacy[v] = s, true
		}
	}
	for i := range Shards {
		if e := got[heardKey(i)]; e != nil {
			for v, s := range e.Seen {
				if h, ok := heard[v]; !ok || s.Last > h.Last {
					heard[v] = s
				}
			}
		}
		if e := got[silentKey(i)]; e != nil {
			for v, s := range e.Seen {
				silent[v] = s
				delete(legacy, v)
			}
		}
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
		var keys []state.Key
		sets := map[state.Key]map[string]state.Span{}
		clears := map[state.Key][]string{}
		touch := func(k state.Key) {
			if _, ok := sets[k]; !ok {
				if _, ok := clears[k]; !ok {
					keys = append(keys, k)
				}
			}
		}
		for v, s := range set {
			k := silentKey(shard(v))
			touch(k)
			if sets[k] == nil {
				sets[k] = map[string]state.Span{}
			}
			sets[k][v] = s
		}
		for _, v := range clear {
			k := silentKey(shard(v))
			if legacy[v] {
				k = legacySilent
			}
			touch(k)
			clears[k] = append(clears[k], v)
		}
		var forgot atomic.Int64
		_, err := m.o.Store.Update(ctx, keys, func(k state.Key, e *state.Entity) bool {
			if e.Seen == nil {
				e.Seen = map[string]state.Span{}
			}
			changed := false
			for v, s := range sets[k] {
				if _, ok := e.Seen[v]; !ok {
					e.Seen[v], changed = s, true
				}
			}
			for _, v := range clears[k] {
				if _, ok := e.Seen[v]; ok {
					delete(e.Seen, v)
					changed = true
				}
			}
			// Past the bound the silences noticed longest ago (Last) go
			// first: such a vault, if still quiet and watched, is found
			// silent again (the same finding ID), not lost.
			if n := state.BoundSeen(e.Seen, MaxVaultsPerShard, ShardBytes); n > 0 {
				forgot.Store(int64(n))
				changed = true
			}
			return changed
		})
		if err != nil {
			return nil, fmt.Errorf("heartbeat: %w", err)
		}
		if n := forgot.Load(); n > 0 && m.full.CompareAndSwap(false, true) {
			m.o.Log.Warn().Int("max_vaults", MaxVaults).Int64("forgotten", n).
				Msg("heartbeat: more silent vaults than can be remembered; the oldest silences are forgotten (logged once)")
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

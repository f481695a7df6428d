package detect_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
)

// sizeCheck fails the test if an entity written, or a finding body
// recorded, encodes to more than state.MaxEntityBytes.
type sizeCheck struct {
	state.Store
	t                 testing.TB
	largest, findings int
}

func (s *sizeCheck) Update(ctx context.Context, keys []state.Key, fn state.ApplyFunc) (map[state.Key]*state.Entity, error) {
	got, err := s.Store.Update(ctx, keys, fn)
	for k, e := range got {
		n := state.EncodedSize(e)
		s.largest = max(s.largest, n)
		if n > state.MaxEntityBytes {
			s.t.Errorf("entity %s/%d encodes to %d bytes, over %d", k.Rule, k.Block, n, state.MaxEntityBytes)
		}
	}
	return got, err
}

func (s *sizeCheck) AddFinding(ctx context.Context, id string, body []byte) (bool, error) {
	s.findings = max(s.findings, len(body))
	if len(body) > state.MaxEntityBytes {
		s.t.Errorf("finding %s is %d bytes, over %d", id, len(body), state.MaxEntityBytes)
	}
	return s.Store.AddFinding(ctx, id, body)
}

type boundHarness struct {
	en    *detect.Engine
	store *sizeCheck
	found []finding.Finding
}

func newBoundHarness(t testing.TB, yaml string) *boundHarness {
	rs, s := compile(t, yaml)
	h := &boundHarness{store: &sizeCheck{Store: state.NewMemory(), t: t}}
	h.en = detect.New(rs, s, detect.Options{Store: h.store, Log: zerolog.Nop(), Now: func() time.Time { return t0 },
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			h.found = append(h.found, fs...)
			return nil
		})})
	return h
}

func (h *boundHarness) feed(t testing.TB, evs []audit.Event) []finding.Finding {
	t.Helper()
	h.found = nil
	for i := 0; i < len(evs); i += 1000 {
		if _, err := h.en.Consume(context.Background(), evs[i:min(i+1000, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	return h.found
}

// hostile is a 2 KiB value (what normalization lets through at most) of
// characters JSON escapes six-fold.
func hostile(i int) string { return fmt.Sprintf("%06d", i) + strings.Repeat("<\x01", 1021) }

// hostileEvent sets every plain string field of e, however deep, to a
// worst-case value.
func hostileEvent(e *audit.Event, i int) {
	str := reflect.TypeOf("")
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for j := range v.NumField() {
				walk(v.Field(j))
			}
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.String:
			if v.Type() == str && v.CanSet() {
				v.SetString(hostile(i))
				i++
			}
		}
	}
	walk(reflect.ValueOf(e).Elem())
}

const newValueRule = `
rules:
  - id: new-caller
    kind: new_value
    match: {families: [secret]}
    group_by: [vault]
    fields: [caller]
    learning: 1s
    horizon: 30d
`

func guid(i int) string { return fmt.Sprintf("%08x-4f1e-4b5e-9c3b-0a1b2c3d4e5f", i) }

// A new_value group past its bound: the values seen lately are remembered
// (seen again: nothing), one seen long ago and forgotten is new again, and
// the group's entity stays under the entity limit.
func TestNewValuePastBound(t *testing.T) {
	h := newBoundHarness(t, newValueRule)
	n := 25000
	var evs []audit.Event
	for i := range n {
		evs = append(evs, ev(guid(i), t0.Add(time.Duration(i)*time.Second), int64(i+1)))
	}
	if got := h.feed(t, evs); len(got) != n-1 { // the first while learning
		t.Fatalf("%d findings for %d new callers", len(got), n-1)
	}
	at := t0.Add(time.Duration(n) * time.Second)
	if got := h.feed(t, []audit.Event{ev(guid(n-1), at, int64(n+1))}); len(got) != 0 {
		t.Fatalf("the caller seen last is new again: %v", got[0].Summary)
	}
	if got := h.feed(t, []audit.Event{ev(guid(0), at, int64(n+2))}); len(got) != 1 {
		t.Fatalf("the caller forgotten at the bound: %d findings, want 1 (new again)", len(got))
	}
	t.Logf("largest entity %d bytes", h.store.largest)
}

// Worst-case values in a new_value group and a distinct window (with one
// bucket per second): the entities stay under the limit and the distinct
// threshold is still crossed.
func TestHostileValuesStayUnderLimit(t *testing.T) {
	h := newBoundHarness(t, `
settings:
  bucket: 1s
rules:
  - id: new-ip
    kind: new_value
    match: {families: [secret]}
    group_by: [vault]
    fields: [ip, object_name]
    learning: 1s
    horizon: 30d
  - id: many-secrets
    kind: distinct
    match: {families: [secret], kinds: [read]}
    group_by: [caller]
    field: object_name
    window: 1h
    count: 40
    cooldown: 1h
`)
	var evs []audit.Event
	for i := range 3000 {
		evs = append(evs, ev("a", t0.Add(time.Duration(i)*time.Second), int64(i+1), func(e *audit.Event) {
			e.CallerIP, e.ObjectName = hostile(i), hostile(i+1)
		}))
	}
	got := h.feed(t, evs)
	distinct := 0
	for _, f := range got {
		if f.Rule == "many-secrets" {
			distinct++
		}
	}
	if distinct == 0 {
		t.Fatal("the distinct threshold was not crossed")
	}
	t.Logf("largest entity %d bytes, largest finding %d bytes", h.store.largest, h.store.findings)
}

// A finding carries one example event, five of each top list and ten
// correlation ids: with every string of its events at the worst case it is
// trimmed to finding.MaxBodyBytes, says so, and keeps what the user needs.
func TestFindingBodyWorstCase(t *testing.T) {
	h := newBoundHarness(t, `
rules:
  - id: each
    kind: each
    match: {families: [secret]}
    group_by: [vault, caller, ip]
  - id: burst
    kind: threshold
    match: {families: [secret]}
    group_by: [vault, caller, ip]
    window: 5m
    count: 2
  - id: new
    kind: new_value
    match: {families: [secret]}
    group_by: [vault, caller]
    fields: [ip, object_name, operation]
    learning: 1s
    horizon: 30d
`)
	var evs []audit.Event
	for i := range 20 {
		e := ev("a", t0.Add(time.Duration(i)*time.Second), int64(i+1))
		hostileEvent(&e, i*100)
		e.Vault, e.Caller.Key, e.CallerIP = hostile(1), hostile(2), hostile(3) // one group
		e.Config = &audit.VaultConfig{NetworkDefaultAction: hostile(4), PublicNetworkAccess: hostile(5)}
		evs = append(evs, e)
	}
	got := h.feed(t, evs)
	if len(got) < 3 {
		t.Fatalf("%d findings", len(got))
	}
	for _, f := range got {
		if h.store.findings > finding.MaxBodyBytes || f.Trimmed == "" || f.Summary == "" || f.KQL == "" {
			t.Fatalf("finding %s: %d bytes, trimmed %q", f.Rule, h.store.findings, f.Trimmed)
		}
	}
	t.Logf("largest finding %d bytes", h.store.findings)
}

package config

import (
	"strings"
	"testing"
)

// routine is checked like every other rule key, every error at once with
// file:line:col: a kind that takes none, after below 2, growth below 1, a
// within its periods cannot fit in, an unknown key; an override changes
// only the keys it sets, gives a rule without one the defaults, and turns
// one off with enabled: false.
func TestRoutine(t *testing.T) {
	noenv := Options{Getenv: func(string) string { return "" }}
	_, err := Parse("kvwatch.yaml", []byte(`
rules:
  - id: a
    kind: threshold
    window: 5m
    count: 3
    routine: {after: 1, growth: 0.5, within: -1h}
  - id: b
    kind: new_value
    fields: [caller]
    routine: {}
  - id: c
    kind: distinct
    field: object_name
    window: 1h
    count: 10
    cooldown: 24h
    routine: {after: 3, within: 2d}
  - id: d
    kind: each
    routine: {afer: 3}
overrides:
  x:
    routine: {growth: 0}
`), noenv)
	want := []string{
		`kvwatch.yaml:7:15: rules[0].routine.after: after must be from 2 to 64`,
		`kvwatch.yaml:7:25: rules[0].routine.growth: growth "0.5" must be at least 1`,
		`kvwatch.yaml:7:38: rules[0].routine.within: duration "-1h" must not be negative`,
		`kvwatch.yaml:11:5: rules[1].routine: new_value rules take no routine (only each, threshold, distinct, spike and sequence rules do)`,
		`kvwatch.yaml:18:5: rules[2].routine: a group cannot fire in 3 periods of 1d (the cooldown) within 2d: make within longer than 2d`,
		`kvwatch.yaml:21:15: rules[3].routine.afer: unknown key "afer" (did you mean "after"?)`,
		// Routine learns application identities, told from people by the
		// group's caller: a rule grouped otherwise takes none.
		`kvwatch.yaml:18:5: rules[2].routine: routine learns application identities only, never people, and tells them apart by the caller: group_by must include caller (or object_id)`,
		`kvwatch.yaml:24:15: overrides.x.routine.growth: growth "0" must be at least 1`,
	}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("errors:\n%v\nwant one starting %s", err, w)
		}
	}

	pack, err := Parse("pack.yaml", []byte(`
rules:
  - id: burst
    kind: threshold
    group_by: [vault, caller]
    window: 5m
    count: 25
    routine: {after: 4}
  - id: sweep
    kind: distinct
    group_by: [vault, object_id]
    field: object_name
    window: 15m
    count: 10
  - id: day
    kind: distinct
    group_by: [caller]
    field: object_name
    window: 24h
    count: 11
    cooldown: 24h
    routine: {}
  - id: denied
    kind: threshold
    group_by: [ip]
    window: 5m
    count: 25
  - id: admin
    kind: each
  - id: newcaller
    kind: new_value
    fields: [caller]
`), noenv)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("kvwatch.yaml", []byte(`
overrides:
  burst:
    routine: {growth: 3}
  sweep:
    routine: {within: 2d}
  day:
    routine: {enabled: false}
`), noenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := Resolve(f, pack); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.Rules {
		rt := r.Routine
		switch r.ID {
		case "burst":
			if !rt.On() || rt.After != 4 || rt.Growth != 3 || rt.Within.Duration != 7*Day {
				t.Errorf("burst: the override sets growth only: %+v", *rt)
			}
		case "sweep":
			if !rt.On() || rt.After != 3 || rt.Growth != 2 || rt.Within.Duration != 2*Day {
				t.Errorf("sweep: a routine from the override, the defaults filling in: %+v", *rt)
			}
		case "day":
			if rt.On() {
				t.Errorf("day: enabled: false leaves it on: %+v", *rt)
			}
		case "admin", "newcaller":
			if rt != nil {
				t.Errorf("%s: a routine nobody asked for: %+v", r.ID, *rt)
			}
		}
	}

	// Overrides are checked against the rule they change, with positions.
	bad, err := Parse("kvwatch.yaml", []byte(`
overrides:
  newcaller:
    routine: {after: 3}
  day:
    cooldown: 4d
  denied:
    routine: {}
`), noenv)
	if err != nil {
		t.Fatal(err)
	}
	err = Resolve(bad, pack)
	for _, w := range []string{
		`kvwatch.yaml:4:5: overrides.newcaller.routine: rule newcaller is of kind new_value, which takes no routine`,
		`kvwatch.yaml:6:5: overrides.day.cooldown: a group cannot fire in 3 periods of 4d (the cooldown) within 1w: make within longer than 1w1d`,
		`kvwatch.yaml:8:5: overrides.denied.routine: routine learns application identities only, never people, and tells them apart by the caller: group_by must include caller (or object_id)`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("errors:\n%v\nwant one starting %s", err, w)
		}
	}
}

package config

import (
	"strings"
	"testing"
)

func defaultUpdateOn(kind string) *UpdateOn {
	u := &UpdateOn{}
	applyUpdateOn(&u, kind)
	return u
}

// update_on is checked like other rule keys, with positions; an override
// changes only the keys it sets; defaults are what a security team picks:
// new operations and a higher severity always, the count when it doubles
// (but for each rules, whose count is a batch's).
func TestUpdateOn(t *testing.T) {
	_, err := Parse("kvwatch.yaml", []byte(`
rules:
  - id: a
    kind: each
    update_on: {count_factor: 1.1}
  - id: b
    kind: each
    update_on: {count_factor: -2}
overrides:
  x:
    update_on: {count_factor: 1}
`), Options{Getenv: func(string) string { return "" }})
	want := []string{
		`kvwatch.yaml:5:17: rules[0].update_on.count_factor: count_factor "1.1" must be 0`,
		`kvwatch.yaml:8:17: rules[1].update_on.count_factor: count_factor "-2" must be 0`,
		`kvwatch.yaml:11:17: overrides.x.update_on.count_factor: count_factor "1" must be 0`,
	}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Fatalf("errors:\n%v\nwant one starting %s", err, w)
		}
	}

	pack, err := Parse("pack.yaml", []byte(`
rules:
  - id: a
    kind: each
  - id: b
    kind: each
    update_on: {count_factor: 4}
  - id: c
    kind: threshold
    window: 5m
    count: 10
inhibit:
  - {source_rules: [a], target_rules: [b], equal: [vault]}
`), Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("kvwatch.yaml", []byte(`
overrides:
  b:
    update_on: {operations: false}
`), Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := Resolve(f, pack); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.Rules {
		u := r.UpdateOn
		switch r.ID {
		case "a":
			if !*u.Operations || !*u.Severity || *u.CountFactor != 0 {
				t.Errorf("a: defaults of an each rule (its count is a batch's) %+v", *u)
			}
		case "b":
			if *u.Operations || !*u.Severity || *u.CountFactor != 4 {
				t.Errorf("b: the override sets operations only: %+v", *u)
			}
		case "c":
			if !*u.Operations || !*u.Severity || *u.CountFactor != DefaultCountFactor {
				t.Errorf("c: defaults %+v", *u)
			}
		}
	}
	if len(f.Inhibit) != 1 || f.Inhibit[0].SourceRules[0] != "a" {
		t.Errorf("a file without inhibit takes the pack's: %+v", f.Inhibit)
	}
}

// inhibit: every rule pattern must name a rule, no rule inhibits itself,
// equal names event fields; `inhibit: []` turns the pack's off.
func TestInhibit(t *testing.T) {
	getenv := func(string) string { return "" }
	pack, err := Parse("pack.yaml", []byte(`
rules:
  - {id: weakened, kind: each}
  - {id: admin, kind: each}
inhibit:
  - {source_rules: [weakened], target_rules: [admin], equal: [vault, caller]}
`), Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("kvwatch.yaml", []byte(`
inhibit:
  - {source_rules: [], target_rules: [admin], equal: [vault, callr]}
`), Options{Getenv: getenv})
	for _, w := range []string{"inhibit[0].source_rules: source_rules is required", `inhibit[0].equal[1]: unknown field "callr" (did you mean "caller"?)`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Fatalf("errors:\n%v\nwant %s", err, w)
		}
	}
	f, err := Parse("kvwatch.yaml", []byte(`
inhibit:
  - {source_rules: [weakend], target_rules: ["*"], equal: [vault]}
`), Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	err = Resolve(f, pack)
	for _, w := range []string{
		`kvwatch.yaml:3:21: inhibit[0].source_rules[0]: no rule "weakend" (did you mean "weakened"?)`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Fatalf("errors:\n%v\nwant %s", err, w)
		}
	}
	f, err = Parse("kvwatch.yaml", []byte(`
inhibit:
  - {source_rules: ["*"], target_rules: [admin], equal: [vault]}
`), Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if err := Resolve(f, pack); err == nil || !strings.Contains(err.Error(), "rule admin is both a source and a target") {
		t.Fatalf("a rule inhibiting itself: %v", err)
	}
	f, err = Parse("kvwatch.yaml", []byte("inhibit: []\n"), Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if err := Resolve(f, pack); err != nil || len(f.Inhibit) != 0 {
		t.Fatalf("inhibit: [] keeps %+v (%v)", f.Inhibit, err)
	}
}

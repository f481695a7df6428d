// Package ruletest runs rule tests: YAML files that give input records and
// the findings expected from them (rule and group), or none. The default
// pack ships a positive and a negative test for every rule; `kvwatch rules
// test` and `make test` run them through the real pipeline (ingest,
// normalization, detection with in-memory state).
package ruletest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// File is one test file.
type File struct {
	// Defaults are merged into every record of every test (a record's own
	// fields win; nested maps merge).
	Defaults map[string]any `yaml:"defaults"`
	Tests    []Test         `yaml:"tests"`
}

// Test is one case.
type Test struct {
	Name string `yaml:"name"`
	// Rules limits evaluation to these rule ids; all rules when empty.
	Rules   []string `yaml:"rules"`
	Records []Series `yaml:"records"`
	// Expect lists the findings expected, exactly: each (rule, group) once.
	// An empty list expects none.
	Expect []Expect `yaml:"expect"`
	// Batches cuts the records into this many batches (default 1), and
	// Shuffle feeds them in a seeded random order; findings must not change.
	Batches int   `yaml:"batches"`
	Shuffle int64 `yaml:"shuffle"`
}

// Series is one record template, repeated.
type Series struct {
	At     string         `yaml:"at"`     // time of the first record (RFC 3339)
	Repeat int            `yaml:"repeat"` // default 1
	Every  string         `yaml:"every"`  // spacing, a Go duration or Nd
	Record map[string]any `yaml:"record"` // raw AuditEvent fields; "{i}" in strings becomes the index
}

// Expect is one expected finding. Rule and group name it; the other keys,
// when given, must hold for it too. A finding handed on several times (an
// incident that grows over batches) is judged by its last version, and its
// operations by every version.
type Expect struct {
	Rule  string            `yaml:"rule"`
	Group map[string]string `yaml:"group"`
	// Count is the finding's count (events, distinct values, …).
	Count *int64 `yaml:"count"`
	// Operations are the operations its evidence names, as a set.
	Operations []string `yaml:"operations"`
	// Summary must appear in its summary.
	Summary string `yaml:"summary"`
	// Severity is its severity (info .. critical).
	Severity string `yaml:"severity"`
	// Value must appear in its value (new_value, config_change rules).
	Value string `yaml:"value"`
	// Routine is whether it is marked routine (its group fires
	// routinely: the rule's routine:, not alerted).
	Routine *bool `yaml:"routine"`
}

// Result is the outcome of one test.
type Result struct {
	File, Name string
	Err        error // nil when the test passed
}

// Load reads every *.yaml file under dir of fsys.
func Load(fsys fs.FS, dir string) (map[string]*File, error) {
	out := map[string]*File{}
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		var f File
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		out[p] = &f
		return nil
	})
	return out, err
}

// Run runs every test of every file against the rules.
func Run(ctx context.Context, rs []*rules.Rule, s *rules.Settings, files map[string]*File) []Result {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Result
	for _, n := range names {
		f := files[n]
		for _, t := range f.Tests {
			out = append(out, Result{File: n, Name: t.Name, Err: runOne(ctx, rs, s, f, &t)})
		}
	}
	return out
}

func runOne(ctx context.Context, all []*rules.Rule, s *rules.Settings, f *File, t *Test) error {
	var rs []*rules.Rule
	for _, r := range all {
		if len(t.Rules) == 0 || slices.Contains(t.Rules, r.ID) {
			rs = append(rs, r)
		}
	}
	if len(t.Rules) > 0 && len(rs) != len(t.Rules) {
		return fmt.Errorf("names a rule that is not configured: %v", t.Rules)
	}
	lines, err := expand(f.Defaults, t.Records)
	if err != nil {
		return err
	}
	if t.Shuffle != 0 {
		shuffle(lines, t.Shuffle)
	}
	var got []finding.Finding
	seen := map[string]int{}
	ops := map[string]map[string]bool{}
	sink := detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
		for _, f := range fs {
			// A sink is idempotent by finding ID: one finding per ID, its
			// last version, with the operations of every version.
			if ops[f.ID] == nil {
				ops[f.ID] = map[string]bool{}
			}
			for _, o := range f.TopOperations {
				ops[f.ID][o.Value] = true
			}
			if i, ok := seen[f.ID]; ok {
				got[i] = f
				continue
			}
			seen[f.ID] = len(got)
			got = append(got, f)
		}
		return nil
	})
	// Rules under test run even when switched off in the config.
	on := make([]*rules.Rule, len(rs))
	for i, r := range rs {
		c := *r
		c.Off = ""
		on[i] = &c
	}
	en := detect.New(on, s, detect.Options{Store: state.NewMemory(), Sink: sink, Log: zerolog.Nop(),
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }})
	n := max(t.Batches, 1)
	var dec ingest.Decoder
	per := (len(lines) + n - 1) / n
	for i := 0; i < len(lines); i += max(per, 1) {
		chunk := lines[i:min(i+max(per, 1), len(lines))]
		b := dec.File("test", []byte(strings.Join(chunk, "\n")))
		if len(b.Letters) > 0 {
			return fmt.Errorf("test records do not normalize: %v", b.Problems)
		}
		// Positions must be unique across batches for exactly-once.
		for j := range b.Events {
			b.Events[j].Source.File, b.Events[j].Source.Line = "", 0
		}
		if _, err := en.Consume(ctx, b.Events); err != nil {
			return err
		}
	}
	return compare(rs, t.Expect, got, ops)
}

func compare(rs []*rules.Rule, want []Expect, got []finding.Finding, ops map[string]map[string]bool) error {
	key := func(rule string, g map[string]string) string {
		ks := make([]string, 0, len(g))
		for k, v := range g {
			ks = append(ks, k+"="+v)
		}
		sort.Strings(ks)
		return rule + " {" + strings.Join(ks, " ") + "}"
	}
	w := map[string]int{}
	wantOf := map[string][]*Expect{}
	for i, e := range want {
		w[key(e.Rule, e.Group)]++
		wantOf[key(e.Rule, e.Group)] = append(wantOf[key(e.Rule, e.Group)], &want[i])
	}
	g := map[string]int{}
	gotOf := map[string][]*finding.Finding{}
	for fi := range got {
		f := &got[fi]
		m := map[string]string{}
		for _, p := range f.Group {
			m[p.Field] = p.Value
		}
		// An expectation may name only some group fields.
		k := key(f.Rule, m)
		for _, e := range want {
			if e.Rule != f.Rule {
				continue
			}
			sub := map[string]string{}
			for field := range e.Group {
				sub[field] = m[field]
			}
			if key(e.Rule, sub) == key(e.Rule, e.Group) {
				k = key(e.Rule, e.Group)
				break
			}
		}
		g[k]++
		gotOf[k] = append(gotOf[k], f)
	}
	var diffs []string
	// Details: the i-th expectation of a key against the i-th finding of
	// that key, in the order they were raised (earlier periods first).
	for k, es := range wantOf {
		fs := gotOf[k]
		slices.SortStableFunc(fs, func(a, b *finding.Finding) int { return a.Period.Compare(b.Period) })
		for i, e := range es {
			if i >= len(fs) {
				break
			}
			diffs = append(diffs, details(k, e, fs[i], ops[fs[i].ID])...)
		}
	}
	for k, n := range w {
		if g[k] != n {
			diffs = append(diffs, fmt.Sprintf("want %d× %s, got %d", n, k, g[k]))
		}
	}
	for k, n := range g {
		if _, ok := w[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %d× %s", n, k))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return fmt.Errorf("%s", strings.Join(diffs, "; "))
}

// details compares the keys an expectation gives beyond rule and group.
func details(k string, e *Expect, f *finding.Finding, ops map[string]bool) []string {
	var d []string
	if e.Count != nil && f.Count != *e.Count {
		d = append(d, fmt.Sprintf("%s: count %d, want %d", k, f.Count, *e.Count))
	}
	if e.Operations != nil {
		var have []string
		for o := range ops {
			have = append(have, o)
		}
		w := slices.Clone(e.Operations)
		slices.Sort(have)
		slices.Sort(w)
		if !slices.Equal(have, w) {
			d = append(d, fmt.Sprintf("%s: operations %v, want %v", k, have, w))
		}
	}
	if e.Summary != "" && !strings.Contains(f.Summary, e.Summary) {
		d = append(d, fmt.Sprintf("%s: summary %q does not contain %q", k, f.Summary, e.Summary))
	}
	if e.Severity != "" && !strings.EqualFold(f.Severity.String(), e.Severity) {
		d = append(d, fmt.Sprintf("%s: severity %s, want %s", k, f.Severity, e.Severity))
	}
	if e.Value != "" && !strings.Contains(f.Value, e.Value) {
		d = append(d, fmt.Sprintf("%s: value %q does not contain %q", k, f.Value, e.Value))
	}
	if e.Routine != nil && f.Routine != *e.Routine {
		d = append(d, fmt.Sprintf("%s: routine %t, want %t (summary %q)", k, f.Routine, *e.Routine, f.Summary))
	}
	return d
}

// expand turns series into JSON lines.
func expand(defaults map[string]any, series []Series) ([]string, error) {
	var out []string
	for si, s := range series {
		at, err := time.Parse(time.RFC3339, s.At)
		if err != nil {
			return nil, fmt.Errorf("records[%d].at: %w", si, err)
		}
		every := time.Duration(0)
		if s.Every != "" {
			if every, err = parseDuration(s.Every); err != nil {
				return nil, fmt.Errorf("records[%d].every: %w", si, err)
			}
		}
		n := max(s.Repeat, 1)
		for i := 0; i < n; i++ {
			rec := merge(defaults, s.Record)
			rec = subst(rec, strconv.Itoa(i)).(map[string]any)
			rec["time"] = at.Add(time.Duration(i) * every).UTC().Format("2006-01-02T15:04:05.0000000Z")
			b, err := json.Marshal(rec)
			if err != nil {
				return nil, fmt.Errorf("records[%d]: %w", si, err)
			}
			out = append(out, string(b))
		}
	}
	return out, nil
}

func parseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		return time.Duration(n) * 24 * time.Hour, err
	}
	return time.ParseDuration(s)
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = merge(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func subst(v any, i string) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, "{i}", i)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, vv := range x {
			m[k] = subst(vv, i)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for k, vv := range x {
			l[k] = subst(vv, i)
		}
		return l
	}
	return v
}

// shuffle permutes lines with a small deterministic generator.
func shuffle(lines []string, seed int64) {
	x := uint64(seed)*6364136223846793005 + 1442695040888963407
	for i := len(lines) - 1; i > 0; i-- {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		j := int(x % uint64(i+1))
		lines[i], lines[j] = lines[j], lines[i]
	}
}

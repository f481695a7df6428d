// Package digest computes the daily, weekly and monthly digests from the
// statistics the ingest path keeps (internal/stats) and the alerts in the
// outbox, and renders them as text, HTML (with an inline PNG chart) and an
// Adaptive Card.
//
// Figures and where they come from:
//
//   - requests, success ratio, average latency, denied requests, the
//     chart: hourly counters, so they are exact for the local period in any
//     zone whose offset is whole hours;
//   - p95 latency, requests by family, distinct callers and the top lists
//     (denied callers and IPs, secrets read and their readers): kept per
//     UTC day; a period takes the UTC days whose noon falls inside it (a
//     note says so when the zone is not UTC);
//   - new identities, changes, findings: each with its own time, exact;
//   - findings learned as routine and not alerted: delivery's routine
//     decisions made in the period (the outbox's, routine.go).
//
// The success ratio leaves out the SDKs' anonymous 401 challenges (every
// client's first request is answered 401 by design), which are counted
// apart and never as denied.
package digest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// Limits of the lists a report carries.
const (
	TopN        = 5    // top denied callers, IPs, secrets
	TopReaders  = 3    // readers shown per secret
	MaxListed   = 50   // identities and changes listed per section
	RecentLimit = 5000 // outbox entries examined for findings
)

// Report is one digest. Every string that came from a log record (vault,
// caller, IP, secret and operation names, summaries) is as logged: the
// renderers escape them.
type Report struct {
	Period     Period
	Start, End time.Time // local: [Start, End)
	Zone       string
	Generated  time.Time // the instant the digest was computed for

	Overall Summary
	Vaults  []Summary // by name

	// Findings raised in the period (alerts created in it), oldest first.
	Findings          []Finding
	FindingsTruncated bool // the outbox held more than RecentLimit alerts

	// Routine are the findings learned as routine and not alerted (their
	// rule's routine:, decided in the period), per rule and group, most
	// findings first; RoutineCount counts them all. RoutineTruncated: more
	// than RoutineLimit were decided, the counts are lower bounds.
	Routine          []RoutineGroup
	RoutineCount     int
	RoutineTruncated bool

	Chart Chart

	// Monthly only.
	Trend      *Trend
	Compliance []Compliance

	Notes []string
}

// Summary holds one vault's figures, or all vaults' (Vault "").
type Summary struct {
	Vault      string
	Requests   int64
	Success    int64
	Denied     int64
	Challenges int64
	// SuccessRatio is Success / (Requests - Challenges); 0 without requests.
	SuccessRatio float64
	AvgLatencyMs float64
	P95LatencyMs float64

	Families []FamilyCount

	DistinctCallers int
	// CallersAtLeast: a day had stats.MaxCallers distinct callers or more,
	// so DistinctCallers is a lower bound.
	CallersAtLeast bool

	NewIdentities      []Identity
	NewIdentitiesCount int
	// WatchedSince is the vault's first record when it falls in the period:
	// then every identity is new.
	WatchedSince time.Time

	DeniedCallers []Top
	DeniedIPs     []Top
	SecretReads   int64
	Secrets       []SecretTop

	Changes      []Change
	ChangesCount int64

	// FindingsBySeverity counts the findings raised, indexed by severity.
	FindingsBySeverity [finding.Critical + 1]int
	FindingsCount      int
}

// FamilyCount is the requests of one family.
type FamilyCount struct {
	Family                    audit.Family
	Requests, Success, Denied int64
}

// Top is one entry of a top list.
type Top struct {
	Key   string // caller key, or IP
	Name  string // display name, when known and different
	Vault string // secrets: the secret's vault
	// Vaults are the vaults an overall entry adds up (denied callers, IPs).
	Vaults []string
	Count  int64
}

// SecretTop is a secret and its readers.
type SecretTop struct {
	Vault, Name string
	Reads       int64
	Readers     []Top
}

// Identity is an identity first seen on a vault in the period.
type Identity struct {
	Vault, Key, Name string
	First            time.Time
}

// Change is an administrative operation.
type Change struct {
	Vault      string
	Time       time.Time
	Operation  string
	What       string // configuration, permissions, administrative
	Outcome    audit.Outcome
	Caller     string // key
	CallerName string
	IP         string
	Config     *audit.VaultConfig
	// Details describe the change: what differs from the previous
	// configuration recorded, or the configuration left.
	Details []string
}

// Finding is a finding raised in the period and where its alert stands.
type Finding struct {
	Raised     time.Time
	FirstEvent time.Time
	Severity   finding.Severity
	Rule       string
	Title      string
	Vault      string
	Summary    string
	Count      int64
	AlertID    string
	MutedBy    string
	Delivery   []Delivery
}

// Delivery is an alert's state with one receiver.
type Delivery struct {
	Receiver  string
	State     delivery.State
	Attempts  int
	LastError string
}

// Chart is request volume per slot (hours for a daily digest, days
// otherwise) and vault.
type Chart struct {
	Unit   string      // "hour" or "day"
	Slots  []time.Time // slot starts, local
	Series []ChartSeries
}

// ChartSeries is one vault's counts per slot.
type ChartSeries struct {
	Vault  string
	Counts []int64
}

// Trend compares a month with the one before.
type Trend struct {
	PrevStart, PrevEnd time.Time
	Previous           Summary
	Vaults             []VaultTrend
}

// VaultTrend is one vault's requests and denied requests, both months.
type VaultTrend struct {
	Vault                  string
	Requests, PrevRequests int64
	Denied, PrevDenied     int64
}

// Compliance is a vault's configuration as last recorded before the end
// of the period.
type Compliance struct {
	Vault string
	// Known is false when no VaultPut/VaultPatch was ever recorded.
	Known  bool
	AsOf   time.Time
	By     string
	Config audit.VaultConfig
	// Problems, empty when compliant: purge protection off, public network
	// access, access policies instead of RBAC.
	Problems []string
}

// Compute builds the digest of the last whole period before at, in zone.
// outbox may be nil (no findings section).
func Compute(ctx context.Context, store state.Store, outbox delivery.Outbox, period Period, at time.Time, zone *time.Location) (*Report, error) {
	if _, err := ParsePeriod(string(period)); err != nil {
		return nil, err
	}
	if zone == nil {
		zone = time.UTC
	}
	start, end := Bounds(period, at, zone)
	r := &Report{Period: period, Start: start, End: end, Zone: zone.String(), Generated: at}
	index, err := stats.Vaults(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	vaults := knownBefore(index, end)
	data, err := load(ctx, store, vaults, start, end)
	if err != nil {
		return nil, err
	}
	var findings []Finding
	if outbox != nil {
		var alerted map[string]bool
		findings, r.FindingsTruncated, alerted, err = loadFindings(ctx, outbox, start, end)
		if err != nil {
			return nil, err
		}
		if r.Routine, r.RoutineCount, r.RoutineTruncated, err = loadRoutine(ctx, outbox, start, end, alerted); err != nil {
			return nil, err
		}
	}
	r.Findings = findings
	r.Overall, r.Vaults = summarize(data, vaults, start, end, findings)
	r.Chart = chartOf(data, vaults, period, start, end, zone)
	if _, off := start.Zone(); off%86400 != 0 {
		r.Notes = append(r.Notes, "Requests by family, p95 latency, distinct callers and the top lists cover the UTC days whose noon falls in the period ("+
			utcDays(start, end)+"); every other figure is exact for the local period.")
	}
	if start.Unix()%3600 != 0 {
		r.Notes = append(r.Notes, "The zone's offset is not a whole number of hours: hourly figures are counted by UTC hour.")
	}

	if period == Monthly {
		ps, pe := Bounds(Monthly, start, zone)
		pv := knownBefore(index, pe)
		pdata, err := load(ctx, store, pv, ps, pe)
		if err != nil {
			return nil, err
		}
		var pf []Finding
		if outbox != nil {
			if pf, _, _, err = loadFindings(ctx, outbox, ps, pe); err != nil {
				return nil, err
			}
		}
		prev, prevVaults := summarize(pdata, pv, ps, pe, pf)
		t := &Trend{PrevStart: ps, PrevEnd: pe, Previous: prev}
		pm := map[string]*Summary{}
		for i := range prevVaults {
			pm[prevVaults[i].Vault] = &prevVaults[i]
		}
		for _, s := range r.Vaults {
			vt := VaultTrend{Vault: s.Vault, Requests: s.Requests, Denied: s.Denied}
			if p := pm[s.Vault]; p != nil {
				vt.PrevRequests, vt.PrevDenied = p.Requests, p.Denied
			}
			t.Vaults = append(t.Vaults, vt)
		}
		r.Trend = t
		r.Compliance = compliance(data, vaults, end)
	}
	return r, nil
}

func knownBefore(index map[string]state.Span, end time.Time) []string {
	var vs []string
	for v, s := range index {
		if s.First < end.Unix() {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs
}

func utcDays(start, end time.Time) string {
	var first, last int64 = 1, 0
	for d := stats.Day(start) - 1; d <= stats.Day(end)+1; d++ {
		if noonIn(d, start, end) {
			if first > last {
				first = d
			}
			last = d
		}
	}
	if first > last {
		return "none"
	}
	f := time.Unix(first*86400, 0).UTC().Format(time.DateOnly)
	if first == last {
		return f
	}
	return f + " to " + time.Unix(last*86400, 0).UTC().Format(time.DateOnly)
}

func noonIn(day int64, start, end time.Time) bool {
	noon := day*86400 + 43200
	return noon >= start.Unix() && noon < end.Unix()
}

func hourIn(h int64, start, end time.Time) bool {
	return h*3600 >= start.Unix() && h*3600 < end.Unix()
}

type vaultData struct {
	days map[int64]*stats.DayStats
	meta *stats.Meta
}

// load reads the day entities overlapping [start, end) and the meta entity
// of every vault.
func load(ctx context.Context, store state.Store, vaults []string, start, end time.Time) (map[string]*vaultData, error) {
	first, last := stats.Day(start), stats.Day(end.Add(-time.Second))
	var keys []state.Key
	for _, v := range vaults {
		keys = append(keys, stats.MetaKey(v))
		for d := first; d <= last; d++ {
			keys = append(keys, stats.DayKey(v, d))
		}
	}
	got := map[state.Key]*state.Entity{}
	for i := 0; i < len(keys); i += 200 {
		part, err := store.Get(ctx, keys[i:min(i+200, len(keys))])
		if err != nil {
			return nil, fmt.Errorf("digest: read statistics: %w", err)
		}
		maps.Copy(got, part)
	}
	out := map[string]*vaultData{}
	for _, v := range vaults {
		vd := &vaultData{days: map[int64]*stats.DayStats{}, meta: stats.ReadMeta(got[stats.MetaKey(v)])}
		for d := first; d <= last; d++ {
			if e := got[stats.DayKey(v, d)]; e != nil {
				vd.days[d] = stats.ReadDay(e)
			}
		}
		out[v] = vd
	}
	return out, nil
}

// loadFindings lists the findings of the alerts created in [start, end),
// and the IDs of the findings every alert examined carries.
func loadFindings(ctx context.Context, outbox delivery.Outbox, start, end time.Time) ([]Finding, bool, map[string]bool, error) {
	entries, err := outbox.Recent(ctx, RecentLimit)
	if err != nil {
		return nil, false, nil, fmt.Errorf("digest: read the outbox: %w", err)
	}
	truncated := len(entries) == RecentLimit && !entries[len(entries)-1].Alert.Created.Before(start)
	var out []Finding
	for _, e := range entries {
		a := e.Alert
		if a == nil || a.Test || a.Created.Before(start) || !a.Created.Before(end) {
			continue
		}
		var ds []Delivery
		for _, name := range slices.Sorted(maps.Keys(e.Receivers)) {
			at := e.Receivers[name]
			ds = append(ds, Delivery{Receiver: name, State: at.State, Attempts: at.Attempts, LastError: at.LastError})
		}
		for _, f := range a.Findings {
			out = append(out, Finding{Raised: a.Created, FirstEvent: f.FirstEvent, Severity: f.Severity, Rule: f.Rule,
				Title: f.Title, Vault: f.Vault, Summary: f.Summary, Count: f.Count, AlertID: a.ID, MutedBy: e.MutedBy,
				Delivery: ds})
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(a.FirstEvent.Compare(b.FirstEvent), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Vault, b.Vault))
	})
	return out, truncated, alertedFindings(entries), nil
}

// acc gathers one vault's (or all vaults') figures.
type acc struct {
	c             stats.Counters
	fam           map[audit.Family]*FamilyCount
	hist          stats.Histogram
	callers       map[string]bool
	capped        bool
	deniedCallers map[[2]string]int64 // vault, key
	deniedIPs     map[[2]string]int64
	secrets       map[[2]string]int64            // vault, name
	readers       map[[2]string]map[string]int64 // (vault, name) → caller → reads
	names         map[string]string
	changes       []Change
	changesExtra  int64
	newIDs        []Identity
	watchedSince  time.Time
	// overall: top lists of callers and IPs add up over vaults.
	overall bool
	where   map[[2]string][]string // (kind, key) → vaults
}

func newAcc() *acc {
	return &acc{fam: map[audit.Family]*FamilyCount{}, callers: map[string]bool{},
		deniedCallers: map[[2]string]int64{}, deniedIPs: map[[2]string]int64{},
		secrets: map[[2]string]int64{}, readers: map[[2]string]map[string]int64{}, names: map[string]string{}}
}

func (a *acc) addVault(v string, vd *vaultData, start, end time.Time) {
	maps.Copy(a.names, vd.meta.Names)
	for d, ds := range vd.days {
		for h, c := range ds.Hours {
			if hourIn(h, start, end) {
				a.c.Add(c)
			}
		}
		for _, op := range ds.Admin {
			if op.Time.Before(start) || !op.Time.Before(end) {
				continue
			}
			a.changes = append(a.changes, change(v, op, vd.meta))
		}
		if !noonIn(d, start, end) {
			continue
		}
		a.changesExtra += ds.AdminCount - int64(len(ds.Admin))
		for f, m := range ds.Families {
			fc := a.fam[f]
			if fc == nil {
				fc = &FamilyCount{Family: f}
				a.fam[f] = fc
			}
			for o, n := range m {
				fc.Requests += n
				switch o {
				case audit.OutcomeSuccess:
					fc.Success += n
				case audit.OutcomeDenied:
					fc.Denied += n
				}
			}
		}
		a.hist.Add(&ds.Latency)
		for _, k := range ds.Callers {
			a.callers[k] = true
		}
		a.capped = a.capped || ds.CallersCapped
		for k, n := range ds.DeniedCallers {
			a.deniedCallers[a.key(v, "c", k)] += n
		}
		for k, n := range ds.DeniedIPs {
			a.deniedIPs[a.key(v, "i", k)] += n
		}
		for k, n := range ds.Secrets {
			a.secrets[[2]string{v, k}] += n
		}
		for s, m := range ds.Readers {
			rm := a.readers[[2]string{v, s}]
			if rm == nil {
				rm = map[string]int64{}
				a.readers[[2]string{v, s}] = rm
			}
			for k, n := range m {
				rm[k] += n
			}
		}
	}
	for k, s := range vd.meta.Callers {
		if s.First >= start.Unix() && s.First < end.Unix() {
			a.newIDs = append(a.newIDs, Identity{Vault: v, Key: k, Name: vd.meta.Names[k], First: time.Unix(s.First, 0).In(start.Location())})
		}
	}
	if f := vd.meta.First; !f.IsZero() && !f.Before(start) && f.Before(end) {
		a.watchedSince = f.In(start.Location())
	}
}

// key keys a top list entry: by vault, or overall by value alone,
// remembering the vaults.
func (a *acc) key(vault, kind, k string) [2]string {
	if !a.overall {
		return [2]string{vault, k}
	}
	wk := [2]string{kind, k}
	if !slices.Contains(a.where[wk], vault) {
		a.where[wk] = append(a.where[wk], vault)
	}
	return [2]string{"", k}
}

func summarize(data map[string]*vaultData, vaults []string, start, end time.Time, fs []Finding) (Summary, []Summary) {
	all := newAcc()
	all.overall, all.where = true, map[[2]string][]string{}
	var per []Summary
	for _, v := range vaults {
		a := newAcc()
		a.addVault(v, data[v], start, end)
		all.addVault(v, data[v], start, end)
		s := a.summary(v, start.Location())
		for _, f := range fs {
			if f.Vault == v {
				s.addFinding(f)
			}
		}
		per = append(per, s)
	}
	o := all.summary("", start.Location())
	o.WatchedSince = time.Time{}
	for _, f := range fs {
		o.addFinding(f)
	}
	return o, per
}

func (s *Summary) addFinding(f Finding) {
	s.FindingsCount++
	if f.Severity >= 0 && int(f.Severity) < len(s.FindingsBySeverity) {
		s.FindingsBySeverity[f.Severity]++
	}
}

func (a *acc) summary(vault string, loc *time.Location) Summary {
	s := Summary{Vault: vault, Requests: a.c.Requests, Success: a.c.Success, Denied: a.c.Denied, Challenges: a.c.Challenges,
		DistinctCallers: len(a.callers), CallersAtLeast: a.capped, WatchedSince: a.watchedSince}
	if n := a.c.Requests - a.c.Challenges; n > 0 {
		s.SuccessRatio = float64(a.c.Success) / float64(n)
	}
	if a.c.LatencyN > 0 {
		s.AvgLatencyMs = float64(a.c.LatencySum) / float64(a.c.LatencyN)
	}
	s.P95LatencyMs = a.hist.Quantile(0.95)
	for _, f := range a.fam {
		s.Families = append(s.Families, *f)
	}
	slices.SortFunc(s.Families, func(x, y FamilyCount) int {
		return cmp.Or(cmp.Compare(y.Requests, x.Requests), cmp.Compare(x.Family, y.Family))
	})
	s.DeniedCallers = top(a.deniedCallers, TopN, a.names)
	s.DeniedIPs = top(a.deniedIPs, TopN, nil)
	if a.overall {
		for i := range s.DeniedCallers {
			s.DeniedCallers[i].Vaults = slices.Sorted(slices.Values(a.where[[2]string{"c", s.DeniedCallers[i].Key}]))
		}
		for i := range s.DeniedIPs {
			s.DeniedIPs[i].Vaults = slices.Sorted(slices.Values(a.where[[2]string{"i", s.DeniedIPs[i].Key}]))
		}
	}
	for _, n := range a.secrets {
		s.SecretReads += n
	}
	for _, t := range top(a.secrets, TopN, nil) {
		st := SecretTop{Vault: t.Vault, Name: t.Key, Reads: t.Count}
		rm := map[[2]string]int64{}
		for k, n := range a.readers[[2]string{t.Vault, t.Key}] {
			rm[[2]string{"", k}] = n
		}
		st.Readers = top(rm, TopReaders, a.names)
		s.Secrets = append(s.Secrets, st)
	}
	slices.SortFunc(a.changes, func(x, y Change) int {
		return cmp.Or(x.Time.Compare(y.Time), cmp.Compare(x.Vault, y.Vault), cmp.Compare(x.Operation, y.Operation))
	})
	s.ChangesCount = int64(len(a.changes)) + a.changesExtra
	for i := range a.changes {
		a.changes[i].Time = a.changes[i].Time.In(loc)
	}
	s.Changes = a.changes[:min(len(a.changes), MaxListed)]
	slices.SortFunc(a.newIDs, func(x, y Identity) int {
		return cmp.Or(x.First.Compare(y.First), cmp.Compare(x.Vault, y.Vault), cmp.Compare(x.Key, y.Key))
	})
	s.NewIdentitiesCount = len(a.newIDs)
	s.NewIdentities = a.newIDs[:min(len(a.newIDs), MaxListed)]
	return s
}

// top returns the n largest entries, largest first, ties by vault and key.
func top(m map[[2]string]int64, n int, names map[string]string) []Top {
	out := make([]Top, 0, len(m))
	for k, c := range m {
		t := Top{Vault: k[0], Key: k[1], Count: c}
		if names != nil {
			t.Name = names[k[1]]
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y Top) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Vault, y.Vault), cmp.Compare(x.Key, y.Key))
	})
	return out[:min(n, len(out))]
}

// change describes an administrative operation, comparing a configuration
// it left with the one recorded before it.
func change(vault string, op stats.AdminOp, meta *stats.Meta) Change {
	c := Change{Vault: vault, Time: op.Time, Operation: op.Operation, Outcome: op.Outcome, Caller: op.Caller,
		CallerName: op.CallerName, IP: op.IP, Config: op.Config, What: "administrative"}
	_, kind := audit.Classify(op.Operation)
	switch {
	case kind == audit.KindPolicy || strings.Contains(op.Operation, "AccessPolicy"):
		c.What = "permissions"
	case op.Config != nil || op.Operation == "VaultPut" || op.Operation == "VaultPatch":
		c.What = "configuration"
	}
	if op.Config == nil {
		return c
	}
	var prev *audit.VaultConfig
	for i := range meta.Configs {
		if meta.Configs[i].Time.Before(op.Time) {
			prev = &meta.Configs[i].Config
		}
	}
	if prev == nil {
		c.Details = []string{"left " + describe(op.Config)}
		return c
	}
	c.Details = diff(prev, op.Config)
	if len(c.Details) == 0 {
		c.Details = []string{"no change to the recorded settings"}
	}
	for _, d := range c.Details {
		if strings.HasPrefix(d, "access policies") || strings.HasPrefix(d, "RBAC") {
			c.What = "configuration, permissions"
		}
	}
	return c
}

func boolStr(b *bool) string {
	switch {
	case b == nil:
		return "unset"
	case *b:
		return "on"
	}
	return "off"
}

func intStr(i *int) string {
	if i == nil {
		return "unset"
	}
	return strconv.Itoa(*i)
}

func strOr(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}

// describe lists a configuration's settings.
func describe(c *audit.VaultConfig) string {
	return "network default action " + strOr(c.NetworkDefaultAction) +
		", public network access " + strOr(c.PublicNetworkAccess) +
		", RBAC " + boolStr(c.RBACAuthorization) +
		", purge protection " + boolStr(c.PurgeProtection) +
		", soft delete " + boolStr(c.SoftDelete) + " (" + intStr(c.SoftDeleteRetentionDays) + " days)" +
		", access policies " + intStr(c.AccessPolicies)
}

// diff lists the settings that differ between two configurations; a
// setting the new record does not state is not compared.
func diff(a, b *audit.VaultConfig) []string {
	var out []string
	str := func(name, x, y string) {
		if y != "" && x != y {
			out = append(out, name+" "+strOr(x)+" → "+y)
		}
	}
	bl := func(name string, x, y *bool) {
		if y != nil && (x == nil || *x != *y) {
			out = append(out, name+" "+boolStr(x)+" → "+boolStr(y))
		}
	}
	in := func(name string, x, y *int) {
		if y != nil && (x == nil || *x != *y) {
			out = append(out, name+" "+intStr(x)+" → "+intStr(y))
		}
	}
	str("network default action", a.NetworkDefaultAction, b.NetworkDefaultAction)
	str("public network access", a.PublicNetworkAccess, b.PublicNetworkAccess)
	bl("RBAC", a.RBACAuthorization, b.RBACAuthorization)
	bl("purge protection", a.PurgeProtection, b.PurgeProtection)
	bl("soft delete", a.SoftDelete, b.SoftDelete)
	in("soft-delete retention days", a.SoftDeleteRetentionDays, b.SoftDeleteRetentionDays)
	in("access policies", a.AccessPolicies, b.AccessPolicies)
	return out
}

// merge applies the settings a record states over what was known.
func merge(into *audit.VaultConfig, c *audit.VaultConfig) {
	if c.NetworkDefaultAction != "" {
		into.NetworkDefaultAction = c.NetworkDefaultAction
	}
	if c.PublicNetworkAccess != "" {
		into.PublicNetworkAccess = c.PublicNetworkAccess
	}
	if c.RBACAuthorization != nil {
		into.RBACAuthorization = c.RBACAuthorization
	}
	if c.PurgeProtection != nil {
		into.PurgeProtection = c.PurgeProtection
	}
	if c.SoftDelete != nil {
		into.SoftDelete = c.SoftDelete
	}
	if c.SoftDeleteRetentionDays != nil {
		into.SoftDeleteRetentionDays = c.SoftDeleteRetentionDays
	}
	if c.AccessPolicies != nil {
		into.AccessPolicies = c.AccessPolicies
	}
}

// compliance reads every vault's configuration as last recorded before end.
func compliance(data map[string]*vaultData, vaults []string, end time.Time) []Compliance {
	var out []Compliance
	for _, v := range vaults {
		c := Compliance{Vault: v}
		for _, r := range data[v].meta.Configs {
			if !r.Time.Before(end) {
				continue
			}
			c.Known = true
			c.AsOf, c.By = r.Time.In(end.Location()), r.Caller
			merge(&c.Config, &r.Config)
		}
		if c.Known {
			cfg := &c.Config
			if cfg.PurgeProtection == nil || !*cfg.PurgeProtection {
				c.Problems = append(c.Problems, "purge protection off")
			}
			if strings.EqualFold(cfg.PublicNetworkAccess, "Enabled") {
				p := "public network access enabled"
				if strings.EqualFold(cfg.NetworkDefaultAction, "Allow") {
					p += ", open to every network"
				}
				c.Problems = append(c.Problems, p)
			} else if strings.EqualFold(cfg.NetworkDefaultAction, "Allow") && !strings.EqualFold(cfg.PublicNetworkAccess, "Disabled") {
				c.Problems = append(c.Problems, "firewall allows every network")
			}
			if cfg.RBACAuthorization == nil || !*cfg.RBACAuthorization {
				c.Problems = append(c.Problems, "access policies instead of RBAC")
			}
		}
		out = append(out, c)
	}
	return out
}

// chartOf builds the volume chart: per local hour for a daily digest, per
// local day otherwise.
func chartOf(data map[string]*vaultData, vaults []string, p Period, start, end time.Time, zone *time.Location) Chart {
	ch := Chart{Unit: "day"}
	if p == Daily {
		ch.Unit = "hour"
		for t := start; t.Before(end); t = t.Add(time.Hour) {
			ch.Slots = append(ch.Slots, t.In(zone))
		}
	} else {
		for t := start; t.Before(end); t = t.AddDate(0, 0, 1) {
			ch.Slots = append(ch.Slots, t)
		}
	}
	bounds := make([]int64, len(ch.Slots)+1)
	for i, s := range ch.Slots {
		bounds[i] = s.Unix()
	}
	bounds[len(ch.Slots)] = end.Unix()
	for _, v := range vaults {
		cs := ChartSeries{Vault: v, Counts: make([]int64, len(ch.Slots))}
		for _, ds := range data[v].days {
			for h, c := range ds.Hours {
				if !hourIn(h, start, end) {
					continue
				}
				i, found := slices.BinarySearch(bounds, h*3600)
				if !found {
					i--
				}
				if i >= 0 && i < len(cs.Counts) {
					cs.Counts[i] += c.Requests
				}
			}
		}
		ch.Series = append(ch.Series, cs)
	}
	return ch
}

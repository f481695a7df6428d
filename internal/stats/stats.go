// Package stats keeps the statistics the digests are made of, on the
// ingest path: per vault and per UTC day, requests by family and outcome
// and by hour, latency (sum, count, a log-scale histogram), denied requests
// and who and where they came from, distinct callers, the secrets read and
// their readers, and every administrative operation with the configuration
// it left; per vault, when each identity was first and last seen and the
// last configurations recorded.
//
// It follows the detection engine's discipline: a batch is folded per
// entity first, then applied with one Store.Update over the entities it
// touches (never one per record), exactly once per input position (the
// entity's Applied marks), so a retried or redelivered batch counts once.
//
// State layout (Rule "_stats"):
//
//	{Group: vault, Block: unix day}   one day of one vault (see DayStats)
//	{Group: vault, Block: -1}         the vault's identities and configurations (see Meta)
//	{Group: "",    Block: -1}         the index of vaults (Seen: vault → first/last)
//
// Every string from a log record is stored as logged (cut to 256 bytes):
// whoever renders it must escape it.
package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/groupkey"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Rule is the state rule name of every statistics entity.
const Rule = "_stats"

// Bounds.
const (
	// MaxCallers is how many distinct callers a day keeps exactly; past it
	// the count is reported as "≥ MaxCallers".
	MaxCallers = 1000
	// MaxTally bounds each top list (denied callers, denied IPs, secrets
	// read, readers) per vault and day: past MaxTally·6/5 entries the
	// smallest are dropped down to MaxTally.
	MaxTally = 300
	// MaxAdmin bounds the administrative operations kept in detail per
	// vault and day; their count stays exact.
	MaxAdmin = 200
	// MaxSeen bounds the identities remembered per vault, with MetaBytes:
	// past either the least recently seen are forgotten first (with their
	// names); one seen again is new again (its first sighting moves).
	MaxSeen = 20000
	// MetaBytes bounds the encoded identities and names of a vault's meta
	// entity (about 11,000 identities keyed by object id; fewer with long
	// UPN keys or names).
	MetaBytes = 768 << 10
	// MaxConfigs is how many configuration records are kept per vault.
	MaxConfigs = 16
	// MaxVaults bounds the vaults the index lists, with IndexBytes: past
	// either the vault seen longest ago is left out (of the digests too)
	// until it is seen again.
	MaxVaults = 20000
	// IndexBytes bounds the index's encoded vault names.
	IndexBytes = 768 << 10
	// maxLen cuts every stored value from a log record: at most maxLen
	// bytes, and at most maxLen+2 encoded as a JSON string (characters JSON
	// escapes count up to six). Key Vault object names are at most 127
	// characters, object ids 36, IP addresses 45.
	maxLen = 128
	// lastSlack: a caller's or vault's last sighting is only moved forward
	// by at least this much, so a known caller does not rewrite state with
	// every batch.
	lastSlack = 3600
)

// Unknown names the vault of records that named none.
const Unknown = "(unknown)"

// Sep separates the parts of composite values (readers, names, records).
const Sep = "\x1f"

// Hourly counters, stored in Entity.Counts under hour*8+metric.
const (
	mRequests = iota
	mSuccess
	mDenied
	mChallenges
	mLatencySum
	mLatencyN
	metrics = 8
)

// Tally prefixes.
const (
	pFamily       = "f|" // f|<family>|<outcome>
	pAdminCount   = "n|admin"
	pDeniedCaller = "dc|"
	pDeniedIP     = "di|"
	pSecret       = "sr|"
	pReader       = "rd|" // rd|<secret>\x1f<caller key>, joined by groupkey
)

var boundedPrefixes = [...]string{pDeniedCaller, pDeniedIP, pSecret, pReader}

// Values slots.
const (
	vCallers = 0 // day: distinct identities, sorted
	vAdmin   = 1 // day: administrative operations (encoded records), sorted
	vConfigs = 0 // meta: configuration records, sorted by time
	vNames   = 1 // meta: "key\x1fdisplay name", sorted
)

// DayKey is the entity of one vault's UTC day.
func DayKey(vault string, day int64) state.Key {
	return state.Key{Rule: Rule, Group: vault, Block: day}
}

// MetaKey is the entity of a vault's identities and configurations.
func MetaKey(vault string) state.Key {
	return state.Key{Rule: Rule, Group: vault, Block: state.BlockMeta}
}

// IndexKey is the entity listing every vault seen.
var IndexKey = state.Key{Rule: Rule, Group: "", Block: state.BlockMeta}

// Day returns the UTC day index of t.
func Day(t time.Time) int64 { return floorDiv(t.Unix(), 86400) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

var (
	familyIndex  = map[audit.Family]int{}
	outcomeIndex = map[audit.Outcome]int{}
	familyKeys   [][]string // [family][outcome] → tally key
)

func init() {
	for i, f := range audit.Families {
		familyIndex[f] = i
	}
	for i, o := range audit.Outcomes {
		outcomeIndex[o] = i
	}
	familyKeys = make([][]string, len(audit.Families))
	for i, f := range audit.Families {
		familyKeys[i] = make([]string, len(audit.Outcomes))
		for j, o := range audit.Outcomes {
			familyKeys[i][j] = pFamily + string(f) + "|" + string(o)
		}
	}
}

func famIdx(f audit.Family) int {
	if i, ok := familyIndex[f]; ok {
		return i
	}
	return familyIndex[audit.FamilyOther]
}

func outIdx(o audit.Outcome) int {
	if i, ok := outcomeIndex[o]; ok {
		return i
	}
	return outcomeIndex[audit.OutcomeUnknown]
}

// Anonymous reports whether an event names no identity (the caller key is
// the IP address, or nothing).
func Anonymous(e *audit.Event) bool { return e.Caller.KeyFrom == "ip" || e.Caller.KeyFrom == "" }

// Challenge reports whether an event is the SDKs' anonymous first request,
// answered 401 by design: counted apart, never as denied.
func Challenge(e *audit.Event) bool {
	return e.Outcome == audit.OutcomeDenied && e.HTTPStatus != 403 && Anonymous(e)
}

// Admin reports whether an event is an administrative operation: any vault
// operation but reads and lists (VaultPut, VaultPatch, VaultDelete, access
// policy changes, ...).
func Admin(e *audit.Event) bool {
	return e.Family == audit.FamilyVault && e.Kind != audit.KindRead && e.Kind != audit.KindList
}

// SecretRead reports whether an event is a successful read of a named secret.
func SecretRead(e *audit.Event) bool {
	return e.Family == audit.FamilySecret && e.Kind == audit.KindRead && e.Outcome == audit.OutcomeSuccess &&
		e.ObjectName != ""
}

// Counted reports whether an event counts as a request: every audit
// record but Key Vault's Event Grid notifications, which nobody requested.
func Counted(e *audit.Event) bool { return e.Family != audit.FamilyNotification }

// clip cuts a value from a log record to maxLen bytes (on a rune boundary)
// and replaces Sep, so that composite values always split back correctly.
func clip(s string) string {
	if len(s) > maxLen {
		n := maxLen
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	if strings.Contains(s, Sep) {
		s = strings.ReplaceAll(s, Sep, "\uFFFD")
	}
	for state.JSONStringLen(s) > maxLen+2 { // escapes: cut further
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// ---------------------------------------------------------------------------
// Collector.

// Collector is the statistics stage. It is safe for concurrent use.
type Collector struct {
	store state.Store

	mu     sync.Mutex
	vaults map[string]*vaultCache // what this process knows the meta entities hold
	index  map[string]state.Span  // what it knows the index holds
	cached int
}

// vaultCache remembers what a vault's meta entity is known to hold, so a
// batch of known callers does not even read it.
type vaultCache struct {
	first   int64
	callers map[string]state.Span
	named   map[string]bool
}

// maxCached bounds the process cache (callers over all vaults).
const maxCached = 200_000

// New returns a collector writing to store.
func New(store state.Store) *Collector {
	return &Collector{store: store, vaults: map[string]*vaultCache{}, index: map[string]state.Span{}}
}

// Stage wraps a pipeline stage: it records the batch's statistics, then
// hands the events on. An error (the store failed) fails the batch, which
// is retried; the retry counts once.
func (c *Collector) Stage(next pipeline.Stage) pipeline.Stage {
	return pipeline.StageFunc(func(ctx context.Context, events []audit.Event) (pipeline.Result, error) {
		// A store that can defers the batch's statistics to the batch's
		// next write of its stream — the detection state's, one Table
		// transaction for both — and writes them itself only when the
		// next stage wrote nothing. When the next stage fails, the batch
		// fails, and its retry collects again.
		f, deferring := c.store.(state.Flusher)
		if s := audit.BatchStream(events); deferring && s != "" && state.StreamOf(ctx) == "" {
			ctx = state.WithStream(ctx, s)
		}
		cctx := ctx
		if deferring {
			cctx = state.Deferred(ctx)
		}
		remember, err := c.collect(cctx, events)
		if err != nil {
			return pipeline.Result{}, err
		}
		res := pipeline.Result{}
		if next != nil {
			if res, err = next.Consume(ctx, events); err != nil {
				return res, err
			}
		}
		if deferring {
			if err := f.Flush(ctx); err != nil {
				return pipeline.Result{}, fmt.Errorf("stats: update state: %w", err)
			}
		}
		remember()
		return res, nil
	})
}

// dayAcc is what a batch contributes to one vault's day.
type dayAcc struct {
	vault string
	day   int64
	idx   []int32             // events, in batch order
	spans map[string][2]int64 // stream → lowest and highest position
	agg   *agg                // every event's contribution
}

type agg struct {
	hours [24][metrics]int64
	fam   [][]int64 // [family][outcome]
	hist  [NBuckets]int64

	callers       map[string]*callerAcc // identities
	deniedCallers map[string]int64
	deniedIPs     map[string]int64
	secrets       map[string]int64
	readers       map[[2]string]int64
	admin         []string // encoded records
	adminN        int64
	configs       []string // meta: encoded configuration records
	first, lastT  int64    // earliest and latest event time
}

type callerAcc struct {
	first, last int64
	name        string // display name when it differs from the key
}

func newAgg() *agg {
	a := &agg{callers: map[string]*callerAcc{}}
	a.fam = make([][]int64, len(audit.Families))
	for i := range a.fam {
		a.fam[i] = make([]int64, len(audit.Outcomes))
	}
	return a
}

// Collect records the statistics of one batch: one Store.Update over the
// entities it touches.
func (c *Collector) Collect(ctx context.Context, events []audit.Event) error {
	remember, err := c.collect(ctx, events)
	if err == nil {
		remember()
	}
	return err
}

// collect is Collect; what the meta entities and the index now hold is
// remembered (metaNeeded) only when remember is called, once the update
// is stored: a deferred update (state.Deferred) whose write then failed
// left them as they were, and the batch's retry must write them again.
func (c *Collector) collect(ctx context.Context, events []audit.Event) (remember func(), err error) {
	if state.StreamOf(ctx) == "" {
		if s := audit.BatchStream(events); s != "" {
			ctx = state.WithStream(ctx, s)
		}
	}
	// Nothing evaluates statistics at once: other instances' changes are
	// read when a digest or the index needs them.
	ctx = state.WriteOnly(ctx)
	type dk struct {
		vault string
		day   int64
	}
	accs := map[dk]*dayAcc{}
	var order []*dayAcc
	var last *dayAcc
	var pc audit.Streams
	for i := range events {
		e := &events[i]
		if !Counted(e) {
			continue
		}
		t := e.Time.Unix()
		vault := e.Vault
		if vault == "" {
			vault = Unknown
		}
		day := floorDiv(t, 86400)
		a := last
		if a == nil || a.day != day || a.vault != vault {
			a = accs[dk{vault, day}]
			if a == nil {
				a = &dayAcc{vault: vault, day: day, spans: map[string][2]int64{}, agg: newAgg()}
				accs[dk{vault, day}] = a
				order = append(order, a)
			}
			last = a
		}
		a.idx = append(a.idx, int32(i))
		stream, pos := pc.Position(&e.Source)
		if sp, ok := a.spans[stream]; !ok {
			a.spans[stream] = [2]int64{pos, pos}
		} else if pos < sp[0] || pos > sp[1] {
			a.spans[stream] = [2]int64{min(sp[0], pos), max(sp[1], pos)}
		}
		a.agg.add(e, t, day)
	}
	if len(order) == 0 {
		return func() {}, nil
	}

	// The entities: every day touched; the meta entity of a vault and the
	// index only when this batch may tell them something new.
	byKey := make(map[state.Key]*dayAcc, len(order))
	metas := map[string]*agg{}
	var metaOrder []string
	keys := make([]state.Key, 0, len(order)+4)
	for _, a := range order {
		k := DayKey(a.vault, a.day)
		byKey[k] = a
		keys = append(keys, k)
		m := metas[a.vault]
		if m == nil {
			m = &agg{callers: map[string]*callerAcc{}}
			metas[a.vault] = m
			metaOrder = append(metaOrder, a.vault)
		}
		m.merge(a.agg)
	}
	c.mu.Lock()
	var metaKeys []string
	for _, v := range metaOrder {
		if c.metaNeeded(v, metas[v]) {
			metaKeys = append(metaKeys, v)
			keys = append(keys, MetaKey(v))
		}
	}
	indexNeeded := false
	for _, v := range metaOrder {
		m := metas[v]
		if s, ok := c.index[v]; !ok || m.first < s.First || m.last() > s.Last+lastSlack {
			indexNeeded = true
			break
		}
	}
	c.mu.Unlock()
	if indexNeeded {
		keys = append(keys, IndexKey)
	}

	apply := func(k state.Key, e *state.Entity) bool {
		switch {
		case k == IndexKey:
			return applyIndex(e, metaOrder, metas)
		case k.Block == state.BlockMeta:
			return applyMeta(e, metas[k.Group])
		}
		a := byKey[k]
		if a == nil {
			return false
		}
		return applyDay(e, a, events)
	}
	got, err := c.store.Update(ctx, keys, apply)
	if err != nil {
		return nil, fmt.Errorf("stats: update state: %w", err)
	}
	return func() { c.remember(got, metaKeys, metaOrder, metas) }, nil
}

// remember records what the meta entities and the index hold after an
// update (got), for metaNeeded.
func (c *Collector) remember(got map[state.Key]*state.Entity, metaKeys, metaOrder []string, metas map[string]*agg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached > maxCached {
		c.vaults, c.index, c.cached = map[string]*vaultCache{}, map[string]state.Span{}, 0
	}
	for _, v := range metaKeys {
		e := got[MetaKey(v)]
		if e == nil {
			continue
		}
		vc := c.vaults[v]
		if vc == nil {
			vc = &vaultCache{callers: map[string]state.Span{}, named: map[string]bool{}}
			c.vaults[v] = vc
		}
		vc.first = e.First
		for key, ca := range metas[v].callers {
			s, ok := e.Seen[clip(key)]
			if !ok { // forgotten at the bound: do not insist
				s = state.Span{First: ca.first, Last: ca.last}
			}
			if _, had := vc.callers[key]; !had {
				c.cached++
			}
			vc.callers[key] = s
			if ca.name != "" {
				vc.named[key] = true
			}
		}
	}
	if e := got[IndexKey]; e != nil {
		for _, v := range metaOrder {
			if s, ok := e.Seen[v]; ok {
				c.index[v] = s
			} else { // left out at the bound
				delete(c.index, v)
			}
		}
	}
}

// metaNeeded reports whether a vault's meta entity may learn something
// from the batch. Called with c.mu held.
func (c *Collector) metaNeeded(vault string, m *agg) bool {
	if len(m.configs) > 0 {
		return true
	}
	vc := c.vaults[vault]
	if vc == nil || vc.first == 0 || m.first < vc.first {
		return true
	}
	for key, ca := range m.callers {
		s, ok := vc.callers[key]
		if !ok || ca.first < s.First || ca.last > s.Last+lastSlack || (ca.name != "" && !vc.named[key]) {
			return true
		}
	}
	return false
}

func (a *agg) last() int64 { return max(a.lastT, a.first) }

// add folds one event into a day's contribution.
func (a *agg) add(e *audit.Event, t, day int64) {
	h := (t - day*86400) / 3600
	hr := &a.hours[h]
	hr[mRequests]++
	switch {
	case e.Outcome == audit.OutcomeSuccess:
		hr[mSuccess]++
	case Challenge(e):
		hr[mChallenges]++
	case e.Outcome == audit.OutcomeDenied:
		hr[mDenied]++
		if a.deniedCallers == nil {
			a.deniedCallers, a.deniedIPs = map[string]int64{}, map[string]int64{}
		}
		a.deniedCallers[clip(e.Caller.Key)]++
		if e.CallerIP != "" {
			a.deniedIPs[clip(e.CallerIP)]++
		}
	}
	d := max(e.DurationMs, 0)
	hr[mLatencySum] += d
	hr[mLatencyN]++
	a.hist[Bucket(d)]++
	a.fam[famIdx(e.Family)][outIdx(e.Outcome)]++
	if a.first == 0 || t < a.first {
		a.first = t
	}
	a.lastT = max(a.lastT, t)
	if !Anonymous(e) {
		key := e.Caller.Key
		ca := a.callers[key]
		if ca == nil {
			ca = &callerAcc{first: t, last: t}
			if n := e.Caller.Display(); n != key {
				ca.name = clip(n)
			}
			a.callers[key] = ca
		} else {
			ca.first, ca.last = min(ca.first, t), max(ca.last, t)
			if ca.name == "" && e.Caller.UPN != "" && e.Caller.UPN != key {
				ca.name = clip(e.Caller.UPN)
			}
		}
	}
	if SecretRead(e) {
		if a.secrets == nil {
			a.secrets, a.readers = map[string]int64{}, map[[2]string]int64{}
		}
		n := clip(e.ObjectName)
		a.secrets[n]++
		a.readers[[2]string{n, clip(e.Caller.Key)}]++
	}
	if Admin(e) {
		a.adminN++
		rec, cfg := encodeAdmin(e, t)
		a.admin = append(a.admin, rec)
		if cfg != "" {
			a.configs = append(a.configs, cfg)
		}
	}
}

// merge adds a day's meta-relevant parts (callers, configurations, first
// time) into a vault's.
func (a *agg) merge(o *agg) {
	if a.first == 0 || (o.first != 0 && o.first < a.first) {
		a.first = o.first
	}
	a.lastT = max(a.lastT, o.lastT)
	for k, c := range o.callers {
		m := a.callers[k]
		if m == nil {
			cc := *c
			a.callers[k] = &cc
			continue
		}
		m.first, m.last = min(m.first, c.first), max(m.last, c.last)
		if m.name == "" {
			m.name = c.name
		}
	}
	a.configs = append(a.configs, o.configs...)
}

// ---------------------------------------------------------------------------
// Applying.

// applyDay applies a day's contributions not yet absorbed.
func applyDay(e *state.Entity, a *dayAcc, events []audit.Event) bool {
	// Positions as they were before this batch: records of one event share
	// a position, so marks are raised only at the end.
	none, all := true, true
	for s, sp := range a.spans {
		p, ok := e.Applied[s]
		if s == "" || !ok || p < sp[0] {
			all = false
			continue
		}
		none = false
		if p < sp[1] {
			all = false
		}
	}
	if all {
		return false
	}
	ag := a.agg
	if !none {
		// Part of the batch was absorbed before (a batch cut differently):
		// fold again what was not.
		orig := e.Applied
		ag = newAgg()
		var pc audit.Streams
		for _, i := range a.idx {
			ev := &events[i]
			s, pos := pc.Position(&ev.Source)
			if p, ok := orig[s]; s != "" && ok && pos <= p {
				continue
			}
			ag.add(ev, ev.Time.Unix(), a.day)
		}
	}
	for s, sp := range a.spans {
		e.MarkApplied(s, sp[1])
	}
	ag.applyTo(e, a.day)
	return true
}

func (ag *agg) applyTo(e *state.Entity, day int64) {
	if e.Counts == nil {
		e.Counts = map[int64]int64{}
	}
	for h := range ag.hours {
		base := (day*24 + int64(h)) * metrics
		for m, v := range ag.hours[h] {
			if v != 0 {
				e.Counts[base+int64(m)] += v
			}
		}
	}
	if e.Counts2 == nil {
		e.Counts2 = map[int64]int64{}
	}
	for b, v := range ag.hist {
		if v != 0 {
			e.Counts2[int64(b)] += v
		}
	}
	if e.Tally == nil {
		e.Tally = map[string]int64{}
	}
	for f, row := range ag.fam {
		for o, v := range row {
			if v != 0 {
				e.Tally[familyKeys[f][o]] += v
			}
		}
	}
	added := false
	tally := func(k string, v int64) {
		if _, ok := e.Tally[k]; !ok {
			added = true
		}
		e.Tally[k] += v
	}
	for k, v := range ag.deniedCallers {
		tally(pDeniedCaller+k, v)
	}
	for k, v := range ag.deniedIPs {
		tally(pDeniedIP+k, v)
	}
	for k, v := range ag.secrets {
		tally(pSecret+k, v)
	}
	for k, v := range ag.readers {
		tally(pReader+groupkey.Join(k[0], k[1]), v)
	}
	if added && len(e.Tally) > MaxTally {
		boundTally(e.Tally)
	}
	if ag.adminN > 0 {
		e.Tally[pAdminCount] += ag.adminN
		for _, r := range ag.admin {
			insertSorted(e, vAdmin, r, MaxAdmin)
		}
	}
	for k := range ag.callers {
		insertSorted(e, vCallers, clip(k), MaxCallers)
	}
}

// insertSorted adds v to the sorted set Values[slot] unless present or full.
func insertSorted(e *state.Entity, slot int64, v string, capN int) bool {
	if e.Values == nil {
		e.Values = map[int64][]string{}
	}
	vs := e.Values[slot]
	i, found := slices.BinarySearch(vs, v)
	if found || len(vs) >= capN {
		return false
	}
	e.Values[slot] = slices.Insert(vs, i, v)
	return true
}

// boundTally drops the smallest entries of every top list over its bound
// (ties: the greatest key first), keeping MaxTally. Entries at or below 0
// (a drop by another instance folded before the additions it undid:
// state.Delta) are not the list's: they are neither counted nor dropped.
func boundTally(t map[string]int64) {
	var n [len(boundedPrefixes)]int
	for k, v := range t {
		if v <= 0 {
			continue
		}
		for i, p := range boundedPrefixes {
			if strings.HasPrefix(k, p) {
				n[i]++
				break
			}
		}
	}
	for i, p := range boundedPrefixes {
		if n[i] <= MaxTally*6/5 {
			continue
		}
		type kv struct {
			k string
			v int64
		}
		all := make([]kv, 0, n[i])
		for k, v := range t {
			if v > 0 && strings.HasPrefix(k, p) {
				all = append(all, kv{k, v})
			}
		}
		slices.SortFunc(all, func(a, b kv) int {
			if a.v != b.v {
				if a.v > b.v {
					return -1
				}
				return 1
			}
			return strings.Compare(a.k, b.k)
		})
		for _, x := range all[MaxTally:] {
			delete(t, x.k)
		}
	}
}

// applyMeta records a vault's identities (first and last seen), their
// names, its first record and its configuration records. Everything here
// is a minimum, a maximum or a set: applying it twice changes nothing, so
// no positions are needed and nothing is written unless something is new.
func applyMeta(e *state.Entity, m *agg) bool {
	if m == nil {
		return false
	}
	changed := false
	if m.first != 0 && (e.First == 0 || m.first < e.First) {
		e.First, changed = m.first, true
	}
	if e.Seen == nil {
		e.Seen = map[string]state.Span{}
	}
	for key, c := range m.callers {
		key = clip(key)
		s, ok := e.Seen[key]
		switch {
		case !ok:
			e.Seen[key] = state.Span{First: c.first, Last: c.last}
			changed = true
		case c.first < s.First || c.last > s.Last+lastSlack:
			s.First, s.Last = min(s.First, c.first), max(s.Last, c.last)
			e.Seen[key] = s
			changed = true
		}
		if c.name != "" && setName(e, key, c.name) {
			changed = true
		}
	}
	for _, r := range m.configs {
		if insertSorted(e, vConfigs, r, 1<<30) {
			changed = true
		}
	}
	if cs := e.Values[vConfigs]; len(cs) > MaxConfigs {
		e.Values[vConfigs] = slices.Clone(cs[len(cs)-MaxConfigs:])
	}
	if changed {
		boundMeta(e)
	}
	return changed
}

// setName records a caller's display name unless one is recorded.
func setName(e *state.Entity, key, name string) bool {
	if e.Values == nil {
		e.Values = map[int64][]string{}
	}
	vs := e.Values[vNames]
	p := key + Sep
	i, _ := slices.BinarySearch(vs, p)
	if i < len(vs) && strings.HasPrefix(vs[i], p) {
		return false
	}
	e.Values[vNames] = slices.Insert(vs, i, p+name)
	return true
}

// applyIndex records the vaults of the batch and their first and last
// records.
func applyIndex(e *state.Entity, vaults []string, metas map[string]*agg) bool {
	if e.Seen == nil {
		e.Seen = map[string]state.Span{}
	}
	changed := false
	for _, v := range vaults {
		m := metas[v]
		first, last := m.first, m.last()
		s, ok := e.Seen[v]
		switch {
		case !ok:
			e.Seen[v] = state.Span{First: first, Last: last}
			changed = true
		case first < s.First || last > s.Last+lastSlack:
			e.Seen[v] = state.Span{First: min(s.First, first), Last: max(s.Last, last)}
			changed = true
		}
	}
	if changed {
		state.BoundSeen(e.Seen, MaxVaults, IndexBytes)
	}
	return changed
}

// ---------------------------------------------------------------------------
// Administrative records.

// AdminOp is one administrative operation on a vault.
type AdminOp struct {
	Time       time.Time
	Operation  string
	Outcome    audit.Outcome
	Status     int
	Caller     string // caller key
	CallerName string // display name, when it differs
	IP         string
	// Config is what a VaultPut/VaultPatch left; nil otherwise.
	Config *audit.VaultConfig
}

// ConfigRecord is a vault configuration as a VaultPut/VaultPatch left it.
type ConfigRecord struct {
	Time      time.Time
	Operation string
	Caller    string // display name, else key
	Config    audit.VaultConfig
}

func encodeAdmin(e *audit.Event, t int64) (rec, cfg string) {
	var cj []byte
	if e.Config != nil && e.Outcome == audit.OutcomeSuccess {
		c := *e.Config
		c.NetworkDefaultAction, c.PublicNetworkAccess = clip(c.NetworkDefaultAction), clip(c.PublicNetworkAccess)
		cj, _ = json.Marshal(&c)
	}
	name := e.Caller.Display()
	if name == e.Caller.Key {
		name = ""
	}
	ts := fmt.Sprintf("%012d", t)
	rec = strings.Join([]string{ts, clip(e.Operation), string(e.Outcome), strconv.Itoa(e.HTTPStatus),
		clip(e.Caller.Key), clip(name), clip(e.CallerIP), string(cj)}, Sep)
	if cj != nil {
		who := clip(e.Caller.Display())
		cfg = strings.Join([]string{ts, clip(e.Operation), who, string(cj)}, Sep)
	}
	return rec, cfg
}

func decodeAdmin(s string) (AdminOp, bool) {
	p := strings.Split(s, Sep)
	if len(p) != 8 {
		return AdminOp{}, false
	}
	t, err := strconv.ParseInt(p[0], 10, 64)
	if err != nil {
		return AdminOp{}, false
	}
	st, _ := strconv.Atoi(p[3])
	op := AdminOp{Time: time.Unix(t, 0).UTC(), Operation: p[1], Outcome: audit.Outcome(p[2]), Status: st,
		Caller: p[4], CallerName: p[5], IP: p[6]}
	if p[7] != "" {
		var c audit.VaultConfig
		if json.Unmarshal([]byte(p[7]), &c) == nil {
			op.Config = &c
		}
	}
	return op, true
}

func decodeConfig(s string) (ConfigRecord, bool) {
	p := strings.Split(s, Sep)
	if len(p) != 4 {
		return ConfigRecord{}, false
	}
	t, err := strconv.ParseInt(p[0], 10, 64)
	if err != nil {
		return ConfigRecord{}, false
	}
	r := ConfigRecord{Time: time.Unix(t, 0).UTC(), Operation: p[1], Caller: p[2]}
	if json.Unmarshal([]byte(p[3]), &r.Config) != nil {
		return ConfigRecord{}, false
	}
	return r, true
}

// ---------------------------------------------------------------------------
// Latency histogram.

// NBuckets is the number of latency buckets: 0–15 ms one per millisecond,
// then eight per doubling (each at most 12.5% wide) up to 2^32 ms.
const NBuckets = 16 + 28*8

// Bucket returns the histogram bucket of a duration in milliseconds.
func Bucket(ms int64) int {
	if ms < 16 {
		return int(max(ms, 0))
	}
	e := bits.Len64(uint64(ms)) - 1 // >= 4
	if e > 31 {
		return NBuckets - 1
	}
	m := int(ms>>(e-3)) & 7
	return 16 + (e-4)*8 + m
}

// BucketRange returns the durations [lo, hi) a bucket holds.
func BucketRange(b int) (lo, hi int64) {
	if b < 16 {
		return int64(b), int64(b) + 1
	}
	e := (b-16)/8 + 4
	m := int64((b - 16) % 8)
	return (8 + m) << (e - 3), (9 + m) << (e - 3)
}

// Histogram counts durations per bucket.
type Histogram [NBuckets]int64

// Add adds o to h.
func (h *Histogram) Add(o *Histogram) {
	for i, v := range o {
		h[i] += v
	}
}

// Count returns the number of durations counted.
func (h *Histogram) Count() int64 {
	var n int64
	for _, v := range h {
		n += v
	}
	return n
}

// Quantile estimates the q-quantile (0 < q <= 1) in milliseconds: exact
// below 16 ms, within its bucket's 12.5% above; 0 when empty.
func (h *Histogram) Quantile(q float64) float64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var cum float64
	for b, v := range h {
		if v == 0 {
			continue
		}
		if cum+float64(v) >= rank {
			lo, hi := BucketRange(b)
			if b < 16 {
				return float64(lo)
			}
			return float64(lo) + float64(hi-lo)*(rank-cum)/float64(v)
		}
		cum += float64(v)
	}
	lo, _ := BucketRange(NBuckets - 1)
	return float64(lo)
}

// ---------------------------------------------------------------------------
// Reading.

// Counters are the hourly figures.
type Counters struct {
	Requests   int64 // every record but notifications
	Success    int64 // 1xx–3xx
	Denied     int64 // 401/403, the anonymous challenges excepted
	Challenges int64 // the SDKs' anonymous 401 challenges
	LatencySum int64 // milliseconds
	LatencyN   int64
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.Requests += o.Requests
	c.Success += o.Success
	c.Denied += o.Denied
	c.Challenges += o.Challenges
	c.LatencySum += o.LatencySum
	c.LatencyN += o.LatencyN
}

// DayStats is one vault's UTC day, decoded.
type DayStats struct {
	// Hours holds the counters per unix hour index (unix seconds / 3600).
	Hours map[int64]Counters
	// Families counts requests by family and outcome.
	Families map[audit.Family]map[audit.Outcome]int64
	Latency  Histogram
	// Callers are the distinct identities (caller keys), sorted; when
	// CallersCapped the day had at least MaxCallers.
	Callers       []string
	CallersCapped bool
	// Top lists (bounded, see MaxTally).
	DeniedCallers map[string]int64
	DeniedIPs     map[string]int64
	Secrets       map[string]int64            // secret name → successful reads
	Readers       map[string]map[string]int64 // secret name → caller key → reads
	// Admin are the administrative operations (at most MaxAdmin, in time
	// order); AdminCount counts them all.
	Admin      []AdminOp
	AdminCount int64
}

// ReadDay decodes a day entity (nil gives an empty day).
func ReadDay(e *state.Entity) *DayStats {
	d := &DayStats{Hours: map[int64]Counters{}, Families: map[audit.Family]map[audit.Outcome]int64{},
		DeniedCallers: map[string]int64{}, DeniedIPs: map[string]int64{}, Secrets: map[string]int64{},
		Readers: map[string]map[string]int64{}}
	if e == nil {
		return d
	}
	for k, v := range e.Counts {
		h, m := floorDiv(k, metrics), k-floorDiv(k, metrics)*metrics
		c := d.Hours[h]
		switch m {
		case mRequests:
			c.Requests += v
		case mSuccess:
			c.Success += v
		case mDenied:
			c.Denied += v
		case mChallenges:
			c.Challenges += v
		case mLatencySum:
			c.LatencySum += v
		case mLatencyN:
			c.LatencyN += v
		}
		d.Hours[h] = c
	}
	for b, v := range e.Counts2 {
		if b >= 0 && b < NBuckets {
			d.Latency[b] += v
		}
	}
	for k, v := range e.Tally {
		if v <= 0 {
			continue // absent: state.Delta
		}
		switch {
		case strings.HasPrefix(k, pFamily):
			f, o, _ := strings.Cut(k[len(pFamily):], "|")
			m := d.Families[audit.Family(f)]
			if m == nil {
				m = map[audit.Outcome]int64{}
				d.Families[audit.Family(f)] = m
			}
			m[audit.Outcome(o)] += v
		case k == pAdminCount:
			d.AdminCount = v
		case strings.HasPrefix(k, pDeniedCaller):
			d.DeniedCallers[k[len(pDeniedCaller):]] += v
		case strings.HasPrefix(k, pDeniedIP):
			d.DeniedIPs[k[len(pDeniedIP):]] += v
		case strings.HasPrefix(k, pSecret):
			d.Secrets[k[len(pSecret):]] += v
		case strings.HasPrefix(k, pReader):
			sc := groupkey.Split(k[len(pReader):], 2)
			s, c := sc[0], sc[1]
			m := d.Readers[s]
			if m == nil {
				m = map[string]int64{}
				d.Readers[s] = m
			}
			m[c] += v
		}
	}
	d.Callers = e.Values[vCallers]
	d.CallersCapped = len(d.Callers) >= MaxCallers
	for _, r := range e.Values[vAdmin] {
		if op, ok := decodeAdmin(r); ok {
			d.Admin = append(d.Admin, op)
		}
	}
	return d
}

// Meta is a vault's identities and configurations, decoded.
type Meta struct {
	// First is the vault's earliest record seen (zero if none).
	First time.Time
	// Callers maps identity keys to their first and last sighting (unix
	// seconds; the last to within an hour).
	Callers map[string]state.Span
	// Names maps keys to display names (UPN, else name) where they differ.
	Names map[string]string
	// Configs are the last MaxConfigs configuration records, oldest first.
	Configs []ConfigRecord
}

// ReadMeta decodes a meta entity (nil gives an empty one).
func ReadMeta(e *state.Entity) *Meta {
	m := &Meta{Callers: map[string]state.Span{}, Names: map[string]string{}}
	if e == nil {
		return m
	}
	if e.First != 0 {
		m.First = time.Unix(e.First, 0).UTC()
	}
	for k, s := range e.Seen {
		m.Callers[k] = s
	}
	for _, n := range e.Values[vNames] {
		k, v, _ := strings.Cut(n, Sep)
		m.Names[k] = v
	}
	for _, r := range e.Values[vConfigs] {
		if c, ok := decodeConfig(r); ok {
			m.Configs = append(m.Configs, c)
		}
	}
	return m
}

// Vaults lists the vaults the index holds with their first and last
// records (unix seconds; the last to within an hour).
func Vaults(ctx context.Context, store state.Store) (map[string]state.Span, error) {
	got, err := store.Get(ctx, []state.Key{IndexKey})
	if err != nil {
		return nil, fmt.Errorf("stats: read index: %w", err)
	}
	out := map[string]state.Span{}
	if e := got[IndexKey]; e != nil {
		for v, s := range e.Seen {
			out[v] = s
		}
	}
	return out, nil
}

// Prune deletes the day entities of days before the one holding before
// (the digests need the last two whole months: keep at least 100 days).
func Prune(ctx context.Context, store state.Store, before time.Time) (int, error) {
	d := Day(before)
	n, err := store.Prune(ctx, func(k state.Key) bool { return k.Rule == Rule && k.Block >= 0 && k.Block < d })
	if err != nil {
		return n, fmt.Errorf("stats: prune: %w", err)
	}
	return n, nil
}

package delivery

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// ErrConflict is returned by an Outbox write whose version is stale:
// another attempt or instance changed the record first. Re-read and retry.
var ErrConflict = errors.New("outbox: changed by another writer")

// State is where an alert stands with one receiver.
type State string

// States.
const (
	Pending     State = "pending"     // to be sent (again) at Next
	Delivered   State = "delivered"   // the receiver accepted it
	Undelivered State = "undelivered" // given up: permanent failure or too old
	Muted       State = "muted"       // a silence or mute interval held it back
)

// Attempt is the delivery state of an alert for one receiver.
type Attempt struct {
	State     State     `json:"state"`
	Attempts  int       `json:"attempts,omitempty"`
	Next      time.Time `json:"next,omitzero"`
	Lease     time.Time `json:"lease,omitzero"` // someone is sending until then
	LeaseBy   string    `json:"leaseBy,omitempty"`
	LastError string    `json:"lastError,omitempty"`
	Done      time.Time `json:"done,omitzero"`
}

// Entry is an alert in the outbox with its delivery state per receiver.
type Entry struct {
	Alert     *alert.Alert        `json:"alert"`
	Receivers map[string]*Attempt `json:"receivers"`
	MutedBy   string              `json:"mutedBy,omitempty"`
	// InhibitedBy names the alert of another rule, fired on the same
	// evidence, that carries this one ("rule (alert ID)"): it is recorded,
	// and sent to no receiver.
	InhibitedBy string `json:"inhibitedBy,omitempty"`
	// Version is the store's concurrency token (an ETag); writes with a
	// stale one fail with ErrConflict.
	Version string `json:"-"`
}

// Pending reports whether some receiver still waits for the alert.
func (e *Entry) Pending() bool {
	for _, a := range e.Receivers {
		if a.State == Pending {
			return true
		}
	}
	return false
}

// Decision is what delivery decided about one finding: the alert that
// carries it, the cooldown that held it back, or that it was routine
// (finding.Routine: its group fires routinely, and it was not alerted).
type Decision struct {
	Alert      string `json:"alert,omitempty"`
	Suppressed bool   `json:"suppressed,omitempty"`
	Routine    bool   `json:"routine,omitempty"`
	// At is when it was decided (the dispatcher's clock); Prune goes by it.
	At time.Time `json:"at,omitzero"`
	// Facts fingerprints the finding as it was decided: handed on again
	// with the same facts, it tells nothing new, whatever the cooldown of
	// its key says now.
	Facts string `json:"facts,omitempty"`
	// Of, on a routine decision, says what was not alerted (routine.go).
	Of *Brief `json:"of,omitempty"`
}

// Cooldown is the state of one cooldown key (rule and group).
type Cooldown struct {
	Last       time.Time `json:"last"` // event time of the last alert sent for the key
	Repeat     int       `json:"repeat"`
	Suppressed int       `json:"suppressed"` // held back since the last alert
	// LastFinding is the finding that made the last alert: an attempt that
	// stopped after writing the cooldown recognises its own decision.
	LastFinding string `json:"lastFinding,omitempty"`
	// Told is what the user was told of the key's incident (incident.go).
	Told *Told `json:"told,omitempty"`
	// Source, under an inhibition's key (inhibit.go), is the last alert of
	// a source rule with the key's equal values.
	Source *SourceMark `json:"source,omitempty"`
	// Held, under an inhibition's key, are alerts of its target rules
	// waiting for a source to cover them (Options.InhibitWait).
	Held    []HeldTarget `json:"held,omitempty"`
	Version string       `json:"-"`
}

// Outbox is where alerts wait for their receivers, and where the decisions
// that make delivery idempotent are kept. The Table Storage store and
// Memory implement it.
type Outbox interface {
	// Decision returns what was decided about a finding, if anything.
	Decision(ctx context.Context, findingID string) (Decision, bool, error)
	// Decide records decisions for findings, each only if none exists.
	Decide(ctx context.Context, ds map[string]Decision) error
	// Cooldown reads a key's cooldown (zero if none).
	Cooldown(ctx context.Context, key string) (Cooldown, error)
	// SetCooldown writes it, failing with ErrConflict if c.Version is stale.
	SetCooldown(ctx context.Context, key string, c Cooldown) error
	// Add inserts an entry unless one with the same alert ID exists.
	Add(ctx context.Context, e *Entry) (added bool, err error)
	// Get returns an entry by alert ID.
	Get(ctx context.Context, id string) (*Entry, error)
	// Put writes an entry back, failing with ErrConflict if e.Version is stale.
	Put(ctx context.Context, e *Entry) error
	// Due lists entries with a pending receiver due at or before now.
	Due(ctx context.Context, now time.Time, limit int) ([]*Entry, error)
	// Recent lists the newest entries, newest first.
	Recent(ctx context.Context, limit int) ([]*Entry, error)
	Batch
	// Prune deletes what delivery no longer needs from before an instant:
	// entries no receiver waits for (delivered, given up, muted, routed
	// nowhere) whose last change was before it, decisions made before it,
	// and cooldowns whose last alert was before it. An entry a receiver
	// still waits for is kept, however old.
	Prune(ctx context.Context, before time.Time) (Pruned, error)
}

// Batch is how the dispatcher decides a batch's findings in a few
// requests: it loads the state their keys and IDs need into a Snapshot
// (Load, as often as it learns what else it needs), decides, and writes
// the outcome as Units, each atomically and only if nothing it was decided
// from changed since it was loaded (Commit). Both outboxes implement it.
type Batch interface {
	// Load adds to s the state q names: for every key its cooldown (the
	// zero Cooldown, Version "", when there is none or the outbox does not
	// know and assumes none), for every finding its decision if one is
	// known, for every entry the entry. Keys in q.Read are read if the
	// outbox does not know them; a key assumed absent that exists makes
	// the unit writing it conflict, so only keys whose state matters
	// without a write following need reading.
	Load(ctx context.Context, s *Snapshot, q Query) error
	// Commit writes units, each atomically, each only if the rows it was
	// decided from are as s had them: cooldowns in their Version (""
	// absent), decisions and added entries absent, put entries in their
	// Version. It returns per unit nil or ErrConflict; added and put
	// entries get their new Version ("" if the outbox did not learn it).
	Commit(ctx context.Context, s *Snapshot, units []*Unit) ([]error, error)
	// PutAll writes entries back as Put does, in as few requests as it
	// can, and returns per entry nil or ErrConflict.
	PutAll(ctx context.Context, es []*Entry) ([]error, error)
	// GetAll reads entries (of the shards given) in as few requests as it
	// can; those that do not exist are left out.
	GetAll(ctx context.Context, refs []Ref) (map[string]*Entry, error)
}

// Ref names a row of delivery state: a cooldown key, a finding ID or an
// alert ID, and the shard it lives in (rows of one shard can be written in
// one transaction: Shard).
type Ref struct{ Shard, Key string }

// Query is what a Load asks for.
type Query struct {
	Keys, Read, Decisions, Entries []Ref
}

// Snapshot is delivery state as a Load found it, and what the outbox needs
// to commit against it.
type Snapshot struct {
	Cooldowns map[string]Cooldown
	Decisions map[string]Decision
	Entries   map[string]*Entry
	// Unknown are keys the outbox did not know and assumed absent.
	Unknown map[string]bool
	// Token is the outbox's own: what the snapshot was read under.
	Token any
}

func (s *Snapshot) init() {
	if s.Cooldowns == nil {
		s.Cooldowns, s.Decisions, s.Entries, s.Unknown = map[string]Cooldown{}, map[string]Decision{}, map[string]*Entry{}, map[string]bool{}
	}
}

// Init makes s ready to be filled (outboxes call it in Load).
func (s *Snapshot) Init() { s.init() }

// Unit is what one decision writes: rows of one shard, written together
// or not at all.
type Unit struct {
	Shard string
	// Cooldowns are written, each from the state the snapshot had.
	Cooldowns map[string]Cooldown
	// Decisions are inserted: a unit with a decided finding conflicts.
	Decisions map[string]Decision
	// Add are inserted entries, Put entries written back in their Version.
	Add, Put []*Entry
}

// Rows is how many rows the unit writes, an entry counting twice (the
// Table outbox keeps an index row beside it).
func (u *Unit) Rows() int {
	return len(u.Cooldowns) + len(u.Decisions) + 2*len(u.Add) + len(u.Put)
}

// MaxUnitRows bounds Unit.Rows: a Table Storage entity-group transaction
// holds at most 100 entities, of which the Table outbox uses two itself.
const MaxUnitRows = 98

// Shard is the shard a finding's delivery state lives in: the vault of its
// group ("" if it is not grouped by vault). A cooldown key's findings, and
// so an alert's (one rule, one vault), share it.
func Shard(f *finding.Finding) string {
	for _, p := range f.Group {
		if p.Field == "vault" {
			return p.Value
		}
	}
	return ""
}

// EntryShard is the shard an entry lives in, its lead finding's.
func EntryShard(e *Entry) string {
	if e == nil || e.Alert == nil || len(e.Alert.Findings) == 0 {
		return ""
	}
	return Shard(&e.Alert.Findings[0])
}

// DecisionsReader is implemented by outboxes that read many findings'
// decisions in fewer requests than one each (a batch hands on many).
// Decisions returns those that exist.
type DecisionsReader interface {
	Decisions(ctx context.Context, findingIDs []string) (map[string]Decision, error)
}

// Pruned counts what an Outbox.Prune deleted.
type Pruned struct {
	Entries, Decisions, Cooldowns int
}

// Done is when an entry's last receiver finished with it (delivered,
// given up or muted), or when its alert was created if it had none; zero
// while a receiver waits for it.
func (e *Entry) Done() time.Time {
	if e.Pending() {
		return time.Time{}
	}
	done := e.Alert.Created
	for _, a := range e.Receivers {
		if a.Done.After(done) {
			done = a.Done
		}
	}
	return done
}

// Memory is an in-memory Outbox: for replay, `kvwatch dev` and digests,
// and `serve` without Table Storage, which may run for days. It is bounded
// as that process must be (MaxDoneEntries, MaxDecisions), and its due list
// reads the entries a receiver waits for, not every entry it keeps.
type Memory struct {
	mu        sync.Mutex
	decisions map[string]Decision
	decisionQ []string // decision IDs, oldest first
	cooldowns map[string]Cooldown
	entries   map[string]*Entry
	order     []string // entry IDs, oldest first
	// num numbers the entries in the order they were added; pending holds
	// the IDs of those a receiver waits for (Entry.Pending).
	num     map[string]int64
	pending map[string]struct{}
	added   int64
	seq     int
	// forgotten counts the entries dropped at MaxDoneEntries.
	forgotten int
}

// MaxDoneEntries bounds the entries no receiver waits for (delivered,
// given up, muted) that the memory outbox keeps, for the alerts list,
// digests and replay's summary: past it the oldest of them are forgotten
// (an alert is a few KB: 10,000 are about 40 MB). Entries a receiver waits
// for are always kept. MaxDecisions bounds the findings whose decision it
// remembers (about 200 bytes each: 20 MB at the bound), the oldest
// forgotten first: a finding handed on again after 100,000 newer ones were
// decided is decided again, under its rule's cooldown like any other
// (detection's in-memory store forgets finding IDs at the same count,
// state.MaxFindings). Housekeeping's Prune drops what is older than the
// retention before either bound is reached in a quiet tenant.
const (
	MaxDoneEntries = 10_000
	MaxDecisions   = 100_000
)

// NewMemory returns an empty outbox.
func NewMemory() *Memory {
	return &Memory{decisions: map[string]Decision{}, cooldowns: map[string]Cooldown{}, entries: map[string]*Entry{},
		num: map[string]int64{}, pending: map[string]struct{}{}}
}

// Forgotten returns how many entries the outbox forgot at MaxDoneEntries.
func (m *Memory) Forgotten() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.forgotten
}

// store keeps c as the entry of its alert ID (added: a new one), keeping
// the pending index and the bound on done entries. m.mu is held.
func (m *Memory) store(c *Entry, added bool) {
	id := c.Alert.ID
	m.entries[id] = c
	if added {
		m.added++
		m.num[id] = m.added
		m.order = append(m.order, id)
	}
	if c.Pending() {
		m.pending[id] = struct{}{}
	} else {
		delete(m.pending, id)
	}
	if added && len(m.entries)-len(m.pending) > MaxDoneEntries {
		m.forgetDone()
	}
}

// forgetDone forgets the oldest done entries down to nine tenths of
// MaxDoneEntries: the order is compacted once per MaxDoneEntries/10
// entries added, not at every one.
func (m *Memory) forgetDone() {
	drop := len(m.entries) - len(m.pending) - MaxDoneEntries*9/10
	kept := m.order[:0]
	for _, id := range m.order {
		if _, waits := m.pending[id]; drop > 0 && !waits {
			delete(m.entries, id)
			delete(m.num, id)
			m.forgotten++
			drop--
			continue
		}
		kept = append(kept, id)
	}
	clear(m.order[len(kept):])
	m.order = kept
}

// decide records a decision unless the finding has one, forgetting the
// oldest past MaxDecisions. m.mu is held.
func (m *Memory) decide(id string, d Decision) {
	if _, ok := m.decisions[id]; ok {
		return
	}
	m.decisions[id] = d
	m.decisionQ = append(m.decisionQ, id)
	if len(m.decisionQ) > MaxDecisions {
		n := len(m.decisionQ) - MaxDecisions*9/10
		for _, old := range m.decisionQ[:n] {
			delete(m.decisions, old)
		}
		m.decisionQ = append(m.decisionQ[:0:0], m.decisionQ[n:]...)
	}
}

func (m *Memory) version() string {
	m.seq++
	return strconv.Itoa(m.seq)
}

// Decisions implements DecisionsReader.
func (m *Memory) Decisions(ctx context.Context, ids []string) (map[string]Decision, error) {
	out := map[string]Decision{}
	for _, id := range ids {
		d, ok, err := m.Decision(ctx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out[id] = d
		}
	}
	return out, nil
}

// Decision implements Outbox.
func (m *Memory) Decision(_ context.Context, id string) (Decision, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.decisions[id]
	return d, ok, nil
}

// Decide implements Outbox.
func (m *Memory) Decide(_ context.Context, ds map[string]Decision) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, d := range ds {
		m.decide(id, d)
	}
	return nil
}

// Cooldown implements Outbox.
func (m *Memory) Cooldown(_ context.Context, key string) (Cooldown, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cooldowns[key], nil
}

// SetCooldown implements Outbox.
func (m *Memory) SetCooldown(_ context.Context, key string, c Cooldown) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.cooldowns[key]; cur.Version != c.Version {
		return ErrConflict
	}
	c.Version = m.version()
	m.cooldowns[key] = c
	return nil
}

// Add implements Outbox.
func (m *Memory) Add(_ context.Context, e *Entry) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[e.Alert.ID]; ok {
		return false, nil
	}
	c := clone(e)
	c.Version = m.version()
	m.store(c, true)
	return true, nil
}

// Get implements Outbox.
func (m *Memory) Get(_ context.Context, id string) (*Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[id]
	if !ok {
		return nil, nil
	}
	return clone(e), nil
}

// Put implements Outbox.
func (m *Memory) Put(_ context.Context, e *Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.entries[e.Alert.ID]
	if !ok || cur.Version != e.Version {
		return ErrConflict
	}
	c := clone(e)
	c.Version = m.version()
	m.store(c, false)
	e.Version = c.Version
	return nil
}

// Due implements Outbox.
func (m *Memory) Due(_ context.Context, now time.Time, limit int) ([]*Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The entries a receiver waits for, in the order they were added.
	var due []string
	for id := range m.pending {
		for _, a := range m.entries[id].Receivers {
			if a.State == Pending && !a.Next.After(now) {
				due = append(due, id)
				break
			}
		}
	}
	slices.SortFunc(due, func(a, b string) int { return cmp.Compare(m.num[a], m.num[b]) })
	out := make([]*Entry, 0, min(len(due), limit))
	for _, id := range due[:min(len(due), limit)] {
		out = append(out, clone(m.entries[id]))
	}
	return out, nil
}

// Recent implements Outbox.
func (m *Memory) Recent(_ context.Context, limit int) ([]*Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Entry
	for i := len(m.order) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, clone(m.entries[m.order[i]]))
	}
	return out, nil
}

// Prune implements Outbox.
func (m *Memory) Prune(_ context.Context, before time.Time) (Pruned, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p Pruned
	kept := m.order[:0]
	for _, id := range m.order {
		e := m.entries[id]
		if done := e.Done(); !done.IsZero() && done.Before(before) {
			delete(m.entries, id)
			delete(m.num, id)
			p.Entries++
			continue
		}
		kept = append(kept, id)
	}
	clear(m.order[len(kept):])
	m.order = kept
	keptD := m.decisionQ[:0]
	for _, id := range m.decisionQ {
		if d := m.decisions[id]; !d.At.IsZero() && d.At.Before(before) {
			delete(m.decisions, id)
			p.Decisions++
			continue
		}
		keptD = append(keptD, id)
	}
	clear(m.decisionQ[len(keptD):])
	m.decisionQ = keptD
	for k, c := range m.cooldowns {
		if c.Last.Before(before) {
			delete(m.cooldowns, k)
			p.Cooldowns++
		}
	}
	return p, nil
}

// Load implements Batch: the memory outbox knows everything.
func (m *Memory) Load(_ context.Context, s *Snapshot, q Query) error {
	s.init()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, refs := range [][]Ref{q.Keys, q.Read} {
		for _, r := range refs {
			s.Cooldowns[r.Key] = m.cooldowns[r.Key]
		}
	}
	for _, r := range q.Decisions {
		if d, ok := m.decisions[r.Key]; ok {
			s.Decisions[r.Key] = d
		}
	}
	for _, r := range q.Entries {
		if e, ok := m.entries[r.Key]; ok {
			s.Entries[r.Key] = clone(e)
		}
	}
	return nil
}

// Commit implements Batch.
func (m *Memory) Commit(_ context.Context, _ *Snapshot, units []*Unit) ([]error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	errs := make([]error, len(units))
	for i, u := range units {
		if !m.fits(u) {
			errs[i] = ErrConflict
			continue
		}
		for k, c := range u.Cooldowns {
			c.Version = m.version()
			m.cooldowns[k] = c
		}
		for id, d := range u.Decisions {
			m.decide(id, d)
		}
		for _, e := range u.Add {
			c := clone(e)
			c.Version = m.version()
			m.store(c, true)
			e.Version = c.Version
		}
		for _, e := range u.Put {
			c := clone(e)
			c.Version = m.version()
			m.store(c, false)
			e.Version = c.Version
		}
	}
	return errs, nil
}

// fits reports whether u was decided from what the outbox holds now.
func (m *Memory) fits(u *Unit) bool {
	for k, c := range u.Cooldowns {
		if m.cooldowns[k].Version != c.Version {
			return false
		}
	}
	for id := range u.Decisions {
		if _, ok := m.decisions[id]; ok {
			return false
		}
	}
	for _, e := range u.Add {
		if _, ok := m.entries[e.Alert.ID]; ok {
			return false
		}
	}
	for _, e := range u.Put {
		if cur, ok := m.entries[e.Alert.ID]; !ok || cur.Version != e.Version {
			return false
		}
	}
	return true
}

// PutAll implements Batch.
func (m *Memory) PutAll(ctx context.Context, es []*Entry) ([]error, error) {
	errs := make([]error, len(es))
	for i, e := range es {
		if err := m.Put(ctx, e); err != nil {
			if !errors.Is(err, ErrConflict) {
				return nil, err
			}
			errs[i] = err
		}
	}
	return errs, nil
}

// GetAll implements Batch.
func (m *Memory) GetAll(ctx context.Context, refs []Ref) (map[string]*Entry, error) {
	out := map[string]*Entry{}
	for _, r := range refs {
		e, err := m.Get(ctx, r.Key)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out[r.Key] = e
		}
	}
	return out, nil
}

// Copy returns a copy of e whose receivers' states may be changed; its
// alert is shared: delivery changes an alert only on a copy of it (as the
// memory outbox, which hands out what it keeps, relies on).
func (e *Entry) Copy() *Entry { return clone(e) }

func clone(e *Entry) *Entry {
	c := *e
	c.Receivers = make(map[string]*Attempt, len(e.Receivers))
	for k, a := range e.Receivers {
		ac := *a
		c.Receivers[k] = &ac
	}
	return &c
}

// receiverNames returns an entry's receivers in a stable order.
func receiverNames(e *Entry) []string {
	names := make([]string, 0, len(e.Receivers))
	for n := range e.Receivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

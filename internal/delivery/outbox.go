package delivery

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
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
// carries it, or the cooldown that held it back.
type Decision struct {
	Alert      string `json:"alert,omitempty"`
	Suppressed bool   `json:"suppressed,omitempty"`
	// At is when it was decided (the dispatcher's clock); Prune goes by it.
	At time.Time `json:"at,omitzero"`
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
	Source  *SourceMark `json:"source,omitempty"`
	Version string      `json:"-"`
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
	// Prune deletes what delivery no longer needs from before an instant:
	// entries no receiver waits for (delivered, given up, muted, routed
	// nowhere) whose last change was before it, decisions made before it,
	// and cooldowns whose last alert was before it. An entry a receiver
	// still waits for is kept, however old.
	Prune(ctx context.Context, before time.Time) (Pruned, error)
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

// Memory is an in-memory Outbox.
type Memory struct {
	mu        sync.Mutex
	decisions map[string]Decision
	cooldowns map[string]Cooldown
	entries   map[string]*Entry
	order     []string
	seq       int
}

// NewMemory returns an empty outbox.
func NewMemory() *Memory {
	return &Memory{decisions: map[string]Decision{}, cooldowns: map[string]Cooldown{}, entries: map[string]*Entry{}}
}

func (m *Memory) version() string {
	m.seq++
	return strconv.Itoa(m.seq)
}

// Decision implements Outbox.
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
		if _, ok := m.decisions[id]; !ok {
			m.decisions[id] = d
		}
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
	m.entries[e.Alert.ID] = c
	m.order = append(m.order, e.Alert.ID)
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
	m.entries[e.Alert.ID] = c
	e.Version = c.Version
	return nil
}

// Due implements Outbox.
func (m *Memory) Due(_ context.Context, now time.Time, limit int) ([]*Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Entry
	for _, id := range m.order {
		e := m.entries[id]
		for _, a := range e.Receivers {
			if a.State == Pending && !a.Next.After(now) {
				out = append(out, clone(e))
				break
			}
		}
		if len(out) >= limit {
			break
		}
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
			p.Entries++
			continue
		}
		kept = append(kept, id)
	}
	clear(m.order[len(kept):])
	m.order = kept
	for id, d := range m.decisions {
		if !d.At.IsZero() && d.At.Before(before) {
			delete(m.decisions, id)
			p.Decisions++
		}
	}
	for k, c := range m.cooldowns {
		if c.Last.Before(before) {
			delete(m.cooldowns, k)
			p.Cooldowns++
		}
	}
	return p, nil
}

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

// Package delivery turns findings into alerts people act on, and makes
// sure each is delivered: per-group cooldowns with exponential
// re-alerting, grouping, routing, silences, and an outbox in the state
// store from which every receiver is served until it accepts the alert or
// the give-up age passes.
//
// Recording and sending are apart. Found (the ingest path: an invocation,
// a timer) only records: it decides, groups, routes and writes alerts to
// the outbox, and returns without waiting for any receiver. Sending is a
// Sender's (a loop in the process, Run/Stop) and Flush's (the
// Housekeeping timer, replay): each receiver is served by its own worker,
// so one that hangs never holds up another, and every send has a deadline
// (Options.SendTimeout).
//
// Delivery is at least once. An alert is recorded before it is sent, and
// marked delivered after the receiver accepted it: a process that stops
// between the two (a crash, a send whose deadline passed after the
// receiver took it) leaves the alert pending, and it is sent again once
// its lease ends. Receivers can drop the repeat: the webhook carries the
// alert ID (X-Kvwatch-Alert-Id), the email a Message-ID stable for the
// alert; a Teams channel shows it twice.
package delivery

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
)

// Notifier sends one alert to one receiver. Its error says, through
// notify.Retryable, whether trying again later can help.
type Notifier interface {
	Notify(ctx context.Context, a *alert.Alert) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, a *alert.Alert) error

// Notify implements Notifier.
func (f NotifierFunc) Notify(ctx context.Context, a *alert.Alert) error { return f(ctx, a) }

// Options configure a Dispatcher.
type Options struct {
	Outbox    Outbox
	Receivers map[string]Notifier
	Routes    []Route
	Silences  []Silence
	Mutes     []MuteInterval
	// Cooldowns per rule id; rules not listed use DefaultCooldown.
	Cooldowns   map[string]time.Duration
	GiveUp      time.Duration // default 24h
	MaxBackoff  time.Duration // default 10m
	MaxReminder time.Duration // default 24h
	// Lease is how long a sender holds an alert it is sending; default
	// 1m, and always longer than SendTimeout, so a send still under way is
	// never taken over.
	Lease time.Duration
	// SendTimeout is the deadline of one send to one receiver; default
	// 30s. A send that outlasts it counts as a failed attempt, retried.
	SendTimeout time.Duration
	// Retention is how long delivered, given-up and muted alerts and the
	// decisions about findings are kept before Prune deletes them;
	// default 100 days (the monthly digest reads the outbox back two
	// months).
	Retention time.Duration
	// SilenceSource, if set, returns the silences added at run time
	// (kvwatch silence add; a SilenceWatcher's Active), applied beside
	// Silences.
	SilenceSource func() []Silence
	// Updates are the rules' update policies (update_on); rules not
	// listed use DefaultUpdatePolicy.
	Updates map[string]UpdatePolicy
	// Inhibits fold the alerts of target rules into those of source rules
	// that fired on the same evidence (kvwatch.yaml's inhibit).
	Inhibits []InhibitRule
	// GroupWait holds a new alert this long before sending it, and adds
	// to it the findings of the same rule and vault that arrive meanwhile;
	// 0 (the default) sends at once.
	GroupWait time.Duration
	// InhibitWait holds an alert of an inhibition's target rule that no
	// source covers yet this long, for a source recorded meanwhile (by a
	// later batch, another partition) to take it in (inhibit.go); 0 sends
	// at once.
	InhibitWait time.Duration
	Instance    string // names this process in leases
	Now         func() time.Time
	Log         zerolog.Logger
}

// DefaultCooldown applies to findings of rules with no known cooldown.
const DefaultCooldown = time.Hour

// Dispatcher is the delivery stage: a detect.Sink.
type Dispatcher struct {
	o   Options
	seq atomic.Int64 // numbers this process's send attempts, for leases
	// recorded wakes a Sender: Found wrote an alert to send.
	recorded chan struct{}
	// fresh are the entries Found recorded, as it wrote them (with their
	// versions), for the next sender round to take without reading them
	// back from the outbox.
	freshMu sync.Mutex
	fresh   []*Entry
	// senders counts the Sender loops running: while one runs, Found
	// writes the alerts it records already claimed by this process
	// (preclaim), for the loop to send without a claim of its own.
	senders atomic.Int32
	// leases are this process's pre-claims (lease IDs, with a nonce no
	// other process has): when each runs out, and which of its alerts'
	// receivers a send took it for.
	leaseNonce string
	leasesMu   sync.Mutex
	leases     map[string]*preLease
}

// preLease is one pre-claim: a lease Found wrote on the alerts it
// recorded, for every receiver, that no write of a sender replaces. The
// version check a claim's write makes is what keeps two senders from
// sending one alert; a pre-claim has none, so the process keeps it: each
// alert's receiver under it is taken by one send, once (take), and every
// other round of this process (a sender round that read the entry before
// that send recorded its outcome, a Flush of the Housekeeping timer) finds
// it held, as another instance does.
type preLease struct {
	until time.Time
	taken map[string]bool // alert ID + "\x00" + receiver
}

// New returns a dispatcher.
func New(o Options) *Dispatcher {
	if o.GiveUp <= 0 {
		o.GiveUp = 24 * time.Hour
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Minute
	}
	if o.MaxReminder <= 0 {
		o.MaxReminder = 24 * time.Hour
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 30 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	o.Lease = max(o.Lease, o.SendTimeout+30*time.Second)
	if o.Retention <= 0 {
		o.Retention = 100 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Instance == "" {
		o.Instance = "kvwatch"
	}
	var nonce [6]byte
	crand.Read(nonce[:])
	return &Dispatcher{o: o, recorded: make(chan struct{}, 1), leaseNonce: hex.EncodeToString(nonce[:]), leases: map[string]*preLease{}}
}

// entry routes an alert and applies silences.
func (d *Dispatcher) entry(a *alert.Alert) *Entry {
	e := &Entry{Alert: a, Receivers: map[string]*Attempt{}}
	state := Pending
	if e.MutedBy = d.mutedBy(a); e.MutedBy != "" {
		state = Muted
	}
	for _, r := range Routes(d.o.Routes, a, d.receiverNames()) {
		e.Receivers[r] = &Attempt{State: state, Next: a.Created}
	}
	return e
}

// mutedBy names the silence (from the configuration or added at run
// time) or mute interval that holds an alert back, "" if none does.
func (d *Dispatcher) mutedBy(a *alert.Alert) string {
	for _, s := range d.o.Silences {
		if s.Matches(a) {
			return s.Name()
		}
	}
	if d.o.SilenceSource != nil {
		now := d.o.Now()
		for _, s := range d.o.SilenceSource() {
			if s.MatchesAt(a, now) {
				return s.Name()
			}
		}
	}
	for _, m := range d.o.Mutes {
		if m.Contains(a.FirstEvent) {
			return "mute interval " + m.Name
		}
	}
	return ""
}

func (d *Dispatcher) receiverNames() []string {
	names := make([]string, 0, len(d.o.Receivers))
	for n := range d.o.Receivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// backoff is 5 s doubling per attempt, capped at MaxBackoff.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	return min(5*time.Second<<min(attempts-1, 16), d.o.MaxBackoff)
}

// newLease returns a lease ID no other lease of any process has: the
// instance, the process's random nonce and a sequence number. A sender
// that finds its own lease on an entry it reads again knows its write was
// made (serveChunk).
func (d *Dispatcher) newLease() string {
	return d.o.Instance + "/" + d.leaseNonce + "/" + strconv.FormatInt(d.seq.Add(1), 10)
}

// preclaim returns a lease ID for the alerts a Found records while a
// Sender runs, valid until until; "" when no Sender runs (replay, tools:
// Flush claims what it sends).
func (d *Dispatcher) preclaim(until time.Time) string {
	if d.senders.Load() == 0 || d.o.GroupWait > 0 {
		return ""
	}
	id := d.newLease()
	d.leasesMu.Lock()
	defer d.leasesMu.Unlock()
	now := d.o.Now()
	for l, p := range d.leases {
		if !p.until.After(now) {
			delete(d.leases, l)
		}
	}
	d.leases[id] = &preLease{until: until, taken: map[string]bool{}}
	return id
}

// preclaimed reports whether receiver name's attempt a of alert id holds
// a lease this process pre-claimed, not run out at now, that no send took
// yet: the sender that takes it (takePreclaim) may send without a claim of
// its own. One taken is held, as another sender's lease is.
func (d *Dispatcher) preclaimed(id, name string, a *Attempt, now time.Time) bool {
	if a == nil || a.LeaseBy == "" || !a.Lease.After(now) {
		return false
	}
	d.leasesMu.Lock()
	defer d.leasesMu.Unlock()
	p, ok := d.leases[a.LeaseBy]
	return ok && !p.taken[id+"\x00"+name]
}

// takePreclaim takes the pre-claim of alert id's receiver name (attempt
// a) for one send; false if there is none (another process's lease, run
// out, none) or a send of this process took it already.
func (d *Dispatcher) takePreclaim(id, name string, a *Attempt, now time.Time) bool {
	if a == nil || a.LeaseBy == "" || !a.Lease.After(now) {
		return false
	}
	d.leasesMu.Lock()
	defer d.leasesMu.Unlock()
	p, ok := d.leases[a.LeaseBy]
	if !ok || p.taken[id+"\x00"+name] {
		return false
	}
	p.taken[id+"\x00"+name] = true
	return true
}

// dropPreclaim gives back a pre-claim takePreclaim took and no send used
// (the claim that took it was not written).
func (d *Dispatcher) dropPreclaim(id, name, lease string) {
	d.leasesMu.Lock()
	defer d.leasesMu.Unlock()
	if p, ok := d.leases[lease]; ok {
		delete(p.taken, id+"\x00"+name)
	}
}

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
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
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
	// GroupWait holds a new alert this long before sending it, and adds
	// to it the findings of the same rule and vault that arrive meanwhile;
	// 0 (the default) sends at once.
	GroupWait time.Duration
	Instance  string // names this process in leases
	Now       func() time.Time
	Log       zerolog.Logger
}

// DefaultCooldown applies to findings of rules with no known cooldown.
const DefaultCooldown = time.Hour

// Dispatcher is the delivery stage: a detect.Sink.
type Dispatcher struct {
	o   Options
	seq atomic.Int64 // numbers this process's send attempts, for leases
	// recorded wakes a Sender: Found wrote an alert to send.
	recorded chan struct{}
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
	return &Dispatcher{o: o, recorded: make(chan struct{}, 1)}
}

// Found implements detect.Sink: it decides, for every finding not decided
// before, whether the cooldown holds it back or it makes an alert, and
// writes the alerts to the outbox. It sends nothing and waits for no
// receiver: a Sender (woken at once) or Flush delivers them. It is
// idempotent by finding ID, so a retried batch changes nothing.
func (d *Dispatcher) Found(ctx context.Context, fs []finding.Finding) error {
	byKey := map[string][]finding.Finding{}
	var keys []string
	for _, f := range fs {
		dec, ok, err := d.o.Outbox.Decision(ctx, f.ID)
		if err != nil {
			return fmt.Errorf("delivery: %w", err)
		}
		if ok && (dec.Suppressed || dec.Alert != "") {
			continue
		}
		k := alert.CooldownKey(&f)
		if _, seen := byKey[k]; !seen {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], f)
	}
	slices.Sort(keys)
	var alerting []finding.Finding
	repeat := map[string]int{}
	suppressed := map[string]int{}
	decisions := map[string]Decision{}
	for _, k := range keys {
		group := byKey[k]
		slices.SortFunc(group, func(a, b finding.Finding) int {
			return cmp.Or(a.FirstEvent.Compare(b.FirstEvent), cmp.Compare(a.ID, b.ID))
		})
		send, rep, sup, err := d.cooldown(ctx, k, group)
		if err != nil {
			return err
		}
		for _, f := range group {
			if send[f.ID] {
				alerting = append(alerting, f)
				repeat[f.ID], suppressed[f.ID] = rep, sup
			} else {
				decisions[f.ID] = Decision{Suppressed: true}
			}
		}
	}
	alerts, err := d.unclaimed(ctx, d.group(alerting, repeat, suppressed), repeat, suppressed)
	if err != nil {
		return err
	}
	for _, a := range alerts {
		if d.o.GroupWait > 0 {
			into, err := d.joinOpen(ctx, a)
			if err != nil {
				return err
			}
			if into != "" {
				for _, f := range a.Findings {
					decisions[f.ID] = Decision{Alert: into}
				}
				continue
			}
		}
		e := d.entry(a)
		if d.o.GroupWait > 0 {
			for _, r := range e.Receivers {
				r.Next = a.Created.Add(d.o.GroupWait)
			}
		}
		if _, err := d.o.Outbox.Add(ctx, e); err != nil {
			return fmt.Errorf("delivery: outbox: %w", err)
		}
		if d.o.GroupWait > 0 {
			if err := d.openGroup(ctx, a); err != nil {
				return err
			}
		}
		for _, f := range a.Findings {
			decisions[f.ID] = Decision{Alert: a.ID}
		}
		if e.MutedBy != "" {
			d.o.Log.Info().Str("alert", a.ID).Str("rule", a.Rule).Str("muted_by", e.MutedBy).Msg("alert muted")
		} else if len(e.Receivers) == 0 {
			d.o.Log.Warn().Str("alert", a.ID).Str("rule", a.Rule).Msg("alert matches no route: recorded, sent nowhere")
		}
	}
	if len(decisions) > 0 {
		at := d.o.Now()
		for id, dec := range decisions {
			dec.At = at
			decisions[id] = dec
		}
		if err := d.o.Outbox.Decide(ctx, decisions); err != nil {
			return fmt.Errorf("delivery: %w", err)
		}
	}
	if len(alerts) > 0 {
		select {
		case d.recorded <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return nil
}

// groupKey names the open group of a rule and vault (group wait).
func groupKey(a *alert.Alert) string { return "group|" + a.Rule + "|" + a.Vault }

// openGroup records a as the open alert of its rule and vault.
func (d *Dispatcher) openGroup(ctx context.Context, a *alert.Alert) error {
	for i := 0; i < 8; i++ {
		c, err := d.o.Outbox.Cooldown(ctx, groupKey(a))
		if err != nil {
			return fmt.Errorf("delivery: group: %w", err)
		}
		c.Last, c.LastFinding = a.Created, a.ID
		if err := d.o.Outbox.SetCooldown(ctx, groupKey(a), c); !errors.Is(err, ErrConflict) {
			if err != nil {
				return fmt.Errorf("delivery: group: %w", err)
			}
			return nil
		}
	}
	return nil // another writer opened a group meanwhile: theirs wins
}

// joinOpen adds a's findings to the open alert of the same rule and vault
// if one was created within the group wait and nothing was sent from it
// yet, and returns that alert's ID ("" when a must stand alone). The
// group's alert keeps its ID; findings already in it are not added again.
func (d *Dispatcher) joinOpen(ctx context.Context, a *alert.Alert) (string, error) {
	c, err := d.o.Outbox.Cooldown(ctx, groupKey(a))
	if err != nil {
		return "", fmt.Errorf("delivery: group: %w", err)
	}
	if c.LastFinding == "" || a.Created.Sub(c.Last) >= d.o.GroupWait || c.LastFinding == a.ID {
		return "", nil
	}
	for i := 0; i < 8; i++ {
		e, err := d.o.Outbox.Get(ctx, c.LastFinding)
		if err != nil {
			return "", fmt.Errorf("delivery: outbox: %w", err)
		}
		if e == nil {
			return "", nil
		}
		for _, r := range e.Receivers {
			if r.State != Pending || r.Attempts > 0 || !r.Lease.IsZero() {
				return "", nil // already on its way: a new alert
			}
		}
		have := map[string]bool{}
		for _, f := range e.Alert.Findings {
			have[f.ID] = true
		}
		fs := append([]finding.Finding(nil), e.Alert.Findings...)
		for _, f := range a.Findings {
			if !have[f.ID] {
				fs = append(fs, f)
			}
		}
		merged := alert.New(fs, e.Alert.Created)
		merged.ID, merged.Repeat = e.Alert.ID, max(e.Alert.Repeat, a.Repeat)
		merged.Suppressed = e.Alert.Suppressed + a.Suppressed
		e.Alert = merged
		switch err := d.o.Outbox.Put(ctx, e); {
		case err == nil:
			return e.Alert.ID, nil
		case !errors.Is(err, ErrConflict):
			return "", fmt.Errorf("delivery: outbox: %w", err)
		}
	}
	return "", nil
}

// unclaimed drops from alerts the findings that another attempt or
// instance alerted since they were read as undecided (it writes their
// decisions, together, after its alerts), regrouping the rest: otherwise
// a finding read undecided here while its batch-mate was read decided
// there would go out twice, in two alerts grouped differently. A decided
// finding of this very alert (the same grouping) stays: the outbox
// refuses the alert a second time.
func (d *Dispatcher) unclaimed(ctx context.Context, alerts []*alert.Alert, repeat, suppressed map[string]int) ([]*alert.Alert, error) {
	for round := 0; round < 4; round++ {
		var keep []finding.Finding
		dropped := false
		for _, a := range alerts {
			for _, f := range a.Findings {
				dec, ok, err := d.o.Outbox.Decision(ctx, f.ID)
				if err != nil {
					return nil, fmt.Errorf("delivery: %w", err)
				}
				if ok && (dec.Suppressed || (dec.Alert != "" && dec.Alert != a.ID)) {
					dropped = true
					continue
				}
				keep = append(keep, f)
			}
		}
		if !dropped {
			return alerts, nil
		}
		alerts = d.group(keep, repeat, suppressed)
	}
	return alerts, nil
}

// cooldown decides, for one key's new findings (in event-time order),
// which make an alert. A finding within the current interval of the last
// alert is held back; the interval doubles (up to MaxReminder) while the
// condition keeps coming back, and resets when it stays away. The state
// is written with optimistic concurrency; on a conflict it is read again.
func (d *Dispatcher) cooldown(ctx context.Context, key string, group []finding.Finding) (send map[string]bool, repeat, suppressed int, err error) {
	base := d.o.Cooldowns[group[0].Rule]
	if base <= 0 {
		base = DefaultCooldown
	}
	for attempt := 0; attempt < 8; attempt++ {
		c, err := d.o.Outbox.Cooldown(ctx, key)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("delivery: cooldown: %w", err)
		}
		send = map[string]bool{}
		for _, f := range group {
			at := f.FirstEvent
			if at.IsZero() {
				at = f.WindowStart
			}
			if c.LastFinding == f.ID { // decided by an attempt that stopped half way
				send[f.ID], repeat, suppressed = true, c.Repeat, 0
				continue
			}
			interval := min(base<<min(c.Repeat, 20), max(d.o.MaxReminder, base))
			if !c.Last.IsZero() && at.Sub(c.Last) < interval && c.Last.Sub(at) < interval {
				c.Suppressed++
				continue
			}
			if !c.Last.IsZero() && at.Sub(c.Last) < 2*interval {
				c.Repeat++ // the condition keeps coming back: remind, less often
			} else {
				c.Repeat = 0
			}
			send[f.ID], repeat, suppressed = true, c.Repeat, c.Suppressed
			c.Last, c.LastFinding, c.Suppressed = at, f.ID, 0
		}
		switch err := d.o.Outbox.SetCooldown(ctx, key, c); {
		case err == nil:
			return send, repeat, suppressed, nil
		case errors.Is(err, ErrConflict):
			continue
		default:
			return nil, 0, 0, fmt.Errorf("delivery: cooldown: %w", err)
		}
	}
	return nil, 0, 0, fmt.Errorf("delivery: cooldown %s: too many concurrent writers", key)
}

// group makes one alert per rule and vault of the findings that alert.
func (d *Dispatcher) group(fs []finding.Finding, repeat, suppressed map[string]int) []*alert.Alert {
	type gk struct{ rule, vault string }
	by := map[gk][]finding.Finding{}
	var order []gk
	for _, f := range fs {
		k := gk{f.Rule, f.Vault}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], f)
	}
	var out []*alert.Alert
	for _, k := range order {
		g := by[k]
		slices.SortFunc(g, func(a, b finding.Finding) int {
			return cmp.Or(a.FirstEvent.Compare(b.FirstEvent), cmp.Compare(a.ID, b.ID))
		})
		a := alert.New(g, d.o.Now())
		for _, f := range g {
			a.Repeat = max(a.Repeat, repeat[f.ID])
			a.Suppressed += suppressed[f.ID]
		}
		out = append(out, a)
	}
	return out
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

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

// Found implements detect.Sink: it decides, for every finding, whether
// it opens an incident (an alert), adds a fact the user was not told of
// to the incident of its rule and group (an update, sent whatever the
// cooldown), or repeats known facts (held back by the cooldown, or, for a
// finding decided before, dropped), folds the alerts of rules that fired
// on the same evidence into one (inhibition), and writes the alerts to the
// outbox. It sends nothing and waits for no receiver: a Sender (woken at
// once) or Flush delivers them. It is idempotent: a retried batch changes
// nothing.
func (d *Dispatcher) Found(ctx context.Context, fs []finding.Finding) error {
	byKey := map[string][]finding.Finding{}
	decided := map[string]bool{}
	var keys []string
	// The batch's decisions in as few reads as the outbox allows.
	var known map[string]Decision
	if dr, ok := d.o.Outbox.(DecisionsReader); ok && len(fs) > 1 {
		ids := make([]string, len(fs))
		for i := range fs {
			ids[i] = fs[i].ID
		}
		var err error
		if known, err = dr.Decisions(ctx, ids); err != nil {
			return fmt.Errorf("delivery: %w", err)
		}
	}
	for _, f := range fs {
		if _, dup := decided[f.ID]; dup {
			continue // twice in one batch: the first stands
		}
		var dec Decision
		var ok bool
		var err error
		if known != nil {
			dec, ok = known[f.ID]
		} else if dec, ok, err = d.o.Outbox.Decision(ctx, f.ID); err != nil {
			return fmt.Errorf("delivery: %w", err)
		}
		decided[f.ID] = ok && (dec.Suppressed || dec.Alert != "")
		k := alert.CooldownKey(&f)
		if _, seen := byKey[k]; !seen {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], f)
	}
	slices.Sort(keys)
	var alerting []finding.Finding
	var updates []*alert.Alert
	repeat := map[string]int{}
	suppressed := map[string]int{}
	incident := map[string]string{}
	decisions := map[string]Decision{}
	for _, k := range keys {
		group := byKey[k]
		slices.SortFunc(group, func(a, b finding.Finding) int {
			return cmp.Or(a.FirstEvent.Compare(b.FirstEvent), cmp.Compare(a.ID, b.ID))
		})
		vs, err := d.cooldown(ctx, k, group, decided)
		if err != nil {
			return err
		}
		for i, f := range group {
			v := vs[i]
			switch v.what {
			case opens:
				alerting = append(alerting, f)
				repeat[f.ID], suppressed[f.ID], incident[f.ID] = v.repeat, v.suppressed, v.incident
			case updates_:
				a := alert.New([]finding.Finding{f}, d.o.Now())
				a.Incident, a.Version, a.Changes = v.incident, v.version, v.changes
				a.ID = alert.UpdateID(v.incident, v.version)
				updates = append(updates, a)
			case holds:
				decisions[f.ID] = Decision{Suppressed: true}
			}
		}
	}
	alerts, err := d.unclaimed(ctx, d.group(alerting, repeat, suppressed), repeat, suppressed)
	if err != nil {
		return err
	}
	for _, a := range alerts {
		a.Incident, a.Version = incident[a.Lead().ID], 1
	}
	alerts = append(alerts, updates...)
	inhibited, err := d.inhibit(ctx, alerts)
	if err != nil {
		return err
	}
	for _, a := range alerts {
		by := inhibited[a.ID]
		if d.o.GroupWait > 0 && !a.IsUpdate() && by == "" {
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
		if by != "" {
			e.InhibitedBy = by
			for _, r := range e.Receivers {
				r.State = Muted
			}
		}
		if d.o.GroupWait > 0 {
			for _, r := range e.Receivers {
				r.Next = a.Created.Add(d.o.GroupWait)
			}
		}
		if _, err := d.o.Outbox.Add(ctx, e); err != nil {
			return fmt.Errorf("delivery: outbox: %w", err)
		}
		if d.o.GroupWait > 0 && !a.IsUpdate() && by == "" {
			if err := d.openGroup(ctx, a); err != nil {
				return err
			}
		}
		for _, f := range a.Findings {
			decisions[f.ID] = Decision{Alert: a.ID}
		}
		switch {
		case e.InhibitedBy != "":
			d.o.Log.Info().Str("alert", a.ID).Str("rule", a.Rule).Str("inhibited_by", e.InhibitedBy).Msg("alert inhibited")
		case e.MutedBy != "":
			d.o.Log.Info().Str("alert", a.ID).Str("rule", a.Rule).Str("muted_by", e.MutedBy).Msg("alert muted")
		case len(e.Receivers) == 0:
			d.o.Log.Warn().Str("alert", a.ID).Str("rule", a.Rule).Msg("alert matches no route: recorded, sent nowhere")
		}
	}
	if err := d.markSources(ctx, alerts); err != nil {
		return err
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

// What the cooldown decided about one finding.
type verdict struct {
	what       verdictKind
	repeat     int // opens: the reminder it is
	suppressed int // opens: findings held back since the last alert
	incident   string
	version    int      // updates: the incident's message it is
	changes    []string // updates: what it adds
}

type verdictKind int

const (
	drops    verdictKind = iota // a decided finding repeating known facts: nothing
	holds                       // a new finding repeating known facts within the cooldown
	opens                       // a new incident's first message (or a reminder)
	updates_                    // an update of the key's incident
)

// cooldown decides, for one key's findings (in event-time order), which
// open an incident, which update the key's incident and which repeat what
// the user was told. A finding within the current interval of the last
// alert, or decided before, makes a message only with a new fact (an
// update); otherwise it is held back (or dropped). The interval doubles
// (up to MaxReminder) while the condition keeps coming back, and resets
// when it stays away. The state is written with optimistic concurrency; on
// a conflict it is read again.
func (d *Dispatcher) cooldown(ctx context.Context, key string, group []finding.Finding, decided map[string]bool) ([]verdict, error) {
	rule := group[0].Rule
	base := d.o.Cooldowns[rule]
	if base <= 0 {
		base = DefaultCooldown
	}
	policy, ok := d.o.Updates[rule]
	if !ok {
		policy = DefaultUpdatePolicy
	}
	for attempt := 0; attempt < 8; attempt++ {
		c, err := d.o.Outbox.Cooldown(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("delivery: cooldown: %w", err)
		}
		vs := make([]verdict, len(group))
		changed := false
		for i := range group {
			f := &group[i]
			at := f.FirstEvent
			if at.IsZero() {
				at = f.WindowStart
			}
			t := c.Told
			if c.LastFinding == f.ID && (t == nil || t.Facts == facts(f)) {
				// Decided by an attempt that stopped half way, or the very
				// facts of the last message again: the same message, which
				// the outbox and the decisions take once.
				switch {
				case t != nil && t.Version > 1:
					vs[i] = verdict{what: updates_, incident: t.Incident, version: t.Version, changes: t.Changes}
				case decided[f.ID]:
					vs[i] = verdict{what: drops}
				default:
					vs[i] = verdict{what: opens, repeat: c.Repeat, incident: f.ID}
				}
				continue
			}
			interval := min(base<<min(c.Repeat, 20), max(d.o.MaxReminder, base))
			within := !c.Last.IsZero() && at.Sub(c.Last) < interval && c.Last.Sub(at) < interval
			if decided[f.ID] || within {
				// The incident the user was told of goes on: a new fact is
				// an update, sent at once; known facts are a repeat.
				if t != nil && !f.Period.Before(t.Opened) {
					if ch, next := changes(t, f, policy); len(ch) > 0 {
						c.Told, c.LastFinding, changed = next, f.ID, true
						vs[i] = verdict{what: updates_, incident: next.Incident, version: next.Version, changes: ch}
						continue
					}
				}
				if decided[f.ID] {
					vs[i] = verdict{what: drops}
					continue
				}
				c.Suppressed++
				changed = true
				vs[i] = verdict{what: holds}
				continue
			}
			if !c.Last.IsZero() && at.Sub(c.Last) < 2*interval {
				c.Repeat++ // the condition keeps coming back: remind, less often
			} else {
				c.Repeat = 0
			}
			vs[i] = verdict{what: opens, repeat: c.Repeat, suppressed: c.Suppressed, incident: f.ID}
			c.Last, c.LastFinding, c.Suppressed, c.Told = at, f.ID, 0, newTold(f)
			changed = true
		}
		if !changed {
			return vs, nil
		}
		switch err := d.o.Outbox.SetCooldown(ctx, key, c); {
		case err == nil:
			return vs, nil
		case errors.Is(err, ErrConflict):
			continue
		default:
			return nil, fmt.Errorf("delivery: cooldown: %w", err)
		}
	}
	return nil, fmt.Errorf("delivery: cooldown %s: too many concurrent writers", key)
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

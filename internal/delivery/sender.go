package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// Report says what a Flush (or one receiver's turn of it) did.
type Report struct {
	Delivered, Retrying, Undelivered, Muted int
}

func (r *Report) add(o Report) {
	r.Delivered += o.Delivered
	r.Retrying += o.Retrying
	r.Undelivered += o.Undelivered
	r.Muted += o.Muted
}

// dueBatch is how many due alerts one round reads from the outbox.
const dueBatch = 200

// sendChunk is how many of a receiver's alerts a sender claims at once (in
// one write per outbox partition), sends in turn, and records the outcome
// of (again one write per partition).
const sendChunk = 50

// due returns what is due now, for each receiver the alerts it is due
// (copies, oldest first): the entries Found handed off since the last
// round, and, with query, those the outbox lists as due (retries, other
// instances' alerts, the end of a group wait).
func (d *Dispatcher) due(ctx context.Context, query bool) (map[string][]*Entry, error) {
	now := d.o.Now()
	es := d.takeFresh()
	if query {
		listed, err := d.o.Outbox.Due(ctx, now, dueBatch)
		if err != nil {
			return nil, fmt.Errorf("delivery: outbox: %w", err)
		}
		have := map[string]bool{}
		for _, e := range listed {
			have[e.Alert.ID] = true
		}
		for _, e := range es { // listed as they are now, at least as new
			if !have[e.Alert.ID] {
				listed = append(listed, e)
			}
		}
		es = listed
	}
	slices.SortFunc(es, func(a, b *Entry) int {
		return cmp.Or(a.Alert.Created.Compare(b.Alert.Created), cmp.Compare(a.Alert.ID, b.Alert.ID))
	})
	work := map[string][]*Entry{}
	for _, e := range es {
		for _, name := range receiverNames(e) {
			if a := e.Receivers[name]; a.State == Pending && !a.Next.After(now) && (!a.Lease.After(now) || d.preclaimed(e.Alert.ID, name, a, now)) {
				work[name] = append(work[name], clone(e))
			}
		}
	}
	return work, nil
}

// Flush delivers every alert that is due, to every receiver still waiting
// for it, and returns when each receiver had its turn: the Housekeeping
// timer calls it (retries, and a process whose Sender stopped), and so
// does replay. Each receiver is served on its own, at the same time as
// the others; each send has a deadline (Options.SendTimeout); a receiver
// that fails has the rest of its alerts put off to its next attempt, so a
// receiver that hangs costs a Flush one deadline, not one per alert.
func (d *Dispatcher) Flush(ctx context.Context) (Report, error) {
	work, err := d.due(ctx, true)
	if err != nil {
		return Report{}, err
	}
	var (
		mu   sync.Mutex
		rep  Report
		errs []error
		wg   sync.WaitGroup
	)
	for name, es := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := d.serve(ctx, name, es)
			mu.Lock()
			defer mu.Unlock()
			rep.add(r)
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return rep, errors.Join(errs...)
}

// serve sends one receiver its due alerts, in order, a chunk at a time.
// When one is not accepted and is to be retried (the receiver is down,
// slow or throttling), the rest are put off until that retry: they are not
// tried against a receiver that just failed, and they leave the due list
// to the alerts of other receivers.
func (d *Dispatcher) serve(ctx context.Context, name string, es []*Entry) (Report, error) {
	var rep Report
	// An alert listed twice (read from the outbox and handed on by Found,
	// each copy of some version) is claimed and sent once: the claims of
	// two copies, in one chunk or two, would meet each other's write.
	seen := make(map[string]bool, len(es))
	es = slices.DeleteFunc(slices.Clone(es), func(e *Entry) bool {
		dup := seen[e.Alert.ID]
		seen[e.Alert.ID] = true
		return dup
	})
	for len(es) > 0 {
		if ctx.Err() != nil {
			return rep, nil // stopping: the rest stay due
		}
		chunk := es[:min(len(es), sendChunk)]
		es = es[len(chunk):]
		r, next, err := d.serveChunk(ctx, name, chunk)
		rep.add(r)
		if err != nil {
			return rep, err
		}
		if !next.IsZero() {
			if ctx.Err() != nil {
				return rep, nil
			}
			n, err := d.postpone(ctx, name, es, next)
			rep.Retrying += n
			return rep, err
		}
	}
	return rep, nil
}

// postpone moves the next attempt of a receiver's alerts to until, where
// it is earlier and no sender holds them; it returns how many it moved.
func (d *Dispatcher) postpone(ctx context.Context, name string, es []*Entry, until time.Time) (int, error) {
	now := d.o.Now()
	written, err := d.updateAll(ctx, es, func(x *Entry) bool {
		a := x.Receivers[name]
		if a == nil || a.State != Pending || !a.Next.Before(until) || a.Lease.After(now) {
			return false
		}
		a.Next = until
		return true
	})
	return len(written), err
}

// updateAll applies change to entries and writes those it changed, in as
// few requests as the outbox allows; entries another writer changed first
// (another receiver's worker, another instance) are read again and change
// applied to what is there now. change says whether there is anything to
// write; it touches only what its caller owns (one receiver's attempt), so
// concurrent senders of one alert never undo each other's records. It
// returns the entries written, as written.
func (d *Dispatcher) updateAll(ctx context.Context, es []*Entry, change func(*Entry) bool) ([]*Entry, error) {
	var out, todo []*Entry
	for _, e := range es {
		if change(e) {
			todo = append(todo, e)
		}
	}
	for round := 0; len(todo) > 0; round++ {
		if round == 16 {
			return out, fmt.Errorf("delivery: outbox: %d entries: too many concurrent writers", len(todo))
		}
		errs, err := d.o.Outbox.PutAll(ctx, todo)
		if err != nil {
			return out, fmt.Errorf("delivery: outbox: %w", err)
		}
		var again []Ref
		for i, e := range todo {
			switch {
			case errs[i] == nil:
				out = append(out, e)
			case errors.Is(errs[i], ErrConflict):
				again = append(again, Ref{Shard: EntryShard(e), Key: e.Alert.ID})
			default:
				return out, fmt.Errorf("delivery: outbox: %w", errs[i])
			}
		}
		if len(again) == 0 {
			break
		}
		cur, err := d.o.Outbox.GetAll(ctx, again)
		if err != nil {
			return out, fmt.Errorf("delivery: outbox: %w", err)
		}
		todo = todo[:0]
		for _, r := range again {
			if e := cur[r.Key]; e != nil && change(e) {
				todo = append(todo, e)
			}
		}
	}
	return out, nil
}

// serveChunk tries one receiver for a chunk of its due alerts: it claims
// those due that nobody else holds (a lease written with each entry's
// version, one write per outbox partition for the chunk), mutes those a
// silence added since holds and gives up on those too old, sends the
// claimed ones in turn, each within the send deadline, and records their
// outcomes together. When the receiver refuses one with a retry, the rest
// of the chunk is not sent but released, put off until that retry, which
// it returns.
func (d *Dispatcher) serveChunk(ctx context.Context, name string, es []*Entry) (Report, time.Time, error) {
	var rep Report
	now := d.o.Now()
	lease := d.newLease()
	n := d.o.Receivers[name]
	free := func(a *Attempt) bool { return a != nil && a.State == Pending && !a.Lease.After(now) }
	what := map[string]string{} // by alert ID: what the last application of claim did
	muted := map[string]string{}
	leaseOf := map[string]string{} // by alert ID: the lease it is sent under
	// Alerts Found recorded claimed by this process, with the lease time
	// a send needs, are claimed already: no write. The pre-claim is taken
	// for this send, so no other round of this process sends the alert
	// again from a copy read before this send's outcome was recorded.
	var claimed, rest []*Entry
	for _, e := range es {
		if a := e.Receivers[name]; a != nil && e.Version != "" && a.State == Pending && !a.Next.After(now) &&
			!now.Add(d.o.SendTimeout).After(a.Lease) && d.mutedBy(e.Alert) == "" && now.Sub(e.Alert.Created) <= d.o.GiveUp && n != nil &&
			d.takePreclaim(e.Alert.ID, name, a, now) {
			claimed = append(claimed, e)
			leaseOf[e.Alert.ID] = a.LeaseBy
			continue
		}
		rest = append(rest, e)
	}
	took := map[string]string{} // by alert ID: the pre-claim claim took to replace
	claim := func(x *Entry) bool {
		id := x.Alert.ID
		delete(what, id)
		a := x.Receivers[name]
		if a == nil || a.State != Pending || a.Next.After(now) {
			return false // not due
		}
		if a.Lease.After(now) && a.LeaseBy != lease && (took[id] == "" || took[id] != a.LeaseBy) {
			// Someone is sending it (another instance, another round of
			// this process), unless it is this process's pre-claim no
			// send took yet: then this claim takes it. A lease of this
			// very claim is this claim's own write, whose answer was lost
			// (the write is then read again): it is taken again, not left
			// to run out.
			if !d.takePreclaim(id, name, a, now) {
				return false
			}
			took[id] = a.LeaseBy
		}
		if by := d.mutedBy(x.Alert); by != "" {
			// A silence added since the alert was recorded: what no
			// sender holds is muted, for every receiver.
			for _, r := range x.Receivers {
				if free(r) {
					r.State, r.Done = Muted, now
				}
			}
			if x.MutedBy == "" {
				x.MutedBy = by
			}
			what[id], muted[id] = "muted", by
			return true
		}
		if age := now.Sub(x.Alert.Created); age > d.o.GiveUp {
			a.State, a.Done, a.LastError = Undelivered, now, fmt.Sprintf("gave up after %s: ", d.o.GiveUp)+a.LastError
			what[id] = "gave up"
			return true
		}
		if n == nil {
			a.State, a.Done, a.LastError = Undelivered, now, "receiver "+name+" is not configured"
			what[id] = "not configured"
			return true
		}
		a.Lease, a.LeaseBy = now.Add(d.o.Lease), lease
		what[id] = "claimed"
		return true
	}
	written, err := d.updateAll(ctx, rest, claim)
	if len(took) > 0 { // give back the pre-claims of claims not written
		kept := map[string]bool{}
		for _, e := range written {
			kept[e.Alert.ID] = true
		}
		for id, l := range took {
			if !kept[id] {
				d.dropPreclaim(id, name, l)
			}
		}
	}
	if err != nil {
		return rep, time.Time{}, err
	}
	for _, e := range written {
		log := d.o.Log.With().Str("alert", e.Alert.ID).Str("rule", e.Alert.Rule).Str("receiver", name).Logger()
		switch what[e.Alert.ID] {
		case "muted":
			rep.Muted++
			log.Info().Str("muted_by", muted[e.Alert.ID]).Msg("alert muted before it was sent")
		case "gave up":
			rep.Undelivered++
			a := e.Receivers[name]
			log.Error().Int("attempts", a.Attempts).Str("last_error", a.LastError).Msg("alert undelivered: gave up")
		case "not configured":
			rep.Undelivered++
			log.Error().Msg("receiver " + name + " is not configured")
		case "claimed":
			claimed = append(claimed, e)
			leaseOf[e.Alert.ID] = lease
		}
	}
	slices.SortFunc(claimed, func(a, b *Entry) int { // in order, the pre-claimed among the others
		return cmp.Or(a.Alert.Created.Compare(b.Alert.Created), cmp.Compare(a.Alert.ID, b.Alert.ID))
	})
	if len(claimed) == 0 {
		return rep, time.Time{}, nil
	}

	results := map[string]Attempt{}
	var next time.Time // the receiver refused with a retry: leave it until then
	for _, e := range claimed {
		a := e.Receivers[name]
		res := *a
		res.Lease, res.LeaseBy = time.Time{}, ""
		if ctx.Err() != nil || !next.IsZero() || d.o.Now().Add(d.o.SendTimeout).After(a.Lease) {
			// Not sent: released (its lease too short for a send, or the
			// receiver failed, or stopping), put off if the receiver failed.
			if !next.IsZero() && res.Next.Before(next) {
				res.Next = next
				rep.Retrying++
			}
			results[e.Alert.ID] = res
			continue
		}
		log := d.o.Log.With().Str("alert", e.Alert.ID).Str("rule", e.Alert.Rule).Str("receiver", name).Logger()
		sctx, cancel := context.WithTimeout(ctx, d.o.SendTimeout)
		err := n.Notify(sctx, e.Alert)
		if err != nil && ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
			err = notify.Temporary(fmt.Errorf("%s: no answer within %s (%w)", name, d.o.SendTimeout, err), 0)
		}
		cancel()
		at := d.o.Now()
		res.Attempts++
		switch retry, after := notify.Retryable(err); {
		case err == nil:
			res.State, res.Done, res.LastError = Delivered, at, ""
			rep.Delivered++
			log.Info().Int("attempts", res.Attempts).Msg("alert delivered")
		case retry:
			res.LastError = notify.Redact(err.Error())
			res.Next = at.Add(max(after, d.backoff(res.Attempts)))
			rep.Retrying++
			if ctx.Err() == nil {
				next = res.Next
			}
			log.Warn().Int("attempts", res.Attempts).Time("next", res.Next).Str("error", res.LastError).Msg("alert not delivered yet; will retry")
		default:
			res.State, res.Done, res.LastError = Undelivered, at, notify.Redact(err.Error())
			rep.Undelivered++
			log.Error().Int("attempts", res.Attempts).Str("error", res.LastError).Msg("alert undelivered: the receiver refused it")
		}
		results[e.Alert.ID] = res
	}
	// What was sent is recorded even when the sender is stopping (Stop
	// waits for it), if the outbox answers within a moment; if not, the
	// leases run out and the alerts are sent again (at least once).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err = d.updateAll(rctx, claimed, func(x *Entry) bool {
		cur := x.Receivers[name]
		if cur == nil || (cur.LeaseBy != leaseOf[x.Alert.ID] && !free(cur)) {
			return false // another sender took it over: its record stands
		}
		*cur = results[x.Alert.ID]
		return true
	})
	return rep, next, err
}

// SenderOptions configure a Sender.
type SenderOptions struct {
	// Interval is how often the outbox is read for alerts due (retries,
	// alerts other instances recorded, the end of a group wait); default
	// 10s. Alerts this process records wake the sender at once.
	Interval time.Duration
}

// Sender delivers the outbox in the background, off the ingest path: a
// loop that reads what is due, whenever Found records an alert and every
// Interval, and hands each receiver its alerts in a worker of its own. A
// receiver whose worker is still busy (a slow or hung receiver, within
// its send deadline) is skipped by the rounds meanwhile; the others go on.
// Like Alertmanager's dispatch.Dispatcher: Run until Stop.
type Sender struct {
	d        *Dispatcher
	interval time.Duration

	mu      sync.Mutex
	busy    map[string]bool
	missed  map[string]bool // work skipped while the receiver's worker was busy
	cancel  context.CancelFunc
	done    chan struct{}
	stopped bool
	again   chan struct{}
	workers sync.WaitGroup
}

// NewSender returns a sender of d's outbox.
func (d *Dispatcher) NewSender(o SenderOptions) *Sender {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	return &Sender{d: d, interval: o.Interval, busy: map[string]bool{}, missed: map[string]bool{}, again: make(chan struct{}, 1)}
}

// Run sends until ctx is done or Stop is called; it returns after the
// workers have stopped. A send under way when it stops is cancelled: its
// alert stays pending, and is sent again when its lease runs out.
func (s *Sender) Run(ctx context.Context) {
	s.mu.Lock()
	if s.stopped || s.done != nil {
		s.mu.Unlock()
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	s.mu.Unlock()
	s.d.senders.Add(1)
	defer s.d.senders.Add(-1)
	defer close(s.done)
	defer s.workers.Wait()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	query := true
	for {
		s.round(ctx, query)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			query = true
		case <-s.d.recorded:
			query = false // what Found handed off
		case <-s.again:
			query = true
		}
	}
}

// Stop ends Run and waits for it.
func (s *Sender) Stop() {
	s.mu.Lock()
	s.stopped = true
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// round reads what is due (what Found handed off, and with query what the
// outbox lists) and starts a worker for every receiver that has something
// due and no worker running; a receiver whose worker is busy gets another
// round, with a query, when it is done.
func (s *Sender) round(ctx context.Context, query bool) {
	work, err := s.d.due(ctx, query)
	if err != nil {
		if ctx.Err() == nil {
			s.d.o.Log.Warn().Err(err).Msg("sender: reading the outbox failed; trying again")
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, es := range work {
		if s.busy[name] {
			s.missed[name] = true
			continue
		}
		s.busy[name] = true
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			_, err := s.d.serve(ctx, name, es)
			if err != nil && ctx.Err() == nil {
				s.d.o.Log.Warn().Err(err).Str("receiver", name).Msg("sender: recording a delivery failed; trying again")
			}
			s.mu.Lock()
			delete(s.busy, name)
			missed := s.missed[name]
			delete(s.missed, name)
			s.mu.Unlock()
			if missed || len(es) >= dueBatch {
				select { // there may be more, or others waited while this worker was busy
				case s.again <- struct{}{}:
				default:
				}
			}
		}()
	}
}

// Prune deletes from the outbox what is older than the retention
// (Options.Retention): alerts no receiver waits for, decisions about
// findings, and cooldowns gone quiet. The Housekeeping timer calls it.
func (d *Dispatcher) Prune(ctx context.Context) (Pruned, error) {
	p, err := d.o.Outbox.Prune(ctx, d.o.Now().Add(-d.o.Retention))
	if err != nil {
		return p, fmt.Errorf("delivery: prune: %w", err)
	}
	return p, nil
}

package delivery

import (
	"context"
	"errors"
	"fmt"
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

// due reads the alerts due now and sorts them by receiver: for each
// receiver, the IDs of the alerts it is due, oldest first.
func (d *Dispatcher) due(ctx context.Context) (map[string][]string, error) {
	now := d.o.Now()
	es, err := d.o.Outbox.Due(ctx, now, dueBatch)
	if err != nil {
		return nil, fmt.Errorf("delivery: outbox: %w", err)
	}
	work := map[string][]string{}
	for _, e := range es {
		for _, name := range receiverNames(e) {
			if a := e.Receivers[name]; a.State == Pending && !a.Next.After(now) && !a.Lease.After(now) {
				work[name] = append(work[name], e.Alert.ID)
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
	work, err := d.due(ctx)
	if err != nil {
		return Report{}, err
	}
	var (
		mu   sync.Mutex
		rep  Report
		errs []error
		wg   sync.WaitGroup
	)
	for name, ids := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := d.serve(ctx, name, ids)
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

// serve sends one receiver its due alerts, in order. When one is not
// accepted and is to be retried (the receiver is down, slow or throttling),
// the rest are put off until that retry: they are not tried against a
// receiver that just failed, and they leave the due list to the alerts of
// other receivers.
func (d *Dispatcher) serve(ctx context.Context, name string, ids []string) (Report, error) {
	var rep Report
	for i, id := range ids {
		if ctx.Err() != nil {
			return rep, nil // stopping: the rest stay due
		}
		st, next, err := d.send(ctx, id, name)
		if err != nil {
			return rep, err
		}
		switch st {
		case Delivered:
			rep.Delivered++
		case Undelivered:
			rep.Undelivered++
		case Muted:
			rep.Muted++
		case Pending:
			rep.Retrying++
			if ctx.Err() != nil {
				return rep, nil
			}
			n, err := d.postpone(ctx, name, ids[i+1:], next)
			rep.Retrying += n
			return rep, err
		}
	}
	return rep, nil
}

// postpone moves the next attempt of a receiver's alerts to until, where
// it is earlier and no sender holds them; it returns how many it moved.
func (d *Dispatcher) postpone(ctx context.Context, name string, ids []string, until time.Time) (int, error) {
	n := 0
	for _, id := range ids {
		e, err := d.o.Outbox.Get(ctx, id)
		if err != nil {
			return n, fmt.Errorf("delivery: outbox: %w", err)
		}
		if e == nil {
			continue
		}
		moved := false
		err = d.update(ctx, e, func(x *Entry) bool {
			a := x.Receivers[name]
			if a == nil || a.State != Pending || !a.Next.Before(until) || a.Lease.After(d.o.Now()) {
				return false
			}
			a.Next, moved = until, true
			return true
		})
		if err != nil {
			return n, err
		}
		if moved {
			n++
		}
	}
	return n, nil
}

// update applies change to e and writes it; when another writer changed
// the entry first (another receiver's worker, another instance), it reads
// it again and applies change to what is there now. change says whether
// there is anything to write; it touches only what its caller owns (one
// receiver's attempt), so concurrent senders of one alert never undo each
// other's records.
func (d *Dispatcher) update(ctx context.Context, e *Entry, change func(*Entry) bool) error {
	for i := 0; i < 16; i++ {
		if !change(e) {
			return nil
		}
		err := d.o.Outbox.Put(ctx, e)
		if !errors.Is(err, ErrConflict) {
			if err != nil {
				return fmt.Errorf("delivery: outbox: %w", err)
			}
			return nil
		}
		cur, err := d.o.Outbox.Get(ctx, e.Alert.ID)
		if err != nil {
			return fmt.Errorf("delivery: outbox: %w", err)
		}
		if cur == nil {
			return nil
		}
		e = cur
	}
	return fmt.Errorf("delivery: outbox %s: too many concurrent writers", e.Alert.ID)
}

// send tries one receiver of one alert, if it is due and nobody else holds
// it: claim (a lease written with the entry's version), notify within the
// send deadline, record. It returns the receiver's state after it (""
// when it did nothing) and, when that is Pending, the next attempt.
func (d *Dispatcher) send(ctx context.Context, id, name string) (State, time.Time, error) {
	for try := 0; ; try++ {
		st, next, claimed, err := d.sendOnce(ctx, id, name)
		if claimed || err != nil || try == 3 {
			return st, next, err
		}
		// The claim met another writer's change: maybe another sender
		// claimed this receiver, maybe another receiver's worker recorded
		// its own attempt. Read again and see.
	}
}

// sendOnce is one try of send; claimed is false when claiming met a
// conflict.
func (d *Dispatcher) sendOnce(ctx context.Context, id, name string) (_ State, _ time.Time, claimed bool, _ error) {
	now := d.o.Now()
	e, err := d.o.Outbox.Get(ctx, id)
	if err != nil || e == nil {
		return "", time.Time{}, true, err
	}
	a := e.Receivers[name]
	if a == nil || a.State != Pending || a.Next.After(now) || a.Lease.After(now) {
		return "", time.Time{}, true, nil // not due, or someone (maybe another worker of this process) is sending it
	}
	log := d.o.Log.With().Str("alert", id).Str("rule", e.Alert.Rule).Str("receiver", name).Logger()
	free := func(a *Attempt) bool { return a != nil && a.State == Pending && !a.Lease.After(now) }
	if by := d.mutedBy(e.Alert); by != "" {
		// A silence added since the alert was recorded: what no sender
		// holds is muted, for every receiver.
		log.Info().Str("muted_by", by).Msg("alert muted before it was sent")
		return Muted, time.Time{}, true, d.update(ctx, e, func(x *Entry) bool {
			changed := false
			for _, r := range x.Receivers {
				if free(r) {
					r.State, r.Done, changed = Muted, now, true
				}
			}
			if changed && x.MutedBy == "" {
				x.MutedBy = by
			}
			return changed
		})
	}
	giveUp := func(why string) (State, time.Time, bool, error) {
		return Undelivered, time.Time{}, true, d.update(ctx, e, func(x *Entry) bool {
			a := x.Receivers[name]
			if !free(a) {
				return false
			}
			a.State, a.Done, a.LastError = Undelivered, now, why+a.LastError
			return true
		})
	}
	if age := now.Sub(e.Alert.Created); age > d.o.GiveUp {
		log.Error().Int("attempts", a.Attempts).Str("last_error", a.LastError).Msg("alert undelivered: gave up")
		return giveUp(fmt.Sprintf("gave up after %s: ", d.o.GiveUp))
	}
	n := d.o.Receivers[name]
	if n == nil {
		log.Error().Msg("receiver " + name + " is not configured")
		a.LastError = ""
		return giveUp("receiver " + name + " is not configured")
	}
	lease := fmt.Sprintf("%s/%d", d.o.Instance, d.seq.Add(1))
	a.Lease, a.LeaseBy = now.Add(d.o.Lease), lease
	if err := d.o.Outbox.Put(ctx, e); err != nil {
		if errors.Is(err, ErrConflict) {
			return "", time.Time{}, false, nil
		}
		return "", time.Time{}, true, fmt.Errorf("delivery: outbox: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, d.o.SendTimeout)
	err = n.Notify(sctx, e.Alert)
	if err != nil && ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		err = notify.Temporary(fmt.Errorf("%s: no answer within %s (%w)", name, d.o.SendTimeout, err), 0)
	}
	cancel()
	now = d.o.Now()
	res := *a
	res.Attempts++
	res.Lease, res.LeaseBy = time.Time{}, ""
	state := Delivered
	switch retry, after := notify.Retryable(err); {
	case err == nil:
		res.State, res.Done, res.LastError = Delivered, now, ""
		log.Info().Int("attempts", res.Attempts).Msg("alert delivered")
	case retry:
		res.LastError = notify.Redact(err.Error())
		res.Next = now.Add(max(after, d.backoff(res.Attempts)))
		state = Pending
		log.Warn().Int("attempts", res.Attempts).Time("next", res.Next).Str("error", res.LastError).Msg("alert not delivered yet; will retry")
	default:
		res.State, res.Done, res.LastError = Undelivered, now, notify.Redact(err.Error())
		state = Undelivered
		log.Error().Int("attempts", res.Attempts).Str("error", res.LastError).Msg("alert undelivered: the receiver refused it")
	}
	if ctx.Err() != nil {
		// Stopping: record what happened if the outbox still answers
		// within a moment; if not, the lease runs out and the alert is
		// sent again (at least once).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
	}
	return state, res.Next, true, d.update(ctx, e, func(x *Entry) bool {
		cur := x.Receivers[name]
		if cur == nil || (cur.LeaseBy != lease && !free(cur)) {
			return false // another sender took it over: its record stands
		}
		*cur = res
		return true
	})
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
	return &Sender{d: d, interval: o.Interval, busy: map[string]bool{}, again: make(chan struct{}, 1)}
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
	defer close(s.done)
	defer s.workers.Wait()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.d.recorded:
		case <-s.again:
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

// round reads what is due and starts a worker for every receiver that has
// something due and no worker running.
func (s *Sender) round(ctx context.Context) {
	work, err := s.d.due(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.d.o.Log.Warn().Err(err).Msg("sender: reading the outbox failed; trying again")
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ids := range work {
		if s.busy[name] {
			continue
		}
		s.busy[name] = true
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			rep, err := s.d.serve(ctx, name, ids)
			if err != nil && ctx.Err() == nil {
				s.d.o.Log.Warn().Err(err).Str("receiver", name).Msg("sender: recording a delivery failed; trying again")
			}
			s.mu.Lock()
			delete(s.busy, name)
			s.mu.Unlock()
			if len(ids) == dueBatch || rep.Delivered+rep.Undelivered+rep.Muted > 0 {
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

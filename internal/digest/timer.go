package digest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/notify"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Hour is the local hour from which a period's digest is due: every day
// for the daily digest, Mondays for the weekly, the 1st for the monthly.
// A run later that day catches up.
const Hour = 8

// Due reports whether a period's digest is due at local (a time in the
// configured zone): from Hour, every day (daily), on Mondays (weekly), on
// the 1st (monthly).
func Due(p Period, local time.Time) bool {
	if local.Hour() < Hour {
		return false
	}
	switch p {
	case Weekly:
		return local.Weekday() == time.Monday
	case Monthly:
		return local.Day() == 1
	}
	return true
}

// sentRule keys the state entity that records, per period, the receivers
// a digest reached: a retry after a partial failure sends only to the
// others. Claims covers it (its name starts with markerRule).
const sentRule = markerRule + "_sent"

func sentKey(p Period, start time.Time) state.Key {
	return state.Key{Rule: sentRule, Group: string(p), Block: start.Unix()}
}

// sentTo returns the receivers a period's digest already reached.
func sentTo(ctx context.Context, store state.Store, p Period, start time.Time) (map[string]bool, error) {
	k := sentKey(p, start)
	got, err := store.Get(ctx, []state.Key{k})
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	if e := got[k]; e != nil {
		for name := range e.Tally {
			done[name] = true
		}
	}
	return done, nil
}

// markSent records that a period's digest reached a receiver.
func markSent(ctx context.Context, store state.Store, p Period, start time.Time, name string) error {
	_, err := store.Update(ctx, []state.Key{sentKey(p, start)}, func(_ state.Key, e *state.Entity) bool {
		if e.Tally[name] > 0 {
			return false
		}
		if e.Tally == nil {
			e.Tally = map[string]int64{}
		}
		e.Tally[name] = 1
		return true
	})
	return err
}

// Timer sends each period's digest once; Run is the Digest timer
// function, run hourly. In Zone, the daily digest (of the previous day)
// is due every day from 08:00, the weekly (of the previous Monday–Sunday)
// on Mondays from 08:00, the monthly (of the previous month) on the 1st
// from 08:00; a run missed at 08:00 catches up later that day.
//
// For each digest due, OnceAt claims it with a lease (however many timers
// and instances run at once, one sends; a run that dies holding it leaves
// it to a run after the lease) and Done records it sent. It is computed
// and sent to the receivers routes pick for digests (receivers that
// cannot take digests are skipped, and said so). When a send fails, the
// claim is released so the next run retries, and only to the receivers
// that did not get it.
type Timer struct {
	Store     state.Store
	Outbox    delivery.Outbox // the findings of the period; nil: none
	Receivers map[string]delivery.Notifier
	Routes    []delivery.Route
	Zone      *time.Location   // default UTC
	Now       func() time.Time // default time.Now
	Lease     time.Duration    // default DefaultLease
	Log       zerolog.Logger
}

// Run sends the digests due now. The lines returned say what was sent.
func (t *Timer) Run(ctx context.Context) ([]string, error) {
	zone, now := t.Zone, t.Now
	if zone == nil {
		zone = time.UTC
	}
	if now == nil {
		now = time.Now
	}
	at := now()
	local := at.In(zone)
	var lines []string
	var errs []error
	for _, p := range []Period{Daily, Weekly, Monthly} {
		if !Due(p, local) {
			continue
		}
		l, err := t.send(ctx, p, at, zone)
		lines = append(lines, l...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(lines) == 0 && len(errs) == 0 {
		lines = append(lines, fmt.Sprintf("kvwatch: digest: nothing due at %s %s (daily from %02d:00, weekly on Mondays, monthly on the 1st)",
			local.Format("Mon 2006-01-02 15:04"), zone, Hour))
	}
	return lines, errors.Join(errs...)
}

// send claims, computes and sends one period's digest.
func (t *Timer) send(ctx context.Context, p Period, at time.Time, zone *time.Location) ([]string, error) {
	store, log := t.Store, t.Log
	lease := t.Lease
	if lease <= 0 {
		lease = DefaultLease
	}
	start, _ := Bounds(p, at, zone)
	id := id(p, start)
	prefix := "kvwatch: digest " + id + ": "
	// The claim is leased: a run that dies before it sends or releases
	// holds the period only until the lease runs out, then a later run
	// sends it.
	first, err := OnceAt(ctx, store, p, start, at, lease)
	if err != nil {
		return nil, err
	}
	if !first {
		return []string{prefix + "already sent (or being sent by another run)"}, nil
	}
	var lines []string
	targets, skipped := Targets(t.Routes, t.Receivers)
	for _, name := range skipped {
		lines = append(lines, prefix+"receiver "+name+" does not take digests, skipped")
		log.Warn().Str("digest", id).Str("receiver", name).Msg("receiver does not take digests, skipped")
	}
	if len(targets) == 0 {
		lines = append(lines, prefix+"no receiver takes digests (route them with rules: [digest] or tags: [digest]); not sent")
		log.Warn().Str("digest", id).Msg("no receiver takes digests; not sent")
		return lines, Done(ctx, store, p, start)
	}
	release := func(cause error) error {
		if err := Release(ctx, store, p, start); err != nil {
			return errors.Join(cause, err)
		}
		return cause
	}
	r, err := Compute(ctx, store, t.Outbox, p, at, zone)
	if err != nil {
		return lines, release(err)
	}
	done, err := sentTo(ctx, store, p, start)
	if err != nil {
		return lines, release(fmt.Errorf("digest %s: read the receivers it reached: %w", id, err))
	}
	var failed []error
	for _, tg := range targets {
		if done[tg.Name] {
			lines = append(lines, prefix+"already sent to "+tg.Name)
			continue
		}
		if err := tg.Sender.SendDigest(ctx, r); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", tg.Name, err))
			lines = append(lines, prefix+"sending to "+tg.Name+" failed: "+notify.Redact(err.Error()))
			log.Error().Str("digest", id).Str("receiver", tg.Name).Str("error", notify.Redact(err.Error())).Msg("digest not sent; the next run retries")
			continue
		}
		lines = append(lines, prefix+"sent to "+tg.Name)
		log.Info().Str("digest", id).Str("receiver", tg.Name).Msg("digest sent")
		if err := markSent(ctx, store, p, start, tg.Name); err != nil {
			// Sent, but not recorded: a retry could send it to this
			// receiver again.
			failed = append(failed, fmt.Errorf("%s: sent, but not recorded: %w", tg.Name, err))
		}
	}
	if len(failed) > 0 {
		return lines, release(fmt.Errorf("digest %s: released for the next run: %w", id, errors.Join(failed...)))
	}
	return lines, Done(ctx, store, p, start)
}

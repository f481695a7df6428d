package digest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/state"
)

// Period is what a digest covers.
type Period string

// Periods.
const (
	Daily   Period = "daily"   // the previous local day
	Weekly  Period = "weekly"  // the previous Monday–Sunday
	Monthly Period = "monthly" // the previous calendar month
)

// ParsePeriod reads a period name.
func ParsePeriod(s string) (Period, error) {
	switch p := Period(s); p {
	case Daily, Weekly, Monthly:
		return p, nil
	}
	return "", fmt.Errorf("unknown digest period %q (daily, weekly or monthly)", s)
}

// Bounds returns the last whole period before at, in zone: [start, end).
// Days are calendar days of the zone, so a day with a daylight-saving
// change is 23 or 25 hours long.
func Bounds(p Period, at time.Time, zone *time.Location) (start, end time.Time) {
	if zone == nil {
		zone = time.UTC
	}
	l := at.In(zone)
	y, m, d := l.Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, zone)
	switch p {
	case Weekly:
		monday := today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7))
		return monday.AddDate(0, 0, -7), monday
	case Monthly:
		first := time.Date(y, m, 1, 0, 0, 0, 0, zone)
		return first.AddDate(0, -1, 0), first
	}
	return today.AddDate(0, 0, -1), today
}

// Following returns an instant at which Bounds gives the period that holds
// t: the start of the next period (used to preview the period of the
// newest record).
func Following(p Period, t time.Time, zone *time.Location) time.Time {
	if zone == nil {
		zone = time.UTC
	}
	l := t.In(zone)
	y, m, d := l.Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, zone)
	switch p {
	case Weekly:
		monday := today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7))
		return monday.AddDate(0, 0, 7)
	case Monthly:
		return time.Date(y, m, 1, 0, 0, 0, 0, zone).AddDate(0, 1, 0)
	}
	return today.AddDate(0, 0, 1)
}

// markerRule holds the once-per-period markers.
const markerRule = "_digest"

// Claims reports whether a state key is one of the digest's claims (its
// once-per-period markers, and the record of which receivers a period's
// digest reached, whose rule names start with "_digest"): they need
// compare-and-set, which a store that logs changes per stream does not
// give, so such a store keeps them apart (tablestore.JournalOptions.Direct).
func Claims(k state.Key) bool { return strings.HasPrefix(k.Rule, markerRule) }

func markerKey(p Period, start time.Time) state.Key {
	return state.Key{Rule: markerRule, Group: string(p), Block: start.Unix()}
}

// DefaultLease is how long a claim holds a period's digest while it is
// computed and sent: a claim neither marked done (Done) nor released
// (Release) when it runs out — its claimer crashed between claim and
// send — can be claimed again, so the period's digest is sent by a later
// run rather than lost.
const DefaultLease = 30 * time.Minute

// Marker tallies: a claim is its token (1) and "lease" (the unix second
// it runs out); a digest sent is "sent" (1). A marker written before
// leases existed (a token, no lease) counts as sent.
const (
	tallyLease = "lease"
	tallySent  = "sent"
)

// Once claims the digest of a period, with a lease of DefaultLease from
// the wall clock: see OnceAt.
func Once(ctx context.Context, store state.Store, p Period, periodStart time.Time) (first bool, err error) {
	return OnceAt(ctx, store, p, periodStart, time.Now(), DefaultLease)
}

// OnceAt claims the digest of a period until now+lease: first is true for
// exactly one caller however many timers, instances or retries ask at
// once. The period is claimable when no claim is recorded, or when the
// recorded one is neither done nor within its lease. The marker is written
// through Store.Update (compare-and-set), and the claim carries a random
// token, so the caller knows whether the marker the store holds is its
// own — also when the store re-runs the function after a conflict, or
// after a write whose answer was lost. After sending, call Done; if the
// digest cannot be sent, Release.
func OnceAt(ctx context.Context, store state.Store, p Period, periodStart, now time.Time, lease time.Duration) (first bool, err error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, fmt.Errorf("digest: %w", err)
	}
	token := "claim:" + hex.EncodeToString(b[:])
	k := markerKey(p, periodStart)
	got, err := store.Update(ctx, []state.Key{k}, func(_ state.Key, e *state.Entity) bool {
		if e.Tally[token] == 1 {
			return false // ours already (a re-run after a lost answer)
		}
		if len(e.Tally) > 0 && (e.Tally[tallySent] > 0 || e.Tally[tallyLease] == 0 || e.Tally[tallyLease] > now.Unix()) {
			return false // sent, or claimed by a run whose lease has not run out
		}
		e.Tally = map[string]int64{token: 1, tallyLease: now.Add(lease).Unix()}
		return true
	})
	if err != nil {
		return false, fmt.Errorf("digest: claim %s digest of %s: %w", p, periodStart.Format(time.DateOnly), err)
	}
	e := got[k]
	return e != nil && e.Tally[token] == 1, nil
}

// Done records that a period's digest was sent: it is never claimed again.
func Done(ctx context.Context, store state.Store, p Period, periodStart time.Time) error {
	k := markerKey(p, periodStart)
	_, err := store.Update(ctx, []state.Key{k}, func(_ state.Key, e *state.Entity) bool {
		if e.Tally[tallySent] > 0 {
			return false
		}
		e.Tally = map[string]int64{tallySent: 1}
		return true
	})
	if err != nil {
		return fmt.Errorf("digest: mark %s digest of %s sent: %w", p, periodStart.Format(time.DateOnly), err)
	}
	return nil
}

// Release gives up a claim (the digest could not be sent): the next Once
// for the period claims it again. A digest marked Done stays done.
func Release(ctx context.Context, store state.Store, p Period, periodStart time.Time) error {
	k := markerKey(p, periodStart)
	_, err := store.Update(ctx, []state.Key{k}, func(_ state.Key, e *state.Entity) bool {
		if len(e.Tally) == 0 || e.Tally[tallySent] > 0 {
			return false
		}
		e.Tally = nil
		return true
	})
	if err != nil {
		return fmt.Errorf("digest: release %s digest of %s: %w", p, periodStart.Format(time.DateOnly), err)
	}
	return nil
}

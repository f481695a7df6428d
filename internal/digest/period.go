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

// Once claims the digest of a period: first is true for exactly one caller
// however many timers, instances or retries ask at once. The marker is
// written with insert semantics through Store.Update: the ApplyFunc changes
// the entity only while no claim is recorded, and the claim carries a
// random token, so the caller knows whether the marker the store holds is
// its own — also when the store re-runs the function after a conflict, or
// after a write whose answer was lost.
func Once(ctx context.Context, store state.Store, p Period, periodStart time.Time) (first bool, err error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, fmt.Errorf("digest: %w", err)
	}
	token := "claim:" + hex.EncodeToString(b[:])
	k := markerKey(p, periodStart)
	got, err := store.Update(ctx, []state.Key{k}, func(_ state.Key, e *state.Entity) bool {
		if len(e.Tally) > 0 {
			return false // claimed before
		}
		e.Tally = map[string]int64{token: 1}
		return true
	})
	if err != nil {
		return false, fmt.Errorf("digest: claim %s digest of %s: %w", p, periodStart.Format(time.DateOnly), err)
	}
	e := got[k]
	return e != nil && e.Tally[token] == 1, nil
}

// Release gives up a claim (the digest could not be sent): the next Once
// for the period claims it again.
func Release(ctx context.Context, store state.Store, p Period, periodStart time.Time) error {
	k := markerKey(p, periodStart)
	_, err := store.Update(ctx, []state.Key{k}, func(_ state.Key, e *state.Entity) bool {
		if len(e.Tally) == 0 {
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

package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/digest"
)

// A run that claims a period's digest and dies before sending it (no
// Done, no Release) holds the period only for the claim's lease: a run
// within it leaves it alone, the next run after it sends the digest.
func TestDigestTimerCrashBetweenClaimAndSend(t *testing.T) {
	st := seeded(t)
	rcv := &fakeDigestReceiver{}
	receivers := map[string]delivery.Notifier{"ops": rcv}
	clk := &clock{t: at("2026-11-24 08:05", time.UTC)} // a Tuesday: the daily digest only
	start, _ := digest.Bounds(digest.Daily, clk.Now(), time.UTC)
	// The run that crashed: it claimed, and nothing more.
	if first, err := digest.OnceAt(context.Background(), st, digest.Daily, start, clk.Now(), digest.DefaultLease); err != nil || !first {
		t.Fatalf("claim: %v %v", first, err)
	}
	fn := digestTimer(st, delivery.NewMemory(), receivers, nil, time.UTC, clk.Now, zerolog.Nop())
	clk.Add(10 * time.Minute)
	lines, err := runTimer(t, fn)
	if err != nil || len(rcv.sent()) != 0 || !strings.Contains(strings.Join(lines, "\n"), "being sent by another run") {
		t.Fatalf("within the lease: %v %v, sent %v", lines, err, rcv.sent())
	}
	clk.Add(time.Hour) // the next hourly run
	if _, err := runTimer(t, fn); err != nil {
		t.Fatal(err)
	}
	if got := rcv.sent(); !slices.Equal(got, []string{"daily-2026-11-23"}) {
		t.Fatalf("after the lease: sent %v, want the daily digest of 23 November", got)
	}
	// Sent and marked done: later runs, past any lease, send nothing more.
	clk.Add(3 * time.Hour)
	if _, err := runTimer(t, fn); err != nil {
		t.Fatal(err)
	}
	if got := rcv.sent(); len(got) != 1 {
		t.Fatalf("sent %v, want once", got)
	}
}

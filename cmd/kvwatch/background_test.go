package main

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// runRecorder is a background job that records when Run was called.
type runRecorder struct{ ran, stop chan struct{} }

func newRunRecorder() *runRecorder {
	return &runRecorder{ran: make(chan struct{}), stop: make(chan struct{})}
}

func (r *runRecorder) Run(ctx context.Context) {
	close(r.ran)
	select {
	case <-ctx.Done():
	case <-r.stop:
	}
}
func (r *runRecorder) Stop() { close(r.stop) }

// The outbox sender's first round waits for the warm-ups (a fresh
// process's restore, which its first batch waits for), and not longer
// than its bound when one hangs.
func TestSenderWaitsForWarmUps(t *testing.T) {
	release := make(chan struct{})
	w := newWarmUp("state", func(ctx context.Context) error {
		select {
		case <-release:
		case <-ctx.Done(): // stopped: a failed test must not hang
		}
		return nil
	}, zerolog.Nop())
	next := newRunRecorder()
	jobs := []background{newAfterWarmUp(next, time.Hour, w), w}
	stop := startBackground(context.Background(), jobs)
	defer stop()
	select {
	case <-next.ran:
		t.Fatal("the sender started before the warm-up ended")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case <-next.ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the sender did not start once the warm-up ended")
	}

	hung := newWarmUp("outbox", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, zerolog.Nop())
	next = newRunRecorder()
	stop2 := startBackground(context.Background(), []background{newAfterWarmUp(next, 50*time.Millisecond, hung), hung})
	defer stop2()
	select {
	case <-next.ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a hung warm-up held the sender back past its bound")
	}
}

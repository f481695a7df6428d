package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
)

// background is long-lived work beside the handler or the consumer, like
// Alertmanager's dispatcher: Run until Stop.
type background interface {
	Run(ctx context.Context)
	Stop()
}

// startBackground runs each job in a goroutine of its own; the function it
// returns stops them all and waits for them.
func startBackground(ctx context.Context, jobs []background) (stop func()) {
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.Run(ctx)
		}()
	}
	return func() {
		var sw sync.WaitGroup
		for _, j := range jobs {
			sw.Add(1)
			go func() {
				defer sw.Done()
				j.Stop()
			}()
		}
		sw.Wait()
		wg.Wait()
	}
}

// warmUp is a job that runs once, when the process starts: it loads what
// the first batch would otherwise wait for. A warm-up that fails costs
// nothing but the time it saved: the first batch loads it.
type warmUp struct {
	name   string
	fn     func(context.Context) error
	log    zerolog.Logger
	stop   context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns
}

func newWarmUp(name string, fn func(context.Context) error, log zerolog.Logger) *warmUp {
	stop, cancel := context.WithCancel(context.Background())
	return &warmUp{name: name, fn: fn, log: log, stop: stop, cancel: cancel, done: make(chan struct{})}
}

// Run implements background.
func (w *warmUp) Run(ctx context.Context) {
	defer close(w.done)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	defer context.AfterFunc(w.stop, cancel)()
	start := time.Now()
	if err := w.fn(ctx); err != nil {
		w.log.Info().Err(err).Str("warm_up", w.name).Msg("warm-up failed: the first batch that needs it loads it")
		return
	}
	w.log.Debug().Str("warm_up", w.name).Dur("took", time.Since(start)).Msg("warmed up")
}

// Stop implements background.
func (w *warmUp) Stop() { w.cancel() }

// afterWarmUp runs next once the warm-ups have ended (loaded or failed),
// or wait after it started, whichever comes first. A fresh process's first
// batch waits for its restore; the outbox sender's first round, which sends
// every alert whose hold ran out while no instance read the outbox (dozens
// after a busy stretch), would share Azurite and the cores with it. Those
// alerts are late already, and the sender sends them a second later.
type afterWarmUp struct {
	warm   []*warmUp
	next   background
	wait   time.Duration
	stop   context.Context
	cancel context.CancelFunc
}

func newAfterWarmUp(next background, wait time.Duration, warm ...*warmUp) *afterWarmUp {
	stop, cancel := context.WithCancel(context.Background())
	return &afterWarmUp{warm: warm, next: next, wait: wait, stop: stop, cancel: cancel}
}

// Run implements background.
func (a *afterWarmUp) Run(ctx context.Context) {
	t := time.NewTimer(a.wait)
	defer t.Stop()
wait:
	for _, w := range a.warm {
		select {
		case <-w.done:
		case <-t.C:
			break wait
		case <-ctx.Done():
			return
		case <-a.stop.Done():
			return
		}
	}
	a.next.Run(ctx)
}

// Stop implements background.
func (a *afterWarmUp) Stop() {
	a.cancel()
	a.next.Stop()
}

// deliverySettings applies kvwatch.yaml's delivery settings that the
// dispatcher's other options do not carry.
func deliverySettings(cfg *config.File, o *delivery.Options) {
	o.SendTimeout = cfg.Delivery.SendTimeout.Duration
	o.Retention = cfg.Delivery.Retention.Duration
}

// envSilencePoll is how often serve and consume read the silences added
// at run time (default delivery.DefaultSilencePoll, 30s).
const envSilencePoll = "KVWATCH_SILENCE_POLL"

func silencePoll(getenv func(string) string) (time.Duration, error) {
	v := getenv(envSilencePoll)
	if v == "" {
		return delivery.DefaultSilencePoll, nil
	}
	d, err := config.ParseDuration(v)
	if err != nil || d <= 0 || d > time.Minute {
		return 0, fmt.Errorf("%s=%q: want a duration up to 1m (e.g. 30s)", envSilencePoll, v)
	}
	return d, nil
}

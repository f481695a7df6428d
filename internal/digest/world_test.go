package digest_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/notify"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// world is the demo replayed through ingest → stats → detection →
// delivery, in memory, on event time.
type world struct {
	store  *state.Memory
	outbox *delivery.Memory
	raw    [][]byte
}

// build replays the demo days given (the zero time: the standard day).
// Two receivers: "console" takes every alert; "secops" takes high and
// critical ones and answers the critical one with a temporary failure, so
// the digest shows a delivery still pending.
func build(tb testing.TB, days ...time.Time) *world {
	tb.Helper()
	ctx := context.Background()
	// The demo day's tenant: the pack and its exceptions (demo.Config), as
	// kvwatch replay and kvwatch digest run the day.
	p, err := config.Parse("kvwatch.yaml", pack.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		tb.Fatal(err)
	}
	f, err := config.Parse(demo.ConfigName, demo.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		tb.Fatal(err)
	}
	if err := config.Resolve(f, p); err != nil {
		tb.Fatal(err)
	}
	rs, settings, err := rules.Compile(f)
	if err != nil {
		tb.Fatal(err)
	}
	w := &world{store: state.NewMemory(), outbox: delivery.NewMemory()}
	var latest time.Time
	cooldowns := map[string]time.Duration{}
	for _, r := range rs {
		cooldowns[r.ID] = r.Cooldown
	}
	disp := delivery.New(delivery.Options{
		Outbox: w.outbox,
		Receivers: map[string]delivery.Notifier{
			"console": delivery.NotifierFunc(func(context.Context, *alert.Alert) error { return nil }),
			"secops": delivery.NotifierFunc(func(_ context.Context, a *alert.Alert) error {
				if a.Severity == finding.Critical {
					return notify.Temporary(errors.New("HTTP 503: service unavailable"), 0)
				}
				return nil
			}),
		},
		Routes: []delivery.Route{
			{Receivers: []string{"secops"}, MinSeverity: finding.High, Continue: true},
			{Receivers: []string{"console"}},
		},
		Cooldowns: cooldowns, Instance: "test", Log: zerolog.Nop(),
		Now: func() time.Time { return latest },
	})
	sink := detect.SinkFunc(func(ctx context.Context, fs []finding.Finding) error {
		for _, f := range fs {
			if f.LastEvent.After(latest) {
				latest = f.LastEvent
			}
		}
		if err := disp.Found(ctx, fs); err != nil {
			return err
		}
		_, err := disp.Flush(ctx) // as replay --send does: sending is apart from recording
		return err
	})
	en := detect.New(rs, settings, detect.Options{Store: w.store, Sink: sink, Log: zerolog.Nop()})
	proc := &pipeline.Pipeline{Dedup: pipeline.NewDedup(200_000), Next: stats.New(w.store).Stage(en), Log: zerolog.Nop()}
	var dec ingest.Decoder
	for _, d := range days {
		// An hour's files of every vault before the next hour's, as kvwatch
		// replay takes an archive (not one vault's whole day after
		// another's: the later vaults' records would all come after the
		// pruning of the blocks they fall in, and count nowhere).
		blobs := demo.Generate(demo.Options{Day: d})
		slices.SortStableFunc(blobs, func(a, b demo.Blob) int {
			return strings.Compare(hourOf.FindString(a.Path), hourOf.FindString(b.Path))
		})
		for _, b := range blobs {
			w.raw = append(w.raw, b.Data)
			if _, err := proc.Process(ctx, dec.File(b.Path, b.Data)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return w
}

// hourOf finds an archive path's hour (its y=/m=/d=/h= part).
var hourOf = regexp.MustCompile(`y=\d{4}/m=\d{2}/d=\d{2}/h=\d{2}`)

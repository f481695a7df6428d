package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/logger"
	stdoutnotify "github.com/kvwatch/kvwatch/internal/notify/stdout"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/receiver"
	"github.com/kvwatch/kvwatch/internal/replay"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// previewReceiver names the stand-in receiver of a digest preview: alerts
// are recorded in the in-memory outbox as delivered to it, and sent
// nowhere.
const previewReceiver = "preview"

// digestCmd: `kvwatch digest --period daily|weekly|monthly [--at TIME]
// [--zone ZONE] [--html FILE] [--chart FILE] [--send] [PATH...]` replays
// PATHs (no PATH: the bundled demo day) into memory through ingest,
// statistics, detection and delivery (to a preview receiver that sends
// nothing), computes the digest and prints it as text; with --send it
// sends it instead to the receivers the routes pick for digests (see
// digest.Targets), saying on stderr what each answered.
func digestCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("digest", "kvwatch digest --period daily|weekly|monthly [flags] [PATH...]",
		`Replays PATHs (no PATH: the bundled demo day) into memory and prints the digest of the period as text;
with --send, sends it to the receivers the routes pick for digests instead.`)
	periodName := fs.String("period", "daily", "daily (the previous day), weekly (the previous Monday–Sunday) or monthly (the previous month)")
	atFlag := fs.String("at", "", "compute the digest as at this instant: RFC 3339, or YYYY-MM-DD[THH:MM] in the zone (default: the end of the period holding the newest record)")
	zoneName := fs.String("zone", "", "IANA time zone of the periods (default: settings.business_hours.zone, else UTC)")
	htmlPath := fs.String("html", "", "also write the HTML digest to FILE, the chart embedded as a data: URL")
	chartPath := fs.String("chart", "", "also write the chart to FILE (PNG)")
	cardPath := fs.String("card", "", "also write the Teams Adaptive Card to FILE (JSON)")
	send := fs.Bool("send", false, "send the digest to the receivers the routes pick for digests (rules: [digest] or tags: [digest]; with no routes, every receiver) instead of printing it")
	cfgPath := fs.String("config", "", "kvwatch.yaml (default: $KVWATCH_CONFIG, else the embedded pack)")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	period, err := digest.ParsePeriod(*periodName)
	if err != nil {
		return usageError{err}
	}
	cfg, err := loadRunConfig(*cfgPath, len(fs.args) == 0, getenv, stderr)
	if err != nil {
		return err
	}
	rs, settings, err := rules.Compile(cfg)
	if err != nil {
		return fmt.Errorf("compile rules: %w", err)
	}
	zone := time.UTC
	if z := *zoneName; z != "" || cfg.Settings.BusinessHours.Zone != "" {
		if z == "" {
			z = cfg.Settings.BusinessHours.Zone
		}
		if zone, err = time.LoadLocation(z); err != nil {
			return usageError{fmt.Errorf("--zone: %w", err)}
		}
	}
	var at time.Time
	if *atFlag != "" {
		if at, err = parseAt(*atFlag, zone); err != nil {
			return usageError{err}
		}
	}

	log := logger.New(logger.Options{Level: "warn", Console: true, Err: stderr})
	if getenv("KVWATCH_LOG_LEVEL") != "" {
		log = newLogger(getenv, io.Discard, stderr, "warn")
	}
	store := state.NewMemory()
	outbox := delivery.NewMemory()
	dc, err := delivery.Compile(cfg)
	if err != nil {
		return fmt.Errorf("delivery configuration: %w", err)
	}
	cooldowns := map[string]time.Duration{}
	for _, r := range rs {
		cooldowns[r.ID] = r.Cooldown
	}
	// Delivery runs on event time, as in replay.
	var mu sync.Mutex
	var latest, newest time.Time
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return latest }
	disp := delivery.New(delivery.Options{Outbox: outbox, Silences: dc.Silences, Mutes: dc.Mutes, Cooldowns: cooldowns,
		Receivers: map[string]delivery.Notifier{previewReceiver: delivery.NotifierFunc(func(context.Context, *alert.Alert) error { return nil })},
		GiveUp:    dc.Settings.GiveUp.Duration, MaxBackoff: dc.Settings.MaxBackoff.Duration, MaxReminder: dc.Settings.MaxReminder.Duration,
		Instance: "digest-preview", Now: now, Log: log})
	sink := detect.SinkFunc(func(ctx context.Context, fs []finding.Finding) error {
		mu.Lock()
		for _, f := range fs {
			if f.LastEvent.After(latest) {
				latest = f.LastEvent
			}
		}
		mu.Unlock()
		if err := disp.Found(ctx, fs); err != nil {
			return err
		}
		_, err := disp.Flush(ctx) // sending is apart from recording: as replay --send
		return err
	})
	en := detect.New(rs, settings, detect.Options{Store: store, Sink: sink, Log: log})
	track := pipeline.StageFunc(func(ctx context.Context, evs []audit.Event) (pipeline.Result, error) {
		mu.Lock()
		for i := range evs {
			if evs[i].Time.After(newest) {
				newest = evs[i].Time
			}
		}
		mu.Unlock()
		return en.Consume(ctx, evs)
	})
	proc := &pipeline.Pipeline{Letters: &deadletter.Memory{}, Dedup: pipeline.NewDedup(dedupSize),
		Next: stats.New(store).Stage(track), Log: log}

	var sum replay.Summary
	if len(fs.args) == 0 {
		blobs := demo.Generate(demo.Options{})
		inputs := make([]replay.Input, len(blobs))
		for i, b := range blobs {
			inputs[i] = replay.Input{Name: b.Path, Data: b.Data}
		}
		sum, err = replay.RunInputs(ctx, inputs, proc, nil)
	} else {
		sum, err = replay.Run(ctx, fs.args, proc, nil)
	}
	fmt.Fprintln(stderr, sum.String())
	if err != nil {
		return err
	}
	if at.IsZero() {
		at = time.Now()
		if !newest.IsZero() {
			at = digest.Following(period, newest, zone)
		}
	}
	r, err := digest.Compute(ctx, store, outbox, period, at, zone)
	if err != nil {
		return err
	}
	if *send {
		receivers, err := buildReceivers(cfg, &http.Client{Timeout: 30 * time.Second}, stdout, log)
		if err != nil {
			return err
		}
		if len(receivers) == 0 {
			receivers["stdout"] = receiver.Stdout(stdoutnotify.Config{}, stdout)
		}
		if err := digest.SendNow(ctx, r, dc.Routes, receivers, stderr); err != nil {
			return err
		}
	} else if _, err := io.WriteString(stdout, digest.Text(r)); err != nil {
		return err
	}
	if *htmlPath != "" {
		h, err := digest.HTMLPreview(r)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*htmlPath, []byte(h), 0o644); err != nil {
			return err
		}
	}
	if *cardPath != "" {
		b, err := json.MarshalIndent(digest.Card(r), "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*cardPath, b, 0o644); err != nil {
			return err
		}
	}
	if *chartPath != "" {
		png, err := digest.ChartPNG(r)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*chartPath, png, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// parseAt reads --at: RFC 3339, or a local date and time in zone.
func parseAt(s string, zone *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, strings.TrimSpace(s), zone); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--at %q: not RFC 3339 nor YYYY-MM-DD[THH:MM[:SS]]", s)
}

// digestTimer is the Digest timer function: t run hourly by the host.
func digestTimer(t *digest.Timer) handlers.TimerFunc {
	return func(ctx context.Context, _ handlers.TimerInfo) ([]string, error) { return t.Run(ctx) }
}

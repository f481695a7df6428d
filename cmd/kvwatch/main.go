// Command kvwatch watches Azure Key Vault audit logs: as an Azure Functions
// custom handler (serve), over archived logs (replay), and more.
//
// main is the only place that reads the environment, builds clients and
// wires the pieces together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/heartbeat"
	"github.com/kvwatch/kvwatch/internal/logger"
	stdoutnotify "github.com/kvwatch/kvwatch/internal/notify/stdout"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/printer"
	"github.com/kvwatch/kvwatch/internal/receiver"
	"github.com/kvwatch/kvwatch/internal/replay"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `kvwatch watches Azure Key Vault audit logs.

Usage:
  kvwatch serve [--port N]                 run as the Azure Functions custom handler
  kvwatch replay [flags] [PATH...]         replay archived logs (no PATH: the bundled demo day)
  kvwatch consume [flags]                  read the Event Hub directly, outside Azure Functions
  kvwatch rules check [FILE]               validate the configuration as serve would, listing every error
  kvwatch rules show ID                    print a rule as it runs (the pack's, with overrides and except)
  kvwatch rules test [DIR]                 run rule tests (no DIR: the default pack's own)
  kvwatch routes test [--severity S] [--rule R] [--vault V] [--tag T]
                                           print the receivers an alert would reach, or what would mute it
  kvwatch alerts list|show ID|resend ID    alerts in the outbox (Table Storage) and their delivery
  kvwatch alerts test                      send a test alert through the configured receivers and routes
  kvwatch silence add|list|expire          silences kept in Table Storage, honoured by serve within a minute
  kvwatch digest --period daily|weekly|monthly [--at TIME] [--zone Z] [--html FILE] [--chart FILE] [PATH...]
                                           preview a digest (no PATH: the bundled demo day)
  kvwatch state prune [--at TIME]          delete detection state no rule needs any more (Table Storage)
  kvwatch dev                              the demo day through a local Functions host double, Azurite and
                                           local receivers: see alerts arrive (needs make azurite-install)
  kvwatch demo write DIR                   write the bundled demo day as PT1H.json blobs
  kvwatch version                          print the version

Every command but demo and version takes --config FILE (default: $KVWATCH_CONFIG,
else the embedded default configuration and rule pack). kvwatch COMMAND --help
prints a command's flags. Where a command reads a file or PATH, "-" is standard
input. Times (--at) are RFC 3339, a date, today, yesterday, or an age like -2h.

Environment:
  FUNCTIONS_CUSTOMHANDLER_PORT, FUNCTIONS_HTTPWORKER_PORT   port to listen on (127.0.0.1 only)
  KVWATCH_MAX_BODY_BYTES     invocation body limit (default 134217728)
  KVWATCH_DEADLETTER_FILE    dead-letter JSON Lines file without Table Storage (default $TMPDIR/kvwatch/deadletter.jsonl)
  KVWATCH_TABLE_CONNECTION_STRING, KVWATCH_TABLE_ENDPOINT, AzureWebJobsStorage[__tableServiceUri]
                             Table Storage for state, outbox and dead letters (else memory, with a warning)
  KVWATCH_TABLE_PREFIX       table name prefix, so deployments can share an account
  KVWATCH_LOG_LEVEL          debug, info, warn, error (default info)
  KVWATCH_CONFIG             path of kvwatch.yaml (default: the embedded pack)
  KVWATCH_SILENCE_POLL       how often serve reads the silences of kvwatch silence add (default 30s)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runWithInput(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process, with nothing on standard input.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runWithInput(ctx, args, getenv, strings.NewReader(""), stdout, stderr)
}

// runWithInput is main without the process: testable. stdin is what "-"
// reads.
func runWithInput(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], getenv, stdout, stderr)
	case "replay":
		err = replayCmd(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "consume":
		err = consumeCmd(ctx, args[1:], getenv, stdout, stderr, wireConsume)
	case "rules":
		err = rulesCmd(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "alerts":
		err = alertsCmd(ctx, args[1:], getenv, stdout, stderr)
	case "silence":
		err = silenceCmd(ctx, args[1:], getenv, stdout, stderr)
	case "digest":
		err = digestCmd(ctx, args[1:], getenv, stdout, stderr)
	case "state":
		err = stateCmd(ctx, args[1:], getenv, stdout, stderr)
	case "dev":
		err = devCmd(ctx, args[1:], getenv, stdout, stderr)
	case "demo":
		err = demoCmd(args[1:], stdout)
	case "routes":
		err = routesCmd(ctx, args[1:], getenv, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "kvwatch", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "kvwatch: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, errHelp) {
		return 0
	}
	var ce *config.Errors
	if errors.As(err, &ce) {
		// One error per line, each with its position, as rules check and
		// serve both report them.
		fmt.Fprintln(stderr, err)
		if n := len(ce.List); n == 1 {
			fmt.Fprintln(stderr, "kvwatch: 1 configuration error")
		} else {
			fmt.Fprintf(stderr, "kvwatch: %d configuration errors\n", n)
		}
		return 1
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "kvwatch: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "kvwatch: %v\n", err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// dedupSize is how many recent records each process remembers to drop
// records Azure Monitor delivered twice (about 20 MB).
const dedupSize = 200_000

func newLogger(getenv func(string) string, stdout, stderr io.Writer, level string) zerolog.Logger {
	if v := getenv("KVWATCH_LOG_LEVEL"); v != "" {
		level = v
	}
	return logger.New(logger.Options{Level: level, Out: stdout, Err: stderr})
}

// defaultMemoryLimit is serve's soft memory limit unless GOMEMLIMIT is set,
// defaultGCPercent its GOGC unless GOGC is set.
const (
	defaultMemoryLimit = 200 << 20
	defaultGCPercent   = 200
)

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "kvwatch serve [--port N] [--config FILE] [--grace D]",
		"Runs as the Azure Functions custom handler: answers the host on 127.0.0.1 (AuditEvents and the timers).")
	port := fs.Int("port", -1, "port to listen on (default: from the host's environment)")
	cfgPath := fs.String("config", "", "kvwatch.yaml (default: $KVWATCH_CONFIG, else the embedded pack)")
	grace := fs.Duration("grace", 30*time.Second, "how long to wait for in-flight invocations on shutdown")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if err := fs.noArgs(); err != nil {
		return err
	}
	// Listen first: the host polls GET / and gives up after its
	// initialization timeout, so anything slow comes after.
	p := *port
	if p < 0 {
		var err error
		if p, err = handlers.PortFromEnv(getenv); err != nil {
			return err
		}
	}
	ln, err := handlers.Listen(p)
	if err != nil {
		return err
	}
	log := newLogger(getenv, stdout, stderr, "info")
	if getenv("GOMEMLIMIT") == "" {
		// A soft limit: the collector works harder near it rather than
		// let a 1,000-event batch on top of a full entity cache take the
		// process past 256 MiB. GOMEMLIMIT overrides it.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if getenv("GOGC") == "" {
		// Under that limit, the heap may grow to three times what is live
		// before a collection, not twice: a fifth of a Table-state
		// handler's CPU was the collector, and the limit, not the
		// percentage, bounds the peak. Measured (docs/performance.md):
		// 5-8% more Table-state throughput at 300 and 3,000 callers, peak
		// RSS 137 MiB (was 103) at 300 and unchanged (212 MiB) at 3,000.
		// GOGC overrides it.
		debug.SetGCPercent(defaultGCPercent)
	}

	if path := getenv("KVWATCH_PROFILE"); path != "" {
		// A diagnostic (docs/performance.md): the process's CPU profile
		// and its allocations, written when serve returns, to PATH.PID.cpu
		// and PATH.PID.allocs (handlers of one machine apart).
		stopProfile, err := startProfile(fmt.Sprintf("%s.%d", path, os.Getpid()))
		if err != nil {
			ln.Close()
			return fmt.Errorf("KVWATCH_PROFILE: %w", err)
		}
		defer stopProfile()
	}
	maxBody := int64(handlers.DefaultMaxBody)
	if v := getenv("KVWATCH_MAX_BODY_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			ln.Close()
			return fmt.Errorf("KVWATCH_MAX_BODY_BYTES=%q is not a positive number of bytes", v)
		}
		maxBody = n
	}
	// Serve at once: the host's readiness probe is answered while the
	// runtime is wired (config, rules, Table Storage), and invocations
	// wait for it.
	start := handlers.NewStarting()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- handlers.Serve(sctx, ln, start, *grace, log) }()
	rt, err := wireRuntime(ctx, *cfgPath, getenv, stdout, log)
	if err != nil {
		start.Fail()
		stop()
		<-served
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	start.Ready(handlers.New(handlers.Config{MaxBody: maxBody, Letters: rt.Letters, Timers: rt.Timers}, rt.Proc, log))
	// Delivery runs beside the handler, never inside an invocation.
	stopBackground := startBackground(sctx, rt.Background)
	err = <-served
	stopBackground()
	// The invocations are done: what the state store still defers (the
	// last batches' marks of what was handed on, detect/marks.go) is
	// written, so that the instance that takes the partitions over finds
	// it. Not written (a timeout, Table Storage down), it costs that
	// instance one more handing on of those findings.
	if f, ok := rt.State.(interface{ FlushAll(context.Context) error }); ok {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if ferr := f.FlushAll(fctx); ferr != nil {
			log.Warn().Err(ferr).Msg("state: writing deferred updates on shutdown failed")
		}
		cancel()
	}
	return err
}

func replayCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("replay", "kvwatch replay [flags] [PATH...]",
		`Replays archived audit logs (PT1H.json blobs, JSON Lines, or Event Hubs bodies; files or directories)
through the pipeline and prints the findings. No PATH: the bundled demo day. "-" reads standard input.
With --send, alerts go through the configured receivers and routes, and each is printed with the
receivers it went to, or what muted it.`)
	output := fs.String("output", "text", "output format: text or json (one object per line)")
	cfgPath := fs.String("config", "", "kvwatch.yaml (default: $KVWATCH_CONFIG, else the embedded pack)")
	events := fs.Bool("events", false, "print the normalized events instead of findings")
	send := fs.Bool("send", false, "deliver alerts through the configured receivers and routes (default: print findings)")
	stateKind := fs.String("state", "memory", "where detection state lives: memory, or table (Table Storage as configured by the environment)")
	dlPath := fs.String("deadletter", "", "write dead letters to this JSON Lines file (default: count only)")
	verbose := fs.Bool("v", false, "log every batch")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	format, err := printer.ParseFormat(*output)
	if err != nil {
		return usageError{err}
	}
	level := "warn"
	if *verbose {
		level = "info"
	}
	log := newLogger(getenv, io.Discard, stderr, level)
	if !*verbose && getenv("KVWATCH_LOG_LEVEL") == "" {
		log = logger.New(logger.Options{Level: level, Console: true, Err: stderr})
	}

	var letters deadletter.Sink = &deadletter.Memory{}
	if *dlPath != "" {
		letters = deadletter.NewFile(*dlPath)
	}
	cfg, err := loadRunConfig(*cfgPath, len(fs.args) == 0, getenv, stderr)
	if err != nil {
		return err
	}
	rs, settings, err := rules.Compile(cfg)
	if err != nil {
		return fmt.Errorf("compile rules: %w", err)
	}
	var store state.Store = state.NewMemory()
	var outbox delivery.Outbox = delivery.NewMemory()
	switch *stateKind {
	case "memory":
	case "table":
		st, err := openStores(ctx, getenv, log)
		if err != nil {
			return err
		}
		if !st.Durable {
			return errors.New("--state table: no Table Storage configured (KVWATCH_TABLE_CONNECTION_STRING, KVWATCH_TABLE_ENDPOINT or AzureWebJobsStorage)")
		}
		store, outbox = st.State, st.Outbox
	default:
		return usageError{fmt.Errorf("--state %q: want memory or table", *stateKind)}
	}
	var flush func() error
	var next pipeline.Stage
	var found []string // with --send: the findings handed to delivery, in order
	switch {
	case *events:
		out := printer.NewEvents(stdout, format)
		next, flush = out, out.Flush
	case *send:
		receivers, err := buildReceivers(cfg, &http.Client{Timeout: 30 * time.Second}, stdout, log)
		if err != nil {
			return err
		}
		if len(receivers) == 0 {
			receivers["stdout"] = stdoutnotify.New(stdoutnotify.Config{Format: string(format)}, stdout)
		}
		// Replay runs on event time: cooldowns, silences and give-up
		// follow the records, not the wall clock.
		var latest time.Time
		disp, err := buildDispatcher(cfg, rs, outbox, receivers, log, func() time.Time { return latest }, nil)
		if err != nil {
			return err
		}
		sink := detect.SinkFunc(func(ctx context.Context, fs []finding.Finding) error {
			for _, f := range fs {
				if f.LastEvent.After(latest) {
					latest = f.LastEvent
				}
				found = append(found, f.ID)
			}
			if err := disp.Found(ctx, fs); err != nil {
				return err
			}
			// Replay sends as it goes, in event time, each send with its
			// deadline; serve leaves it to its sender loop.
			_, err := disp.Flush(ctx)
			return err
		})
		next = detect.New(rs, settings, detect.Options{Store: store, Sink: sink, Log: log})
		flush = func() error {
			// The end of the records: alerts held for a source
			// (delivery.inhibit_wait) have nothing more to wait for.
			latest = latest.Add(cfg.Delivery.InhibitWaitOrDefault())
			_, err := disp.Flush(ctx)
			return err
		}
	default:
		out := printer.NewFindings(stdout, format)
		// An incident that grows is printed again as an update, when it
		// tells what an alert's update would (the rules' update_on).
		dc, err := delivery.Compile(cfg)
		if err != nil {
			return fmt.Errorf("delivery configuration: %w", err)
		}
		out.Updates = &delivery.Incidents{Updates: dc.Updates}
		next = detect.New(rs, settings, detect.Options{Store: store, Sink: out, Log: log})
		flush = out.Flush
	}
	proc := &pipeline.Pipeline{Letters: letters, Dedup: pipeline.NewDedup(dedupSize), Next: next, Log: log}

	var progress replay.Progress
	if f, ok := stderr.(*os.File); ok && logger.IsTerminal(f) {
		progress = progressBar(stderr)
	}
	var sum replay.Summary
	switch {
	case len(fs.args) == 0:
		blobs := demo.Generate(demo.Options{})
		inputs := make([]replay.Input, len(blobs))
		for i, b := range blobs {
			inputs[i] = replay.Input{Name: b.Path, Data: b.Data}
		}
		sum, err = replay.RunInputs(ctx, inputs, proc, progress)
	case slices.Contains(fs.args, "-"):
		if len(fs.args) > 1 {
			return usageError{errors.New("replay: - (standard input) cannot be given with other paths")}
		}
		data, rerr := io.ReadAll(stdin)
		if rerr != nil {
			return fmt.Errorf("replay: reading standard input: %w", rerr)
		}
		sum, err = replay.RunInputs(ctx, []replay.Input{{Name: "<stdin>", Data: data}}, proc, progress)
	default:
		sum, err = replay.Run(ctx, fs.args, proc, progress)
	}
	if ferr := flush(); ferr != nil && err == nil {
		err = ferr
	}
	if *send && err == nil {
		// Where each alert went, or what muted it.
		err = printDeliveries(ctx, outbox, found, stdout)
	}
	if progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	fmt.Fprintln(stderr, sum.String())
	if err == nil && len(fs.args) > 0 && sum.Stats.Accepted == 0 {
		return fmt.Errorf("replay: no audit records kvwatch could read in %s (%d files, %d bytes, %d records, %d dead-lettered): it reads Key Vault AuditEvent logs (PT1H.json blobs, JSON Lines, Event Hubs bodies)",
			strings.Join(fs.args, ", "), sum.Files, sum.Bytes, sum.Stats.Records, sum.Stats.DeadLettered)
	}
	return err
}

// progressBar draws a one-line progress indicator on a terminal, for
// inputs large enough to take a while.
func progressBar(w io.Writer) replay.Progress {
	last := time.Time{}
	return func(done, total int, bytesDone, bytesTotal int64) {
		if bytesTotal < 32<<20 || (time.Since(last) < 100*time.Millisecond && done < total) {
			return
		}
		last = time.Now()
		pct := float64(bytesDone) * 100 / float64(bytesTotal)
		const width = 30
		n := int(pct / 100 * width)
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < n {
				bar[i] = '='
			}
		}
		fmt.Fprintf(w, "\r[%s] %5.1f%%  %d/%d files  %d MiB", bar, pct, done, total, bytesDone>>20)
	}
}

// buildReceivers builds a notifier for every configured receiver that is
// on (internal/receiver); each also takes digests.
func buildReceivers(cfg *config.File, client *http.Client, stdout io.Writer, log zerolog.Logger) (map[string]delivery.Notifier, error) {
	return receiver.Build(cfg, receiver.Deps{HTTPClient: client, Stdout: stdout, Log: log})
}

// buildDispatcher wires delivery: routes, silences, the rules' cooldowns.
// With no receivers configured, alerts are written to the log.
func buildDispatcher(cfg *config.File, rs []*rules.Rule, out delivery.Outbox, receivers map[string]delivery.Notifier,
	log zerolog.Logger, now func() time.Time, silences func() []delivery.Silence) (*delivery.Dispatcher, error) {
	c, err := delivery.Compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("delivery configuration: %w", err)
	}
	if len(receivers) == 0 {
		msg := cfg.NoReceivers()
		if msg == "" {
			msg = "no receivers configured, so alerts go to the log only"
		}
		log.Warn().Msg(msg)
		receivers = map[string]delivery.Notifier{"log": delivery.NotifierFunc(func(_ context.Context, a *alert.Alert) error {
			log.Warn().Str("alert", a.ID).Str("rule", a.Rule).Str("severity", a.Severity.String()).
				Str("vault", a.Vault).Int("findings", len(a.Findings)).Str("summary", a.Summary).Msg("alert")
			return nil
		})}
	}
	cooldowns := map[string]time.Duration{}
	for _, r := range rs {
		cooldowns[r.ID] = r.Cooldown
	}
	host, _ := os.Hostname()
	o := delivery.Options{Outbox: out, Receivers: receivers, Routes: c.Routes, Silences: c.Silences, Mutes: c.Mutes,
		Cooldowns: cooldowns, Updates: c.Updates, Inhibits: c.Inhibits, GiveUp: c.Settings.GiveUp.Duration, MaxBackoff: c.Settings.MaxBackoff.Duration,
		MaxReminder: c.Settings.MaxReminder.Duration, GroupWait: c.Settings.GroupWait.Duration,
		InhibitWait: c.Settings.InhibitWaitOrDefault(), Instance: fmt.Sprintf("%s/%d", host, os.Getpid()), Log: log}
	o.Now, o.SilenceSource = now, silences
	deliverySettings(cfg, &o)
	return delivery.New(o), nil
}

// runtime is what serve and consume run: the pipeline, where its dead
// letters go, and the timer functions.
type runtime struct {
	Proc    *pipeline.Pipeline
	Letters deadletter.Sink
	Timers  map[string]handlers.TimerFunc
	// Background is what runs beside them until the process stops: the
	// sender loop and the silence watcher.
	Background []background
	// State is the detection state store: one that defers updates
	// (tablestore.Journal) writes what still waits when serve stops.
	State state.Store
}

// wireRuntime builds everything once: stores, rules, receivers, delivery,
// the pipeline (dedup → heartbeat → statistics → detection → delivery) and
// the timers. It is the only place the pipeline is assembled.
func wireRuntime(ctx context.Context, cfgPath string, getenv func(string) string, stdout io.Writer, log zerolog.Logger) (runtime, error) {
	st, err := openStores(ctx, getenv, log)
	if err != nil {
		return runtime{}, err
	}
	cfg, err := loadConfig(cfgPath, getenv)
	if err != nil {
		return runtime{}, err
	}
	rs, settings, err := rules.Compile(cfg)
	if err != nil {
		return runtime{}, fmt.Errorf("compile rules: %w", err)
	}
	receivers, err := buildReceivers(cfg, &http.Client{Timeout: 30 * time.Second}, stdout, log)
	if err != nil {
		return runtime{}, err
	}
	poll, err := silencePoll(getenv)
	if err != nil {
		return runtime{}, err
	}
	silences := delivery.NewSilenceWatcher(st.Silences, poll, nil, log)
	if err := silences.Refresh(ctx); err != nil {
		log.Warn().Err(err).Msg("silences: reading the silences failed; trying again in the background")
	}
	disp, err := buildDispatcher(cfg, rs, st.Outbox, receivers, log, nil, silences.Active)
	if err != nil {
		return runtime{}, err
	}
	store := st.State
	dc, err := delivery.Compile(cfg)
	if err != nil {
		return runtime{}, fmt.Errorf("delivery configuration: %w", err)
	}
	zone := time.UTC
	if z := cfg.Settings.BusinessHours.Zone; z != "" {
		if zone, err = time.LoadLocation(z); err != nil {
			return runtime{}, fmt.Errorf("settings.business_hours.zone: %w", err)
		}
	}
	en := detect.New(rs, settings, detect.Options{Store: store, Sink: disp, Log: log})
	hbo := heartbeatOptions(cfg, store, nil)
	hbo.Log = log
	hb := heartbeat.New(hbo)
	proc := &pipeline.Pipeline{Letters: st.Letters, Dedup: pipeline.NewDedup(dedupSize),
		Next: hb.Stage(stats.New(store).Stage(en)), Log: log}
	timers := map[string]handlers.TimerFunc{
		"Digest": digestTimer(&digest.Timer{Store: store, Outbox: st.Outbox, Receivers: receivers, Routes: dc.Routes,
			Zone: zone, Log: log}),
		"Housekeeping": func(ctx context.Context, _ handlers.TimerInfo) ([]string, error) {
			rep, err := disp.Flush(ctx)
			if err != nil {
				return nil, err
			}
			pruned, err := disp.Prune(ctx)
			if err != nil {
				return nil, err
			}
			// The monthly trend needs the previous month's day statistics.
			if _, err := stats.Prune(ctx, store, time.Now().AddDate(0, 0, -100)); err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("kvwatch: housekeeping: %d alerts delivered, %d still retrying, %d given up, %d muted; "+
				"pruned %d alerts, %d decisions, %d cooldowns past the retention",
				rep.Delivered, rep.Retrying, rep.Undelivered, rep.Muted, pruned.Entries, pruned.Decisions, pruned.Cooldowns)}, nil
		},
		"LoggingSilence": func(ctx context.Context, _ handlers.TimerInfo) ([]string, error) {
			fs, err := hb.Check(ctx)
			if err != nil {
				return nil, err
			}
			if err := disp.Found(ctx, fs); err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("kvwatch: logging silence: %d changes", len(fs))}, nil
		},
	}
	var warm []*warmUp
	if w, ok := st.Outbox.(warmer); ok {
		warm = append(warm, newWarmUp("outbox", w.Warm, log))
	}
	// The journal's restore too (tablestore.Journal.Warm): the first batch
	// waits only for what is left of it.
	if w, ok := st.State.(warmer); ok {
		warm = append(warm, newWarmUp("state", w.Warm, log))
	}
	// The sender's first round waits for them (afterWarmUp), 10 s at most.
	bg := []background{silences, newAfterWarmUp(disp.NewSender(delivery.SenderOptions{}), senderWarmWait, warm...)}
	for _, w := range warm {
		bg = append(bg, w)
	}
	return runtime{Proc: proc, Letters: st.Letters, Timers: timers, Background: bg, State: store}, nil
}

// senderWarmWait bounds how long the outbox sender waits for the warm-ups
// before its first round (afterWarmUp).
const senderWarmWait = 10 * time.Second

// warmer is a store that can load what the first batch needs before it
// comes (tablestore.Outbox's views, tablestore.Journal's restore).
type warmer interface {
	Warm(ctx context.Context) error
}

// wireConsume adapts wireRuntime for kvwatch consume.
func wireConsume(ctx context.Context, d consumeDeps) (consumeWiring, error) {
	rt, err := wireRuntime(ctx, d.ConfigPath, d.Getenv, d.Stdout, d.Log)
	if err != nil {
		return consumeWiring{}, err
	}
	return consumeWiring{Proc: rt.Proc, Letters: rt.Letters, Timers: rt.Timers, Background: rt.Background}, nil
}

// heartbeatOptions reads settings.logging_silence.
func heartbeatOptions(cfg *config.File, store state.Store, now func() time.Time) heartbeat.Options {
	ls := cfg.Settings.LoggingSilence
	o := heartbeat.Options{Store: store, After: ls.After.Duration, Watch: ls.Vaults, Now: now,
		Overrides: map[string]time.Duration{}}
	for _, ov := range ls.Overrides {
		o.Overrides[strings.ToLower(ov.Vault)] = ov.After.Duration
	}
	return o
}

// loadRules loads the configuration (the path given, else $KVWATCH_CONFIG,
// else the embedded pack) and compiles its rules.
func loadRules(path string, getenv func(string) string) ([]*rules.Rule, *rules.Settings, error) {
	f, err := loadConfig(path, getenv)
	if err != nil {
		return nil, nil, err
	}
	rs, s, err := rules.Compile(f)
	if err != nil {
		return nil, nil, fmt.Errorf("compile rules: %w", err)
	}
	return rs, s, nil
}

// loadConfig reads the configuration kvwatch runs: the file at path (else
// $KVWATCH_CONFIG) resolved against the embedded default pack, or the
// embedded configuration alone. config validates and resolves it; every
// command goes through here, so `rules check` refuses what `serve` would.
func loadConfig(path string, getenv func(string) string) (*config.File, error) {
	if path == "" {
		path = getenv("KVWATCH_CONFIG")
	}
	if path == "" {
		f, err := config.Parse(embeddedName, pack.Config, config.Options{Getenv: getenv})
		if err != nil {
			return nil, err
		}
		return f, config.Resolve(f, nil)
	}
	f, err := config.Load(path, getenv)
	if err != nil {
		return nil, err
	}
	return resolveConfig(f, getenv)
}

// demoConfigLine says which configuration a replay of the bundled demo
// day runs when the user names none.
const demoConfigLine = "config: embedded pack + the demo tenant's exceptions (" + demo.ConfigName + ")"

// loadRunConfig is loadConfig for a command that replays the bundled demo
// day when it names no PATH (demo): with no --config and no
// $KVWATCH_CONFIG, it runs the demo tenant's kvwatch.yaml (demo.Config,
// the pack's exception templates filled in for the demo day's platform
// identities), merged with the pack as any user file is, and says so on
// stderr. serve and consume never come here.
func loadRunConfig(path string, demoDay bool, getenv func(string) string, stderr io.Writer) (*config.File, error) {
	if !demoDay || path != "" || getenv("KVWATCH_CONFIG") != "" {
		return loadConfig(path, getenv)
	}
	f, err := demoConfig(getenv)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(stderr, demoConfigLine)
	return f, nil
}

// demoConfig is the demo tenant's configuration: demo.Config resolved
// against the pack. Naming no receivers or routes of its own, it keeps the
// shipped file's (which turn on from the environment), as the tenant's
// file would copy them.
func demoConfig(getenv func(string) string) (*config.File, error) {
	f, err := config.Parse(demo.ConfigName, demo.Config, config.Options{Getenv: getenv})
	if err != nil {
		return nil, err
	}
	p, err := config.Parse(embeddedName, pack.Config, config.Options{Getenv: getenv})
	if err != nil {
		return nil, err
	}
	if len(f.Receivers) == 0 && len(f.Routes) == 0 {
		f.Receivers, f.Routes = p.Receivers, p.Routes
	}
	if err := config.Resolve(f, p); err != nil {
		return nil, err
	}
	return f, nil
}

// loadConfigData is loadConfig for a file already read (standard input).
func loadConfigData(name string, data []byte, getenv func(string) string) (*config.File, error) {
	f, err := config.Parse(name, data, config.Options{Getenv: getenv})
	if err != nil {
		return nil, err
	}
	return resolveConfig(f, getenv)
}

// resolveConfig merges the embedded default pack into a user's file.
func resolveConfig(f *config.File, getenv func(string) string) (*config.File, error) {
	p, err := config.Parse(embeddedName, pack.Config, config.Options{Getenv: getenv})
	if err != nil {
		return nil, err
	}
	if err := config.Resolve(f, p); err != nil {
		return nil, err
	}
	return f, nil
}

// embeddedName names the embedded configuration in messages.
const embeddedName = "kvwatch.yaml (embedded)"

// stateCmd: `kvwatch state prune` deletes window state older than every
// rule's horizon before --at (default now), and day statistics older than
// 100 days. The Housekeeping timer does the same for statistics; detection
// prunes its windows as event time advances.
func stateCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "prune" {
		return groupUsage(args, "Usage:\n  kvwatch state prune [--config FILE] [--at TIME]   delete detection state no rule needs any more (Table Storage)\n", stdout)
	}
	fs := newFlags("state prune", "kvwatch state prune [--config FILE] [--at TIME]",
		`Deletes window state older than every rule's horizon before --at, and day statistics older than
100 days, from Table Storage.`)
	cfgPath := fs.String("config", "", configFlagHelp)
	at := fs.String("at", "now", "prune as if the newest event were at this time: "+timeHelp)
	if err := fs.parse(args[1:], stdout); err != nil {
		return err
	}
	if err := fs.noArgs(); err != nil {
		return err
	}
	when, err := parseTime(*at, time.Now())
	if err != nil {
		return usageError{fmt.Errorf("--at: %w", err)}
	}
	log := logger.New(logger.Options{Level: "warn", Console: true, Err: stderr})
	st, err := openStores(ctx, getenv, log)
	if err != nil {
		return err
	}
	if !st.Durable {
		return errors.New("no Table Storage configured: in-memory state has nothing to prune")
	}
	rs, settings, err := loadRules(*cfgPath, getenv)
	if err != nil {
		return err
	}
	en := detect.New(rs, settings, detect.Options{Store: st.State, Log: log})
	n, err := en.PruneBefore(ctx, when)
	if err != nil {
		return err
	}
	days, err := stats.Prune(ctx, st.State, when.AddDate(0, 0, -100))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pruned %d window entities and %d days of statistics\n", n, days)
	return nil
}

func demoCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "write" {
		return groupUsage(args, "Usage:\n  kvwatch demo write DIR   write the bundled demo day as PT1H.json blobs under DIR\n", stdout)
	}
	fs := newFlags("demo write", "kvwatch demo write DIR",
		"Writes the bundled demo day (four vaults, one day) as PT1H.json blobs under DIR, laid out as the archive does.")
	if err := fs.parse(args[1:], stdout); err != nil {
		return err
	}
	if len(fs.args) != 1 {
		return usageError{errors.New("demo write takes one DIR (see kvwatch demo write --help)")}
	}
	dir := fs.args[0]
	blobs := demo.Generate(demo.Options{})
	if err := demo.Write(dir, blobs); err != nil {
		return fmt.Errorf("demo write %s: %w", dir, err)
	}
	fmt.Fprintf(stdout, "wrote %d blobs under %s\n", len(blobs), dir)
	return nil
}

// startProfile starts a CPU profile to base.cpu; the function it returns
// stops it and writes the allocations profile to base.allocs.
func startProfile(base string) (func(), error) {
	f, err := os.Create(base + ".cpu")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if a, err := os.Create(base + ".allocs"); err == nil {
			pprof.Lookup("allocs").WriteTo(a, 0)
			a.Close()
		}
	}, nil
}

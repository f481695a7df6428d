package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/eventhub"
	"github.com/kvwatch/kvwatch/internal/secret"
	"github.com/kvwatch/kvwatch/internal/tablestore"
)

// consumeDeps is what consume hands the wiring: what it read and built
// once, for the wiring to use rather than build again.
type consumeDeps struct {
	ConfigPath string // --config (empty: $KVWATCH_CONFIG, else the embedded pack)
	Getenv     func(string) string
	Stdout     io.Writer
	Log        zerolog.Logger
	// Tables is the Table Storage client consume keeps its checkpoints
	// with (never nil), and TablePrefix the prefix of kvwatch's tables
	// (KVWATCH_TABLE_PREFIX): detection state, findings and dead letters
	// belong on it too.
	Tables      *aztables.ServiceClient
	TablePrefix string
}

// consumeWiring is what consume needs from the wiring every door shares:
// the pipeline exactly as serve builds it, where a batch whose processing
// panics is dead-lettered (nil: such a batch is retried), and the timer
// functions serve exposes to the host, which consume runs on its own
// schedule (consumeTimerEvery).
type consumeWiring struct {
	Proc    eventhub.Processor
	Letters deadletter.Sink
	Timers  map[string]handlers.TimerFunc
	// Background runs while consume does: the sender loop, the silence
	// watcher.
	Background []background
}

// consumeWire builds the wiring for consume.
type consumeWire func(ctx context.Context, d consumeDeps) (consumeWiring, error)

// consumeTimerEvery is how often consume runs each timer function: the
// Function app's default schedules. A timer not listed runs every 10
// minutes.
var consumeTimerEvery = map[string]time.Duration{
	"LoggingSilence": 5 * time.Minute,
	"Housekeeping":   10 * time.Minute,
	"Digest":         time.Hour,
}

const consumeUsage = `Usage: kvwatch consume [flags]

Reads the Event Hub that Key Vault's diagnostic settings write to, without
Azure Functions (Container Apps, AKS, a VM), and runs every batch through the
same pipeline as serve. Instances share the partitions; checkpoints and
partition ownership are kept in Table Storage (table <prefix>checkpoints).

Environment:
  KVWATCH_EVENTHUB_NAMESPACE            <name>.servicebus.windows.net, read with an identity
                                        (managed identity where the platform has one, else
                                        DefaultAzureCredential; AZURE_CLIENT_ID: a user-assigned one)
  KVWATCH_EVENTHUB_CONNECTION_STRING    or a connection string (never logged)
  KVWATCH_EVENTHUB_NAME                 the event hub (unless the connection string has EntityPath)
  KVWATCH_CONSUMER_GROUP                the consumer group (default $Default)
  KVWATCH_TABLE_ENDPOINT, KVWATCH_TABLE_CONNECTION_STRING, AzureWebJobsStorage...
                                        Table Storage, as for serve (required here)
  KVWATCH_TABLE_PREFIX                  prefix of kvwatch's table names

Flags:
`

// consumeCmd runs `kvwatch consume`: it builds the Event Hubs client, the
// checkpoint store and (through wire) the pipeline once, runs the timers
// on their schedules, and consumes until ctx is cancelled (SIGTERM,
// SIGINT), then shuts down gracefully: batches under way finish and are
// checkpointed, partitions are given up for other instances.
func consumeCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, wire consumeWire) error {
	fs := newFlags("consume", "kvwatch consume [flags]", strings.TrimSuffix(strings.TrimPrefix(consumeUsage, "Usage: kvwatch consume [flags]\n"), "Flags:\n"))
	cfgPath := fs.String("config", "", "kvwatch.yaml (default: $KVWATCH_CONFIG, else the embedded pack)")
	batchSize := fs.Int("batch-size", 100, "most events per batch")
	maxWait := fs.Duration("max-wait", 5*time.Second, "longest wait to fill a batch before handing on what has arrived")
	grace := fs.Duration("grace", 30*time.Second, "how long batches under way may take to finish on shutdown")
	start := fs.String("start", "earliest", "where a partition with no checkpoint starts: earliest (all the hub keeps) or latest")
	timersOff := fs.Bool("no-timers", false, "do not run the timer functions (LoggingSilence, Housekeeping, Digest) here")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if err := fs.noArgs(); err != nil {
		return err
	}
	if *batchSize <= 0 || *maxWait <= 0 || *grace <= 0 {
		return usageError{errors.New("--batch-size, --max-wait and --grace must be positive")}
	}
	var startPos azeventhubs.StartPosition
	switch *start {
	case "earliest":
		startPos.Earliest = to.Ptr(true)
	case "latest":
		startPos.Latest = to.Ptr(true)
	default:
		return usageError{fmt.Errorf("--start %q: want earliest or latest", *start)}
	}
	if wire == nil {
		return errors.New("consume: no pipeline wiring")
	}
	log := newLogger(getenv, stdout, stderr, "info")

	client, hub, hubDesc, err := eventhub.ClientFromEnv(getenv)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = client.Close(cctx)
	}()
	log.Info().Str("event_hub", hubDesc).Msg("event hub")

	tables, tablesDesc, err := tablestore.ClientFromEnv(getenv)
	if err != nil {
		return err
	}
	if tables == nil {
		return fmt.Errorf("consume keeps its checkpoints in Table Storage: set %s (with an identity) or %s",
			tablestore.EnvEndpoint, tablestore.EnvConnectionString)
	}
	prefix := strings.TrimSpace(getenv("KVWATCH_TABLE_PREFIX"))
	store, err := eventhub.NewCheckpointStore(ctx, tables, eventhub.StoreOptions{Prefix: prefix})
	if err != nil {
		return err
	}
	table, _ := eventhub.TableName(prefix)
	log.Info().Str("table_storage", tablesDesc).Str("table", table).Msg("checkpoints and partition ownership")

	w, err := wire(ctx, consumeDeps{ConfigPath: *cfgPath, Getenv: getenv, Stdout: stdout, Log: log,
		Tables: tables, TablePrefix: prefix})
	if err != nil {
		return err
	}
	if w.Proc == nil {
		return errors.New("consume: the wiring built no pipeline")
	}

	var timers sync.WaitGroup
	tctx, stopTimers := context.WithCancel(ctx)
	if !*timersOff {
		runTimers(tctx, &timers, w.Timers, log)
	}
	stopBackground := startBackground(tctx, w.Background)
	err = eventhub.Run(ctx, client, store, w.Proc, eventhub.Options{
		Namespace: hub.Namespace, EventHub: hub.EventHub, ConsumerGroup: hub.ConsumerGroup,
		BatchSize: *batchSize, MaxWait: *maxWait, Grace: *grace,
		Processor: azeventhubs.ProcessorOptions{StartPositions: azeventhubs.StartPositions{Default: startPos}},
		Letters:   w.Letters,
		Log:       log,
	})
	stopTimers()
	stopBackground()
	timers.Wait()
	if err != nil {
		return err
	}
	log.Info().Msg("consume stopped")
	return nil
}

// runTimers runs each timer function on its schedule until ctx is done
// (one run at a time per timer; the first one schedule after start, as the
// Functions host does without RunOnStartup).
func runTimers(ctx context.Context, wg *sync.WaitGroup, timers map[string]handlers.TimerFunc, log zerolog.Logger) {
	names := make([]string, 0, len(timers))
	for name := range timers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn, every := timers[name], consumeTimerEvery[name]
		if every <= 0 {
			every = 10 * time.Minute
		}
		log.Info().Str("timer", name).Dur("every", every).Msg("timer scheduled")
		wg.Add(1)
		go func() {
			defer wg.Done()
			tl := log.With().Str("function", name).Logger()
			last := time.Now()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				now := time.Now()
				var info handlers.TimerInfo
				info.ScheduleStatus = &struct {
					Last        time.Time `json:"Last"`
					Next        time.Time `json:"Next"`
					LastUpdated time.Time `json:"LastUpdated"`
				}{Last: last, Next: now.Add(every), LastUpdated: now}
				info.IsPastDue = now.Sub(last) > 2*every
				lines, err := fn(ctx, info)
				last = now
				if err != nil {
					if ctx.Err() == nil {
						tl.Error().Str("error", secret.Redact(err.Error())).Msg("timer function failed; it runs again at its next time")
					}
					continue
				}
				for _, l := range lines {
					tl.Info().Msg(l)
				}
			}
		}()
	}
}

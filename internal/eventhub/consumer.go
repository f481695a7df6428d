// Package eventhub is kvwatch's own Event Hubs consumer, for running
// outside Azure Functions (Container Apps, AKS, a VM): `kvwatch consume`.
// It reads the hub with the SDK's Processor, which balances partitions
// between instances through a CheckpointStore (here on Table Storage),
// and sends every batch through the same pipeline `kvwatch serve` uses.
//
// Delivery is at least once, like the Functions trigger's: a batch is
// checkpointed only after the pipeline took it, a batch the pipeline
// refuses (a dependency failed) is retried with backoff for as long as it
// takes, holding its partition, and a restart resumes after the last
// checkpoint. Positions (partition and sequence number) make processing
// the same event twice harmless.
package eventhub

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/secret"
)

// Processor runs one batch through kvwatch (a *pipeline.Pipeline). An
// error means a dependency failed and the batch must be retried; bad
// input is never an error (it is dead-lettered). Process is called
// concurrently for different partitions, one batch at a time per
// partition.
type Processor interface {
	Process(ctx context.Context, b *ingest.Batch) (pipeline.Summary, error)
}

// PartitionClient is what the consumer uses of a partition it owns; an
// *azeventhubs.ProcessorPartitionClient is one.
type PartitionClient interface {
	PartitionID() string
	ReceiveEvents(ctx context.Context, count int, options *azeventhubs.ReceiveEventsOptions) ([]*azeventhubs.ReceivedEventData, error)
	UpdateCheckpoint(ctx context.Context, latestEvent *azeventhubs.ReceivedEventData, options *azeventhubs.UpdateCheckpointOptions) error
	Close(ctx context.Context) error
}

var _ PartitionClient = (*azeventhubs.ProcessorPartitionClient)(nil)

// RetryErrorAt is the attempt from which a batch that keeps failing is
// logged as an error rather than a warning: it holds its partition, and
// Event Hubs keeps events 7 days at most.
const RetryErrorAt = 5

// Options configure Run. Zero values take the defaults shown.
type Options struct {
	// Namespace, EventHub and ConsumerGroup describe the hub in every
	// batch's Partition and in logs (ClientFromEnv's Hub gives them).
	Namespace, EventHub, ConsumerGroup string

	// BatchSize is the most events handed to the pipeline at once
	// (default 100); MaxWait how long a partition waits to fill a batch
	// before it hands on what it has (default 5s).
	BatchSize int
	MaxWait   time.Duration

	// RetryDelay is the wait before a failed batch is tried again,
	// doubling with every failure up to MaxRetryDelay (default 5s and 5m,
	// as the Functions app's retry policy).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration

	// Grace bounds how long a batch being processed when ctx is cancelled
	// may take to finish and be checkpointed (default 30s).
	Grace time.Duration

	// Processor configures the SDK's load balancing (strategy, update
	// interval, ownership expiry, prefetch). Where a partition without a
	// checkpoint starts: Processor.StartPositions, by default the earliest
	// event the hub keeps (as the Functions trigger does).
	Processor azeventhubs.ProcessorOptions

	// Letters receives the events of a batch whose processing panicked (a
	// bug), so that the partition goes on; with no Letters such a batch is
	// retried like a failed one.
	Letters deadletter.Sink

	Log zerolog.Logger
	// Now is the clock dead letters are stamped with; time.Now when nil.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Second
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 5 * time.Second
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = 5 * time.Minute
	}
	if o.MaxRetryDelay < o.RetryDelay {
		o.MaxRetryDelay = o.RetryDelay
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if isZero(o.Processor.StartPositions.Default) {
		o.Processor.StartPositions.Default = azeventhubs.StartPosition{Earliest: to.Ptr(true)}
	}
}

func isZero(p azeventhubs.StartPosition) bool {
	return p.Offset == nil && p.SequenceNumber == nil && p.EnqueuedTime == nil && p.Earliest == nil && p.Latest == nil
}

// Run consumes the hub until ctx is cancelled: the SDK's Processor claims
// partitions (balancing them with other instances through store), and each
// partition it hands over is read in batches, processed by proc and
// checkpointed. It returns nil after a graceful shutdown: no new batches
// once ctx is cancelled, batches under way finished and checkpointed
// (within Options.Grace), partition clients closed, ownerships given up so
// other instances take them at once.
//
// It returns an error at once when the hub cannot be reached at start
// (wrong name, no permission), so that a misconfiguration shows. Later
// failures of the load balancer (Table Storage or Event Hubs unreachable
// for longer than their retries) are logged, and the Processor is started
// again with backoff: the in-memory parts of this process survive.
func Run(ctx context.Context, client *azeventhubs.ConsumerClient, store azeventhubs.CheckpointStore, proc Processor, opts Options) error {
	if client == nil || store == nil || proc == nil {
		return errors.New("eventhub: Run needs a consumer client, a checkpoint store and a processor")
	}
	opts.defaults()
	props, err := client.GetEventHubProperties(ctx, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return secret.Error(fmt.Errorf("event hub %s: %w", opts.EventHub, err))
	}
	opts.Log.Info().Str("event_hub", props.Name).Int("partitions", len(props.PartitionIDs)).
		Str("consumer_group", opts.ConsumerGroup).Msg("consuming the event hub")
	po := opts.Processor
	c := &consumer{proc: proc, opts: opts}
	return c.run(ctx, func() (source, error) {
		p, err := azeventhubs.NewProcessor(client, store, &po)
		if err != nil {
			return nil, err
		}
		return processorSource{p}, nil
	})
}

// source hands over partition clients: the SDK's Processor, or a fake.
type source interface {
	// Run balances partitions until ctx is cancelled (nil) or it fails.
	Run(ctx context.Context) error
	// Next blocks until a partition is claimed (its client), ctx is done
	// or Run has stopped (nil).
	Next(ctx context.Context) PartitionClient
}

type processorSource struct{ p *azeventhubs.Processor }

func (s processorSource) Run(ctx context.Context) error { return s.p.Run(ctx) }

func (s processorSource) Next(ctx context.Context) PartitionClient {
	if pc := s.p.NextPartitionClient(ctx); pc != nil {
		return pc
	}
	return nil // not a typed nil in the interface
}

type consumer struct {
	proc Processor
	opts Options
}

// run starts sources (a new one after each failure) until ctx is done.
func (c *consumer) run(ctx context.Context, newSource func() (source, error)) error {
	// work is the context batches are processed and checkpointed with: it
	// outlives ctx by the grace period, so that a batch under way at
	// shutdown finishes.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	go func() {
		select {
		case <-work.Done():
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(c.opts.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancelWork()
		case <-work.Done():
		}
	}()

	delay := c.opts.RetryDelay
	for {
		src, err := newSource()
		if err != nil {
			return fmt.Errorf("eventhub: %w", err)
		}
		started := time.Now()
		err = c.generation(ctx, work, src)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > c.opts.MaxRetryDelay {
			delay = c.opts.RetryDelay // it had been running well: start the backoff over
		}
		c.opts.Log.Error().Str("error", errText(err)).Dur("restart_in", delay).
			Msg("the Event Hubs processor stopped; starting it again (partitions resume from their checkpoints)")
		if sleep(ctx, delay) != nil {
			return nil
		}
		delay = min(2*delay, c.opts.MaxRetryDelay)
	}
}

// generation runs one source: a goroutine per partition it hands over,
// until ctx is done or the source stops. The source's load balancing is
// stopped only after every partition loop has ended, so ownerships are
// kept (renewed) while batches finish, then given up.
func (c *consumer) generation(ctx, work context.Context, src source) error {
	lbCtx, stopLB := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLB()
	lbDone := make(chan error, 1)
	go func() { lbDone <- src.Run(lbCtx) }()

	var wg sync.WaitGroup
	for {
		pc := src.Next(ctx)
		if pc == nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.partition(ctx, work, pc)
		}()
	}
	wg.Wait()
	stopLB()
	err := <-lbDone
	if err == nil && ctx.Err() == nil {
		err = errors.New("the processor stopped without an error")
	}
	return err
}

// partition reads one partition until ctx is done, the partition is lost
// or receiving fails (the Processor then opens it again from its
// checkpoint, if this instance still owns it).
func (c *consumer) partition(ctx, work context.Context, pc PartitionClient) {
	pid := pc.PartitionID()
	log := c.opts.Log.With().Str("partition", pid).Logger()
	log.Info().Msg("partition claimed")
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := pc.Close(cctx); err != nil {
			log.Debug().Str("error", errText(err)).Msg("closing the partition client")
		}
		log.Info().Msg("partition released")
	}()
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, c.opts.MaxWait)
		events, err := pc.ReceiveEvents(rctx, c.opts.BatchSize, nil)
		cancel()
		if ctx.Err() != nil {
			// Shutting down: events received but not processed are not
			// checkpointed, so they come again.
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			var ehErr *azeventhubs.Error
			if errors.As(err, &ehErr) && ehErr.Code == azeventhubs.ErrorCodeOwnershipLost {
				log.Info().Msg("partition taken over by another consumer")
				return
			}
			log.Warn().Str("error", errText(err)).
				Msg("receiving failed; the partition is closed and opened again from its checkpoint")
			return
		}
		if len(events) == 0 {
			continue
		}
		if !c.handle(ctx, work, log, pc, events) {
			return
		}
	}
}

// handle processes one batch, retrying until it succeeds, and checkpoints
// it. It returns false if it gave up because of a shutdown (the batch is
// then not checkpointed).
func (c *consumer) handle(ctx, work context.Context, log zerolog.Logger, pc PartitionClient, events []*azeventhubs.ReceivedEventData) bool {
	pid := pc.PartitionID()
	first, last := events[0].SequenceNumber, events[len(events)-1].SequenceNumber
	var b *ingest.Batch
	delay := c.opts.RetryDelay
	for attempt := 1; ; attempt++ {
		sum, panicked, stack, err := c.try(work, pid, events, &b, attempt)
		if panicked != nil {
			log.Error().Str("panic", fmt.Sprint(panicked)).Str("stack", string(stack)).
				Int64("first_sequence", first).Int64("last_sequence", last).
				Msg("processing a batch panicked (a bug); its events are dead-lettered")
			err = c.deadLetter(work, pid, events, panicked)
		}
		if err == nil {
			if panicked == nil {
				log.Debug().Int("attempt", attempt).Msg(sum.String())
			}
			break
		}
		if ctx.Err() != nil {
			log.Warn().Str("error", errText(err)).Int64("first_sequence", first).Int64("last_sequence", last).
				Msg("shutting down with a batch that failed; it is not checkpointed and will be processed again")
			return false
		}
		ev := log.Warn()
		if attempt >= RetryErrorAt {
			ev = log.Error()
		}
		ev.Str("error", errText(err)).Int("attempt", attempt).Dur("retry_in", delay).
			Int64("first_sequence", first).Int64("last_sequence", last).
			Msg("batch failed on a dependency; retrying it, the partition is held until it succeeds")
		if sleep(ctx, delay) != nil {
			log.Warn().Int64("first_sequence", first).Int64("last_sequence", last).
				Msg("shutting down with a batch that failed; it is not checkpointed and will be processed again")
			return false
		}
		delay = min(2*delay, c.opts.MaxRetryDelay)
	}
	if err := pc.UpdateCheckpoint(work, events[len(events)-1], nil); err != nil {
		// The next batch's checkpoint covers this one; after a restart the
		// events since the last checkpoint come again, which is harmless.
		log.Error().Str("error", errText(err)).Int64("sequence", last).
			Msg("checkpoint not stored; the events since the last one will be processed again after a restart")
	}
	return true
}

// try decodes the batch (once: *b keeps it) and processes a copy of it, so
// that a retry gets the batch as first decoded. A panic is returned, not
// raised.
func (c *consumer) try(ctx context.Context, pid string, events []*azeventhubs.ReceivedEventData, b **ingest.Batch, attempt int) (sum pipeline.Summary, panicked any, stack []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked, stack = p, debug.Stack()
		}
	}()
	if *b == nil {
		*b = c.decode(pid, events)
	}
	cp := **b
	cp.Events = slices.Clone(cp.Events)
	cp.Letters = slices.Clone(cp.Letters)
	cp.Problems = slices.Clone(cp.Problems)
	if attempt > 1 {
		cp.Retry = &ingest.RetryContext{RetryCount: attempt - 1, MaxRetryCount: -1}
	}
	sum, err = c.proc.Process(ctx, &cp)
	return sum, nil, nil, err
}

// decode reads the events' bodies into a batch. Each record's position is
// the partition and the event's sequence number; Event is 0 for all of
// them, since an index within a receive batch would depend on how batches
// happened to be cut, and positions must not (a redelivered event must be
// recognised as the same input).
func (c *consumer) decode(pid string, events []*azeventhubs.ReceivedEventData) *ingest.Batch {
	b := &ingest.Batch{Partition: ingest.PartitionContext{
		FullyQualifiedNamespace: c.opts.Namespace, EventHubName: c.opts.EventHub,
		ConsumerGroup: c.opts.ConsumerGroup, PartitionID: pid}}
	dec := ingest.Decoder{Now: c.opts.Now}
	for _, ev := range events {
		src := audit.Source{Namespace: c.opts.Namespace, Hub: c.opts.EventHub, Partition: pid,
			Sequence: ev.SequenceNumber, HasSequence: true, Record: -1}
		if ev.EnqueuedTime != nil {
			src.Enqueued = ev.EnqueuedTime.UTC()
		}
		dec.Body(b, ev.Body, src)
	}
	return b
}

// deadLetter stores every event of a batch whose processing panicked.
func (c *consumer) deadLetter(ctx context.Context, pid string, events []*azeventhubs.ReceivedEventData, panicked any) error {
	if c.opts.Letters == nil {
		return fmt.Errorf("processing panicked (%v) and there is no dead-letter sink; retrying", panicked)
	}
	at := c.opts.Now().UTC()
	letters := make([]deadletter.Letter, len(events))
	for i, ev := range events {
		l := deadletter.Letter{At: at, Reason: fmt.Sprintf("internal error while processing this event: %v", panicked),
			Partition: pid, Sequence: ev.SequenceNumber, HasSequence: true, Record: -1}
		l.SetRaw(ev.Body)
		letters[i] = l
	}
	if err := c.opts.Letters.Put(ctx, letters); err != nil {
		return fmt.Errorf("processing panicked (%v) and its dead letters were not stored: %w", panicked, err)
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return secret.Redact(err.Error())
}

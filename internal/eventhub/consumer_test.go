package eventhub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

// record returns one Key Vault audit record (a SecretGet).
func record(i int) map[string]any {
	return map[string]any{
		"time":            fmt.Sprintf("2026-11-23T10:%02d:%02d.000Z", (i/60)%60, i%60),
		"resourceId":      "/SUBSCRIPTIONS/8F3B2C1D-4E5A-4B6C-9D7E-0A1B2C3D4E5F/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-TEST",
		"operationName":   "SecretGet",
		"category":        "AuditEvent",
		"resultType":      "Success",
		"callerIpAddress": "198.51.100.7",
		"identity":        map[string]any{"claim": map[string]any{"oid": "11111111-2222-3333-4444-555555555555"}},
		"properties": map[string]any{
			"id":             fmt.Sprintf("https://kv-test.vault.azure.net/secrets/s%d/0123456789abcdef", i),
			"httpStatusCode": 200,
		},
	}
}

// eventBody is an Event Hubs event body as diagnostic settings send it:
// {"records": [...]}, here with two records.
func eventBody(i int) []byte {
	b, err := json.Marshal(map[string]any{"records": []any{record(2 * i), record(2*i + 1)}})
	if err != nil {
		panic(err)
	}
	return b
}

var baseEnqueued = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// fakePartition is a partition client over an in-memory partition log.
type fakePartition struct {
	id string

	mu          sync.Mutex
	log         []*azeventhubs.ReceivedEventData
	next        int // index of the next event to deliver
	checkpoints []int64
	receives    int
	closed      bool
	errs        []error // returned by ReceiveEvents, first to last, before events
	appended    chan struct{}
	onClose     func()
}

func newFakePartition(id string, firstSeq int64, n int) *fakePartition {
	p := &fakePartition{id: id, appended: make(chan struct{}, 1)}
	p.append(firstSeq, n)
	return p
}

// append adds n events numbered from seq on; event i's body holds records
// 2i and 2i+1 (i counted from the partition's start).
func (p *fakePartition) append(seq int64, n int) {
	p.mu.Lock()
	for i := range n {
		s := seq + int64(i)
		enq := baseEnqueued.Add(time.Duration(s) * time.Millisecond)
		p.log = append(p.log, &azeventhubs.ReceivedEventData{
			EventData:      azeventhubs.EventData{Body: eventBody(int(s))},
			SequenceNumber: s, Offset: fmt.Sprint(s * 1024), EnqueuedTime: &enq,
		})
	}
	p.mu.Unlock()
	select {
	case p.appended <- struct{}{}:
	default:
	}
}

func (p *fakePartition) PartitionID() string { return p.id }

// ReceiveEvents waits until count events are there or ctx is done, as the
// SDK's does, and returns what it has (ctx's error when nothing).
func (p *fakePartition) ReceiveEvents(ctx context.Context, count int, _ *azeventhubs.ReceiveEventsOptions) ([]*azeventhubs.ReceivedEventData, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errors.New("fake: partition client closed")
		}
		if len(p.errs) > 0 {
			err := p.errs[0]
			p.errs = p.errs[1:]
			p.receives++
			p.mu.Unlock()
			return nil, err
		}
		avail := len(p.log) - p.next
		if avail >= count || (ctx.Err() != nil && avail > 0) {
			n := min(avail, count)
			out := p.log[p.next : p.next+n]
			p.next += n
			p.receives++
			p.mu.Unlock()
			return out, nil
		}
		p.mu.Unlock()
		if ctx.Err() != nil {
			p.mu.Lock()
			p.receives++
			p.mu.Unlock()
			return nil, ctx.Err()
		}
		select {
		case <-ctx.Done():
		case <-p.appended:
		}
	}
}

func (p *fakePartition) UpdateCheckpoint(_ context.Context, ev *azeventhubs.ReceivedEventData, _ *azeventhubs.UpdateCheckpointOptions) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.checkpoints = append(p.checkpoints, ev.SequenceNumber)
	return nil
}

func (p *fakePartition) Close(context.Context) error {
	p.mu.Lock()
	p.closed = true
	f := p.onClose
	p.mu.Unlock()
	if f != nil {
		f()
	}
	return nil
}

func (p *fakePartition) state() (checkpoints []int64, closed bool, next int, receives int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.checkpoints), p.closed, p.next, p.receives
}

// fakeSource hands over the partitions given to it, like the Processor.
type fakeSource struct {
	clients  chan PartitionClient
	fail     chan error // Run returns this error
	stopped  chan struct{}
	stopOnce sync.Once
	// lbStopped is when Run's context was cancelled.
	lbStopped atomic.Pointer[time.Time]
	owned     []*fakePartition
}

func newFakeSource(parts ...*fakePartition) *fakeSource {
	s := &fakeSource{clients: make(chan PartitionClient, len(parts)), fail: make(chan error, 1), stopped: make(chan struct{})}
	for _, p := range parts {
		s.clients <- p
		s.owned = append(s.owned, p)
	}
	return s
}

func (s *fakeSource) Run(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
		now := time.Now()
		s.lbStopped.Store(&now)
	case err = <-s.fail:
	}
	// Like the Processor: close what it handed out, then stop handing out.
	for _, p := range s.owned {
		p.Close(context.Background())
	}
	s.stopOnce.Do(func() { close(s.stopped) })
	return err
}

func (s *fakeSource) Next(ctx context.Context) PartitionClient {
	select {
	case pc := <-s.clients:
		return pc
	case <-ctx.Done():
		return nil
	case <-s.stopped:
		return nil
	}
}

// fakeProc records the batches it is given; fail decides, per call,
// whether it fails (or panics, or blocks).
type fakeProc struct {
	mu      sync.Mutex
	batches []*ingest.Batch
	// at records, per call, the checkpoints the batch's partition had then.
	at   [][]int64
	part map[string]*fakePartition
	fail func(call int, ctx context.Context, b *ingest.Batch) error
}

func (f *fakeProc) Process(ctx context.Context, b *ingest.Batch) (pipeline.Summary, error) {
	f.mu.Lock()
	call := len(f.batches)
	f.batches = append(f.batches, b)
	if p := f.part[b.Partition.PartitionID]; p != nil {
		cps, _, _, _ := p.state()
		f.at = append(f.at, cps)
	} else {
		f.at = append(f.at, nil)
	}
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		if err := fail(call, ctx, b); err != nil {
			return pipeline.Summary{}, err
		}
	}
	return pipeline.Summary{Partition: b.Partition.PartitionID, Stats: b.Stats}, nil
}

func (f *fakeProc) calls() []*ingest.Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil {
			out = append(out, m)
		}
	}
	return out
}

func testOptions(logs *syncBuffer) Options {
	return Options{
		Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup,
		BatchSize: 100, MaxWait: 30 * time.Millisecond,
		RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond,
		Grace: 2 * time.Second,
		Log:   zerolog.New(logs),
	}
}

// runConsumer runs a consumer over sources until stop is called; it returns
// Run's error through the channel.
func runConsumer(t *testing.T, proc Processor, opts Options, sources ...*fakeSource) (stop func() error, newSources *atomic.Int32) {
	t.Helper()
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var n atomic.Int32
	c := &consumer{proc: proc, opts: opts}
	go func() {
		done <- c.run(ctx, func() (source, error) {
			i := int(n.Add(1)) - 1
			if i >= len(sources) {
				return newFakeSource(), nil // nothing more to hand out
			}
			return sources[i], nil
		})
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10s of cancellation")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop, &n
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestBatchesPositionsCheckpoints: events are handed to the processor in
// batches of BatchSize, every record with its partition, sequence number,
// enqueued time and record index; each batch is checkpointed at its last
// event, after it was processed; a body that is not JSON is dead-lettered
// with its position, not fatal.
func TestBatchesPositionsCheckpoints(t *testing.T) {
	part := newFakePartition("3", 1000, 250)
	// Event 1100 is not JSON.
	part.log[100].Body = []byte("not json")
	proc := &fakeProc{part: map[string]*fakePartition{"3": part}}
	var logs syncBuffer
	stop, _ := runConsumer(t, proc, testOptions(&logs), newFakeSource(part))

	waitFor(t, "three checkpoints", func() bool { cps, _, _, _ := part.state(); return len(cps) == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	calls := proc.calls()
	if len(calls) != 3 {
		t.Fatalf("%d batches, want 3", len(calls))
	}
	cps, closed, _, _ := part.state()
	if want := []int64{1099, 1199, 1249}; !slices.Equal(cps, want) {
		t.Errorf("checkpoints %v, want %v", cps, want)
	}
	if !closed {
		t.Error("partition client not closed at shutdown")
	}
	seq := int64(1000)
	for i, b := range calls {
		if b.Retry != nil {
			t.Errorf("batch %d has a retry context on its first attempt", i)
		}
		if got := proc.at[i]; len(got) != i {
			t.Errorf("batch %d processed with %d checkpoints already stored, want %d (checkpoint after processing)", i, len(got), i)
		}
		want := ingest.PartitionContext{FullyQualifiedNamespace: testNS, EventHubName: testHub, ConsumerGroup: testGroup, PartitionID: "3"}
		if b.Partition != want {
			t.Errorf("batch %d partition %+v, want %+v", i, b.Partition, want)
		}
		size := []int{100, 100, 50}[i]
		if b.Stats.Events != size {
			t.Errorf("batch %d: %d events, want %d", i, b.Stats.Events, size)
		}
		bad := 0
		if i == 1 {
			bad = 1
			if len(b.Letters) != 1 || b.Letters[0].Partition != "3" || !b.Letters[0].HasSequence || b.Letters[0].Sequence != 1100 ||
				b.Letters[0].Raw != "not json" {
				t.Errorf("batch 1 letters %+v, want the body of event 1100", b.Letters)
			}
		} else if len(b.Letters) != 0 {
			t.Errorf("batch %d has letters %+v", i, b.Letters)
		}
		if len(b.Events) != 2*(size-bad) {
			t.Fatalf("batch %d: %d records, want %d (problems %v)", i, len(b.Events), 2*(size-bad), b.Problems)
		}
		var seqs []int64 // the sequence numbers of the batch's good events
		for k := range size {
			if q := seq + int64(k); q != 1100 {
				seqs = append(seqs, q)
			}
		}
		for j, e := range b.Events {
			s := e.Source
			wantSeq := seqs[j/2]
			if s.Namespace != testNS || s.Hub != testHub ||
				s.Partition != "3" || !s.HasSequence || s.Sequence != wantSeq || s.Record != j%2 ||
				!s.Enqueued.Equal(baseEnqueued.Add(time.Duration(wantSeq)*time.Millisecond)) || s.Event != 0 {
				t.Fatalf("batch %d record %d source %+v, want %s/%s partition 3 sequence %d record %d", i, j, s, testNS, testHub, wantSeq, j%2)
			}
			if want := fmt.Sprintf("s%d", 2*wantSeq+int64(j%2)); e.ObjectName != want {
				t.Fatalf("batch %d record %d is object %q, want %q", i, j, e.ObjectName, want)
			}
		}
		seq += int64(size)
	}
}

// TestPartialBatchAfterMaxWait: fewer events than BatchSize are handed on
// once MaxWait has passed, and events arriving later form the next batch.
func TestPartialBatchAfterMaxWait(t *testing.T) {
	part := newFakePartition("0", 0, 7)
	proc := &fakeProc{}
	var logs syncBuffer
	stop, _ := runConsumer(t, proc, testOptions(&logs), newFakeSource(part))
	waitFor(t, "first checkpoint", func() bool { cps, _, _, _ := part.state(); return len(cps) == 1 })
	part.append(7, 3)
	waitFor(t, "second checkpoint", func() bool { cps, _, _, _ := part.state(); return len(cps) == 2 })
	stop()
	cps, _, _, _ := part.state()
	if !slices.Equal(cps, []int64{6, 9}) {
		t.Errorf("checkpoints %v, want [6 9]", cps)
	}
	calls := proc.calls()
	if len(calls) != 2 || calls[0].Stats.Events != 7 || calls[1].Stats.Events != 3 {
		t.Errorf("batches %d (want 2 of 7 and 3 events)", len(calls))
	}
}

// TestFailedBatchRetried: a batch the processor refuses is given again —
// the same events at the same positions, with a retry count — with
// backoff, holding the partition (nothing more is received), and is
// checkpointed only once it succeeds. From the fifth attempt on, the
// failure is logged as an error.
func TestFailedBatchRetried(t *testing.T) {
	part := newFakePartition("1", 50, 100)
	const failures = 6
	proc := &fakeProc{part: map[string]*fakePartition{"1": part}}
	var receivesDuringRetry []int
	proc.fail = func(call int, _ context.Context, _ *ingest.Batch) error {
		_, _, _, r := part.state()
		receivesDuringRetry = append(receivesDuringRetry, r)
		if call < failures {
			return fmt.Errorf("table storage: 503 (attempt %d) AccountKey=c2VjcmV0", call+1)
		}
		return nil
	}
	var logs syncBuffer
	opts := testOptions(&logs)
	start := time.Now()
	stop, _ := runConsumer(t, proc, opts, newFakeSource(part))
	waitFor(t, "checkpoint", func() bool { cps, _, _, _ := part.state(); return len(cps) == 1 })
	elapsed := time.Since(start)
	stop()

	calls := proc.calls()
	if len(calls) != failures+1 {
		t.Fatalf("%d attempts, want %d", len(calls), failures+1)
	}
	for i, b := range calls {
		if i == 0 && b.Retry != nil {
			t.Errorf("first attempt has retry %+v", b.Retry)
		}
		if i > 0 && (b.Retry == nil || b.Retry.RetryCount != i) {
			t.Errorf("attempt %d retry context %+v, want RetryCount %d", i+1, b.Retry, i)
		}
		if len(b.Events) != 200 || b.Events[0].Source != calls[0].Events[0].Source || b.Events[199].Source != calls[0].Events[199].Source {
			t.Errorf("attempt %d is not the same batch", i+1)
		}
		if cps := proc.at[i]; len(cps) != 0 {
			t.Errorf("attempt %d: checkpoints %v already stored: a failed batch was checkpointed", i+1, cps)
		}
		if receivesDuringRetry[i] != receivesDuringRetry[0] {
			t.Errorf("attempt %d: the partition was read on while its batch was failing", i+1)
		}
	}
	cps, _, _, _ := part.state()
	if !slices.Equal(cps, []int64{149}) {
		t.Errorf("checkpoints %v, want [149]", cps)
	}
	// Backoff: 5, 10, 20, 20, 20, 20 ms at least (less jitter-free sleeps).
	if elapsed < 90*time.Millisecond {
		t.Errorf("6 retries took %v: no backoff", elapsed)
	}
	var warns, errs int
	for _, l := range logs.lines() {
		if l["message"] != "batch failed on a dependency; retrying it, the partition is held until it succeeds" {
			continue
		}
		att := int(l["attempt"].(float64))
		switch l["level"] {
		case "warn":
			warns++
			if att >= RetryErrorAt {
				t.Errorf("attempt %d logged as a warning", att)
			}
		case "error":
			errs++
			if att < RetryErrorAt {
				t.Errorf("attempt %d logged as an error", att)
			}
		}
		if s, _ := l["error"].(string); strings.Contains(s, "c2VjcmV0") || !strings.Contains(s, "503") {
			t.Errorf("logged error %q: want the cause with secrets redacted", s)
		}
	}
	if warns != RetryErrorAt-1 || errs != failures-(RetryErrorAt-1) {
		t.Errorf("%d warnings and %d errors logged for %d failures", warns, errs, failures)
	}
}

// TestShutdownDuringRetries: a batch that keeps failing is never
// checkpointed; cancelling stops the retries, closes the partition and
// returns nil.
func TestShutdownDuringRetries(t *testing.T) {
	part := newFakePartition("0", 0, 10)
	proc := &fakeProc{fail: func(int, context.Context, *ingest.Batch) error { return errors.New("state store down") }}
	var logs syncBuffer
	stop, _ := runConsumer(t, proc, testOptions(&logs), newFakeSource(part))
	waitFor(t, "a few attempts", func() bool { return len(proc.calls()) >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	cps, closed, _, _ := part.state()
	if len(cps) != 0 {
		t.Errorf("failed batch checkpointed at %v", cps)
	}
	if !closed {
		t.Error("partition not closed")
	}
}

// TestGracefulShutdown: a batch under way when ctx is cancelled finishes
// with a live context and is checkpointed; only then are partitions closed
// and the load balancer stopped (so ownership is given up last); nothing
// new is received.
func TestGracefulShutdown(t *testing.T) {
	part := newFakePartition("0", 0, 100)
	part.append(100, 100) // a second batch waiting
	inProcess := make(chan struct{})
	release := make(chan struct{})
	var processCtxErr error
	proc := &fakeProc{fail: func(call int, ctx context.Context, _ *ingest.Batch) error {
		if call == 0 {
			close(inProcess)
			<-release
			processCtxErr = ctx.Err()
		}
		return nil
	}}
	var closedAt atomic.Pointer[time.Time]
	part.onClose = func() { now := time.Now(); closedAt.CompareAndSwap(nil, &now) }
	src := newFakeSource(part)
	var logs syncBuffer
	stop, _ := runConsumer(t, proc, testOptions(&logs), src)
	<-inProcess
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(50 * time.Millisecond) // the cancellation has happened
	if cps, _, _, _ := part.state(); len(cps) != 0 {
		t.Fatal("checkpointed before the batch finished")
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if processCtxErr != nil {
		t.Errorf("the batch under way saw its context cancelled at shutdown: %v", processCtxErr)
	}
	cps, closed, next, _ := part.state()
	if !slices.Equal(cps, []int64{99}) {
		t.Errorf("checkpoints %v, want [99]: the batch under way is checkpointed", cps)
	}
	if !closed {
		t.Fatal("partition not closed")
	}
	if n := len(proc.calls()); n != 1 || next != 100 {
		t.Errorf("%d batches processed, %d events received: want 1 and 100 (nothing new after cancellation)", n, next)
	}
	lb := src.lbStopped.Load()
	if lb == nil || lb.Before(*closedAt.Load()) {
		t.Errorf("load balancer stopped at %v, partition closed at %v: want the partition closed first", lb, closedAt.Load())
	}
}

// TestGraceExpires: a batch that does not finish within Grace sees its
// context cancelled, fails, and is not checkpointed.
func TestGraceExpires(t *testing.T) {
	part := newFakePartition("0", 0, 100)
	inProcess := make(chan struct{})
	proc := &fakeProc{fail: func(call int, ctx context.Context, _ *ingest.Batch) error {
		close(inProcess)
		<-ctx.Done()
		return ctx.Err()
	}}
	var logs syncBuffer
	opts := testOptions(&logs)
	opts.Grace = 50 * time.Millisecond
	stop, _ := runConsumer(t, proc, opts, newFakeSource(part))
	<-inProcess
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > 5*time.Second {
		t.Errorf("shutdown took %v with a 50ms grace", d)
	}
	if cps, closed, _, _ := part.state(); len(cps) != 0 || !closed {
		t.Errorf("checkpoints %v closed %v: want none, closed", cps, closed)
	}
}

// TestPanicDeadLettered: a batch whose processing panics is dead-lettered
// event by event, with positions and raw bodies, and checkpointed; the
// partition goes on.
func TestPanicDeadLettered(t *testing.T) {
	part := newFakePartition("2", 10, 100)
	part.append(110, 100)
	proc := &fakeProc{fail: func(call int, _ context.Context, _ *ingest.Batch) error {
		if call == 0 {
			panic("index out of range")
		}
		return nil
	}}
	letters := &deadletter.Memory{}
	var logs syncBuffer
	opts := testOptions(&logs)
	opts.Letters = letters
	stop, _ := runConsumer(t, proc, opts, newFakeSource(part))
	waitFor(t, "two checkpoints", func() bool { cps, _, _, _ := part.state(); return len(cps) == 2 })
	stop()
	got := letters.Letters()
	if len(got) != 100 {
		t.Fatalf("%d dead letters, want 100", len(got))
	}
	for i, l := range got {
		if l.Partition != "2" || !l.HasSequence || l.Sequence != int64(10+i) || l.Raw != string(eventBody(10+i)) ||
			!strings.Contains(l.Reason, "index out of range") {
			t.Fatalf("letter %d: %+v", i, l)
		}
	}
	if cps, _, _, _ := part.state(); !slices.Equal(cps, []int64{109, 209}) {
		t.Errorf("checkpoints %v, want [109 209]", cps)
	}
	found := false
	for _, l := range logs.lines() {
		if l["level"] == "error" && strings.Contains(fmt.Sprint(l["stack"]), "consumer_test.go") {
			found = true
		}
	}
	if !found {
		t.Error("the panic was not logged as an error with its stack")
	}
}

// TestPanicWithoutLetters: with nowhere to dead-letter, a panicking batch
// is retried like a failed one, and checkpointed once it succeeds.
func TestPanicWithoutLetters(t *testing.T) {
	part := newFakePartition("0", 0, 5)
	proc := &fakeProc{fail: func(call int, _ context.Context, _ *ingest.Batch) error {
		if call < 2 {
			panic("boom")
		}
		return nil
	}}
	var logs syncBuffer
	stop, _ := runConsumer(t, proc, testOptions(&logs), newFakeSource(part))
	waitFor(t, "checkpoint", func() bool { cps, _, _, _ := part.state(); return len(cps) == 1 })
	stop()
	if n := len(proc.calls()); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

// TestPartitionsIndependent: partitions are processed concurrently; one
// held by a failing batch does not hold the others.
func TestPartitionsIndependent(t *testing.T) {
	p0 := newFakePartition("0", 0, 30)
	p1 := newFakePartition("1", 500, 30)
	var healthy atomic.Bool
	proc := &fakeProc{fail: func(_ int, _ context.Context, b *ingest.Batch) error {
		if b.Partition.PartitionID == "0" && !healthy.Load() {
			return errors.New("down for partition 0")
		}
		return nil
	}}
	var logs syncBuffer
	stop, _ := runConsumer(t, proc, testOptions(&logs), newFakeSource(p0, p1))
	waitFor(t, "partition 1 checkpointed", func() bool { cps, _, _, _ := p1.state(); return len(cps) == 1 })
	if cps, _, _, _ := p0.state(); len(cps) != 0 {
		t.Fatalf("partition 0 checkpointed %v while failing", cps)
	}
	healthy.Store(true)
	waitFor(t, "partition 0 checkpointed", func() bool { cps, _, _, _ := p0.state(); return len(cps) == 1 })
	stop()
	c0, _, _, _ := p0.state()
	c1, _, _, _ := p1.state()
	if !slices.Equal(c0, []int64{29}) || !slices.Equal(c1, []int64{529}) {
		t.Errorf("checkpoints %v %v", c0, c1)
	}
}

// TestReceiveErrors: losing the partition to another consumer, or a
// receive error, ends that partition's loop (the Processor opens it again
// from its checkpoint); nothing is processed or checkpointed.
func TestReceiveErrors(t *testing.T) {
	for _, err := range []error{
		&azeventhubs.Error{Code: azeventhubs.ErrorCodeOwnershipLost},
		errors.New("amqp: link detached"),
	} {
		part := newFakePartition("0", 0, 10)
		part.errs = []error{err}
		proc := &fakeProc{}
		var logs syncBuffer
		stop, _ := runConsumer(t, proc, testOptions(&logs), newFakeSource(part))
		waitFor(t, "partition closed", func() bool { _, closed, _, _ := part.state(); return closed })
		stop()
		if n := len(proc.calls()); n != 0 {
			t.Errorf("%v: %d batches processed", err, n)
		}
		if cps, _, _, _ := part.state(); len(cps) != 0 {
			t.Errorf("%v: checkpoints %v", err, cps)
		}
	}
}

// TestProcessorRestarted: when the load balancer fails (storage or Event
// Hubs unreachable past their retries), a new one is started after a
// backoff, and the partitions it hands over are consumed.
func TestProcessorRestarted(t *testing.T) {
	first := newFakePartition("0", 0, 10)
	second := newFakePartition("0", 10, 10)
	s1, s2 := newFakeSource(first), newFakeSource(second)
	proc := &fakeProc{}
	var logs syncBuffer
	stop, n := runConsumer(t, proc, testOptions(&logs), s1, s2)
	waitFor(t, "first checkpoint", func() bool { cps, _, _, _ := first.state(); return len(cps) == 1 })
	s1.fail <- errors.New("checkpoint store: list ownerships: giving up after 9 attempts")
	waitFor(t, "second source's checkpoint", func() bool { cps, _, _, _ := second.state(); return len(cps) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 2 {
		t.Errorf("%d processors started, want 2", n.Load())
	}
	found := false
	for _, l := range logs.lines() {
		if l["level"] == "error" && strings.Contains(fmt.Sprint(l["message"]), "processor stopped") {
			found = true
		}
	}
	if !found {
		t.Error("the processor's failure was not logged as an error")
	}
}

func TestRunArguments(t *testing.T) {
	if err := Run(context.Background(), nil, nil, nil, Options{}); err == nil {
		t.Error("Run without a client: no error")
	}
}

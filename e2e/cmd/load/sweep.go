//go:build linux

package main

// The cardinality sweep (issue 11, point 2; `make sweep`): demo.Tenant's
// realistic traffic at several numbers of callers and partitions, through
// the host double into two `kvwatch serve` processes, first with Table
// state (Azurite, round trips counted at the proxy), then, on the same
// records, with memory state; then the restore time of fresh handlers,
// one after another (-restores), after a long history. The figures come
// last, as a table with the goals beside them and PASS or FAIL per goal.

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/azurite"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/host"
)

type sweepOptions struct {
	callers, partitions   []int
	vaults                int
	records               int
	history               int
	historyCallers        int
	historyPartitions     int
	phaseTime, historyMax time.Duration
	batch, eventRecords   int
	handlers              int
	seed                  int64
	keep                  bool
	env                   []string
	restores              int
}

// The goals of issue 11.
const (
	goalRoundTrips = 50.0            // per 1,000 records, at every cardinality
	goalRatio      = 0.5             // Table-state throughput over memory-state throughput
	goalRestore    = 2 * time.Second // fresh handler: start to first batch answered
	goalRSSMiB     = 256             // handler peak resident memory
)

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func runSweep(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o sweepOptions
	fs := flag.NewFlagSet("load sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	callers := fs.String("callers", "5,30,300,3000", "application identities, one configuration each")
	parts := fs.String("partitions", "2,4", "Event Hubs partitions, one configuration each")
	fs.IntVar(&o.vaults, "vaults", 20, "vaults the traffic is spread over")
	fs.IntVar(&o.records, "records", 100_000, "records per configuration (Table state, then the same with memory state)")
	fs.IntVar(&o.history, "history", 1_000_000, "records of history before the restore measurement (0: skip it)")
	fs.IntVar(&o.historyCallers, "history-callers", 300, "callers of the history traffic")
	fs.IntVar(&o.historyPartitions, "history-partitions", 2, "partitions of the history traffic")
	fs.DurationVar(&o.phaseTime, "phase-time", 90*time.Second, "at most this long per configuration and state (a slow store is cut short and fails its goals)")
	fs.DurationVar(&o.historyMax, "history-time", 6*time.Minute, "at most this long to feed the history")
	fs.IntVar(&o.restores, "restores", 3, "fresh handlers started one after another after the history, each with partition 0's next batch (the goal takes the slowest)")
	fs.IntVar(&o.batch, "batch", 100, "events per batch (host.json maxEventBatchSize)")
	fs.IntVar(&o.eventRecords, "event-records", 10, "records per Event Hubs event (batch × this = records per batch)")
	fs.IntVar(&o.handlers, "handlers", 2, "handler processes; partitions are split evenly between them")
	fs.Int64Var(&o.seed, "seed", 1, "traffic seed")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (binary, handler logs)")
	fs.Func("env", "KEY=VALUE added to the Table-state handlers' environment (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want KEY=VALUE")
		}
		o.env = append(o.env, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.callers, err = intList(*callers); err != nil {
		return fmt.Errorf("-callers: %w", err)
	}
	if o.partitions, err = intList(*parts); err != nil {
		return fmt.Errorf("-partitions: %w", err)
	}
	for _, p := range append(o.partitions, o.historyPartitions) {
		if p%o.handlers != 0 {
			return fmt.Errorf("partitions (%d) must be a multiple of -handlers (%d)", p, o.handlers)
		}
	}
	if o.records <= 0 || o.batch <= 0 || o.eventRecords <= 0 || o.vaults <= 0 {
		return errors.New("-records, -batch, -event-records and -vaults must be positive")
	}

	tools, work, bin, cleanup, err := prepare(ctx, "sweep", o.keep, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	az, err := azurite.Launch(tools, azurite.Options{OwnGroup: true})
	if err != nil {
		return err
	}
	defer az.Stop()
	rt, err := startProxy(az.Port)
	if err != nil {
		return err
	}
	defer rt.close()
	hook, err := startCatcher()
	if err != nil {
		return err
	}
	defer hook.close()
	sw := &sweeper{o: o, bin: bin, work: work, conn: azurite.ConnectionString(rt.port), rt: rt, hook: hook, azPid: az.Pid(), stderr: stderr,
		run: fmt.Sprintf("sw%d", rand.IntN(1_000_000))}
	fmt.Fprintf(stderr, "sweep: Azurite (pid %d); %d configurations of %d records, then %d records of history\n",
		az.Pid(), len(o.callers)*len(o.partitions), o.records, o.history)

	var rows []sweepRow
	for _, c := range o.callers {
		for _, p := range o.partitions {
			row, err := sw.configuration(ctx, c, p)
			if err != nil {
				return fmt.Errorf("%d callers, %d partitions: %w", c, p, err)
			}
			rows = append(rows, row)
			fmt.Fprintf(stderr, "sweep: %s\n", row.line())
		}
	}
	var hist *historyResult
	if o.history > 0 {
		if hist, err = sw.historyRestore(ctx); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	hook.mu.Lock()
	twice, tableTwice := 0, 0
	var dups []dup
	for path, t := range hook.runs {
		twice += t.twice
		if !strings.HasPrefix(path, "/alerts/"+memoryRun) {
			tableTwice += t.twice
		}
		dups = append(dups, t.dups...)
	}
	hook.mu.Unlock()
	slices.SortStableFunc(dups, func(a, b dup) int { return cmp.Compare(a.path, b.path) }) // each run's in the order they came
	if twice > 0 {
		// Which, and how long after: a repeat a minute or more later is a
		// lease run out, one within seconds two senders. Memory-state
		// handlers share no outbox: each sends what it finds, and two find
		// the same alerts of the callers whose records both read.
		var each []string
		for _, d := range dups {
			each = append(each, fmt.Sprintf("%s %s to %s after %s", d.rule, d.id, d.path, d.after.Round(time.Millisecond)))
		}
		fmt.Fprintf(stderr, "sweep: %d alerts received again from the handlers that sent them first, %d of them from Table-state handlers (the first ones of each run: %s)\n",
			twice, tableTwice, strings.Join(each, "; "))
	}
	sweepReport(stdout, o, rows, hist, tableTwice)
	return nil
}

type sweeper struct {
	o         sweepOptions
	bin, work string
	conn      string
	run       string
	n         int
	rt        *roundTrips
	hook      *catcher
	azPid     int
	stderr    io.Writer
}

// sweepRow is one configuration's figures.
type sweepRow struct {
	callers, partitions  int
	records, memRecords  int
	roundTripsPerK       float64
	byTable              map[string]float64 // round trips per 1,000 records by table
	tableRate, memRate   float64
	p50, p99             time.Duration
	peakRSS, memPeakRSS  int64 // KiB, the largest of the handlers
	restore, restoreWait time.Duration
	cut                  bool // the Table phase hit -phase-time
	retried              int
	// busy is Azurite's time (request sent to first byte of its answer)
	// per 1,000 records, in ms, by table and kind of request.
	busy map[string]float64
	// alerts are the alerts the webhook catcher received in each phase
	// (Table state, memory state): what delivery's cost is for.
	alerts, memAlerts int
	// rows are the operations of the outbox's transactions over the Table
	// phase, by the kind of row written (txRows).
	rows map[string]int64
	// byKey describes the rows read by key over the Table phase (keysPerK).
	byKey string
	// cpu and memCPU describe each phase's CPU use (cpuPerK).
	cpu, memCPU string
}

// rowsPerAlert describes the outbox rows written per alert received, by
// kind, most first.
func (r sweepRow) rowsPerAlert() string {
	if r.alerts == 0 {
		return "none"
	}
	return describeRows(r.rows, float64(r.alerts))
}

// describeRows describes rows written by kind, each divided by per: their
// sum, then each kind, most first ("none" without rows).
func describeRows(rows map[string]int64, per float64) string {
	each := map[string]float64{}
	total := 0.0
	for k, n := range rows {
		if n > 0 {
			each[k] = float64(n) / per
			total += each[k]
		}
	}
	if len(each) == 0 {
		return "none"
	}
	_, parts := largest(each, len(each))
	for i, p := range parts {
		k, _, _ := strings.Cut(p, " ")
		parts[i] = fmt.Sprintf("%s %.1f", k, each[k])
	}
	return fmt.Sprintf("%.1f (%s)", total, strings.Join(parts, ", "))
}

// split returns the round trips per 1,000 records of detection state and
// statistics (the journal and state tables) and of findings and delivery
// (findings, outbox, silences).
func (r sweepRow) split() (stateTrips, delivery float64) {
	for t, n := range r.byTable {
		switch strings.TrimSuffix(t, " (tx)") {
		case "journal", "state":
			stateTrips += n
		default:
			delivery += n
		}
	}
	return stateTrips, delivery
}

func (r sweepRow) ratio() float64 {
	if r.memRate == 0 {
		return 0
	}
	return r.tableRate / r.memRate
}

func (r sweepRow) line() string {
	tables := make([]string, 0, len(r.byTable))
	for t := range r.byTable {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	var by []string
	for _, t := range tables {
		by = append(by, fmt.Sprintf("%s %.1f", t, r.byTable[t]))
	}
	total, busy := largest(r.busy, 8)
	return fmt.Sprintf("%d callers, %d partitions: %d records, %.1f round trips per 1,000 records (%s), %.0f records/s Table, %.0f memory (%.2f), alerts %d Table, %d memory, batch p50 %s p99 %s, peak RSS %d MiB, restore %s; Azurite's time per 1,000 records %.0f ms, most (request to answer, queueing included): %s; outbox rows written per alert received: %s; rows read by key per 1,000 records: %s; CPU, Table phase: %s; memory phase: %s",
		r.callers, r.partitions, r.records, r.roundTripsPerK, strings.Join(by, ", "), r.tableRate, r.memRate, r.ratio(), r.alerts, r.memAlerts, ms(r.p50), ms(r.p99), r.peakRSS>>10, r.restore.Round(time.Millisecond),
		total, strings.Join(busy, ", "), r.rowsPerAlert(), r.byKey, r.cpu, r.memCPU)
}

// traffic is a configuration's events, per partition, as the hub holds them.
type traffic struct {
	parts [][]host.Event
}

func (sw *sweeper) traffic(callers, partitions, records int) traffic {
	s := demo.Tenant(demo.TenantOptions{Callers: callers, Vaults: sw.o.vaults, Partitions: partitions,
		Seed: sw.o.seed, Records: records, RecordsPerEvent: sw.o.eventRecords})
	tr := traffic{parts: make([][]host.Event, partitions)}
	enq := time.Now().UTC()
	for {
		e, ok := s.Next()
		if !ok {
			return tr
		}
		seq := int64(len(tr.parts[e.Partition]))
		tr.parts[e.Partition] = append(tr.parts[e.Partition], host.Event{Body: demo.EventBody(e.Records), Sequence: seq,
			Offset: seq * 1024, Enqueued: enq.Add(time.Duration(seq) * time.Millisecond)})
	}
}

// memoryRun begins the name of a set of memory-state handlers (sweeper.start):
// Table-state ones are named by their tables' prefix.
const memoryRun = "memory-"

// start starts n handlers, with Table state under prefix or, when prefix is
// "", memory state.
func (sw *sweeper) start(ctx context.Context, n int, prefix string) ([]*handler, error) {
	var hs []*handler
	// The handlers started together send to a path of their own: an alert
	// counts as received twice only if these handlers sent it twice (the
	// memory phase's handlers raise the Table phase's alerts again, with
	// the same IDs, and may send one in an earlier slice than Table state).
	run := prefix
	if run == "" {
		run = fmt.Sprintf("%s%d", memoryRun, sw.n+1)
	}
	cfg := filepath.Join(sw.work, "kvwatch-"+run+".yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("# kvwatch sweep: the default pack, alerts to a local webhook catcher.\nreceivers:\n  - name: hook\n    webhook: {url: %q, timeout: 5s}\n",
		sw.hook.url+"/alerts/"+run)), 0o644); err != nil {
		return nil, err
	}
	for range n {
		sw.n++
		name := fmt.Sprintf("%d", sw.n)
		logf, err := os.Create(filepath.Join(sw.work, "handler-"+name+".log"))
		if err != nil {
			return hs, err
		}
		env := []string{"KVWATCH_CONFIG=" + cfg, "KVWATCH_LOG_LEVEL=warn",
			"KVWATCH_DEADLETTER_FILE=" + filepath.Join(sw.work, "handler-"+name+"-deadletter.jsonl")}
		if prefix != "" {
			env = append(append(env, "KVWATCH_TABLE_CONNECTION_STRING="+sw.conn, "KVWATCH_TABLE_PREFIX="+prefix), sw.o.env...)
		} else {
			env = append(env, "KVWATCH_TABLE_CONNECTION_STRING=", "KVWATCH_TABLE_ENDPOINT=", "AzureWebJobsStorage=",
				"AzureWebJobsStorage__tableServiceUri=", "AzureWebJobsStorage__accountName=")
		}
		p, err := host.Start(ctx, sw.bin, []string{"serve"}, env, logf, 30*time.Second)
		logf.Close()
		if err != nil {
			return hs, fmt.Errorf("handler %s: %w (log: %s)", name, err, logf.Name())
		}
		hs = append(hs, &handler{name: name, p: p, log: logf.Name(), run: run})
	}
	return hs, nil
}

func (sw *sweeper) stop(hs []*handler) {
	for _, h := range hs {
		if err := h.p.Stop(40 * time.Second); err != nil {
			fmt.Fprintf(sw.stderr, "sweep: handler %s did not exit cleanly: %v (log: %s)\n", h.name, err, h.log)
		}
		if problems := logProblems(h.log); problems != "" && !expectedOnly(h.log) {
			fmt.Fprintf(sw.stderr, "sweep: handler %s logged warnings or errors (first ones):\n%s", h.name, problems)
		}
	}
}

// expectedOnly reports whether a handler's log holds nothing but the
// warning a memory-state handler gives at start.
func expectedOnly(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.Contains(l, "no Table Storage configured") {
			return false
		}
	}
	return true
}

// phase is what delivering traffic to handlers measured.
type phase struct {
	records, batches, retried int
	first, last               time.Time
	lat                       []time.Duration
	cut                       bool
	peakRSS                   int64
	next                      []int         // per partition, the index of the next event not delivered
	cpu                       cpuUse        // CPU seconds used over the phase
	wall                      time.Duration // the phase's wall time, start to end
}

// cpuUse is CPU time, in seconds, used by Azurite, by a phase's handlers
// and by this process (the traffic's encoding and the counting proxy).
// On a machine whose cores Azurite shares with the handlers it says what
// bounds a phase: Azurite near a whole core of its one thread is the
// limit, whatever the handlers do.
type cpuUse struct{ azurite, handlers, driver float64 }

func (sw *sweeper) cpu(hs []*handler) cpuUse {
	u := cpuUse{azurite: cpuSeconds(sw.azPid), driver: cpuSeconds(os.Getpid())}
	for _, h := range hs {
		u.handlers += cpuSeconds(h.p.Cmd.Process.Pid)
	}
	return u
}

func (u cpuUse) minus(v cpuUse) cpuUse {
	return cpuUse{u.azurite - v.azurite, u.handlers - v.handlers, u.driver - v.driver}
}

// cpuPerK describes a phase's CPU use per 1,000 records, and in cores
// over its wall time.
func cpuPerK(u cpuUse, records int, wall time.Duration) string {
	if records == 0 || wall <= 0 {
		return "none"
	}
	per := func(s float64) float64 { return s * 1000 * 1000 / float64(records) }
	cores := func(s float64) float64 { return s / wall.Seconds() }
	return fmt.Sprintf("Azurite %.0f ms, handlers %.0f ms, this process %.0f ms per 1,000 records (cores busy: %.2f, %.2f, %.2f)",
		per(u.azurite), per(u.handlers), per(u.driver), cores(u.azurite), cores(u.handlers), cores(u.driver))
}

func (p *phase) rate() float64 {
	if p.records == 0 || !p.last.After(p.first) {
		return 0
	}
	return float64(p.records) / p.last.Sub(p.first).Seconds()
}

// deliver delivers each partition's events in batches of o.batch, one
// goroutine per partition as the trigger does, partitions split evenly over
// hs, until limit[p] events of partition p went or the deadline passes; it
// returns what it measured.
func (sw *sweeper) deliver(ctx context.Context, hs []*handler, tr traffic, limit []int, deadline time.Time) (*phase, error) {
	ph := &phase{next: make([]int, len(tr.parts))}
	c0, start := sw.cpu(hs), time.Now()
	var mu sync.Mutex
	per := len(tr.parts) / len(hs)
	errs := make(chan error, len(tr.parts))
	var wg sync.WaitGroup
	for p := range tr.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Minute}
			evs := tr.parts[p][:min(limit[p], len(tr.parts[p]))]
			for i := 0; i < len(evs); i += sw.o.batch {
				if time.Now().After(deadline) {
					mu.Lock()
					ph.cut = true
					mu.Unlock()
					return
				}
				b := host.Batch{Namespace: "double.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch",
					Partition: strconv.Itoa(p), Events: evs[i:min(i+sw.o.batch, len(evs))]}
				res, err := invoke(ctx, client, hs[p/per].p.BaseURL, b)
				if err != nil {
					errs <- fmt.Errorf("partition %d: %w", p, err)
					return
				}
				mu.Lock()
				if ph.first.IsZero() || res.start.Before(ph.first) {
					ph.first = res.start
				}
				if res.end.After(ph.last) {
					ph.last = res.end
				}
				ph.records += len(b.Events) * sw.o.eventRecords
				ph.batches++
				ph.lat = append(ph.lat, res.hostLat)
				if res.attempts > 1 {
					ph.retried++
				}
				ph.next[p] = i + len(b.Events)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	ph.cpu, ph.wall = sw.cpu(hs).minus(c0), time.Since(start)
	for _, h := range hs {
		ph.peakRSS = max(ph.peakRSS, procStatus(h.p.Cmd.Process.Pid, "VmHWM"))
	}
	return ph, nil
}

// configuration measures one (callers, partitions): Table state, a fresh
// handler's restore, then memory state on the records the Table phase got
// through.
func (sw *sweeper) configuration(ctx context.Context, callers, partitions int) (sweepRow, error) {
	row := sweepRow{callers: callers, partitions: partitions}
	tr := sw.traffic(callers, partitions, sw.o.records+partitions*sw.o.batch*sw.o.eventRecords)
	// Hold back one batch of partition 0 for the restore measurement.
	limit := make([]int, partitions)
	for p := range limit {
		limit[p] = len(tr.parts[p])
	}
	limit[0] -= sw.o.batch
	for p := 1; p < partitions; p++ {
		limit[p] -= sw.o.batch // the same records in all: drop a batch elsewhere too
	}

	prefix := fmt.Sprintf("%sc%dp%d", sw.run, callers, partitions)
	hs, err := sw.start(ctx, sw.o.handlers, prefix)
	if err != nil {
		sw.stop(hs)
		return row, err
	}
	if err := warm(ctx, hs); err != nil {
		sw.stop(hs)
		return row, err
	}
	rt0, tb0, bz0, rw0 := sw.rt.counts(), sw.rt.byTableCounts(), sw.rt.busyByTable(), sw.rt.rowCounts()
	k0, kq0 := sw.rt.keyCounts()
	ph, err := sw.deliver(ctx, hs, tr, limit, time.Now().Add(sw.o.phaseTime))
	if err != nil {
		sw.stop(hs)
		return row, err
	}
	rt1, tb1, bz1, rw1 := sw.rt.counts(), sw.rt.byTableCounts(), sw.rt.busyByTable(), sw.rt.rowCounts()
	k1, kq1 := sw.rt.keyCounts()
	row.alerts = sw.hook.on(hs[0].run).alerts // its handlers are new: all they sent
	row.rows = map[string]int64{}
	for k, n := range rw1 {
		if d := n - rw0[k]; d > 0 {
			row.rows[k] = d
		}
	}
	row.records, row.cut, row.retried = ph.records, ph.cut, ph.retried
	row.byKey = keysPerK(k0, kq0, k1, kq1, ph.records)
	row.roundTripsPerK = float64(rt1.total-rt0.total) * 1000 / float64(max(ph.records, 1))
	row.byTable = map[string]float64{}
	for t, n := range tb1 {
		if d := n - tb0[t]; d > 0 {
			row.byTable[t] = float64(d) * 1000 / float64(max(ph.records, 1))
		}
	}
	row.busy = busyPerK(bz0, bz1, ph.records)
	row.tableRate, row.peakRSS = ph.rate(), ph.peakRSS
	row.p50, row.p99 = pct(ph.lat, 50), pct(ph.lat, 99)
	row.cpu = cpuPerK(ph.cpu, ph.records, ph.wall)

	// A fresh handler for partition 0 (as after a scale-out or a crash),
	// while the others keep running: start to its first batch answered.
	if row.restore, row.restoreWait, err = sw.restore(ctx, prefix, tr.parts[0][ph.next[0]:min(ph.next[0]+sw.o.batch, len(tr.parts[0]))]); err != nil {
		sw.stop(hs)
		return row, err
	}
	sw.stop(hs)

	// Memory state, the same records.
	ms, err := sw.start(ctx, sw.o.handlers, "")
	if err != nil {
		sw.stop(ms)
		return row, err
	}
	mph, err := sw.deliver(ctx, ms, tr, ph.next, time.Now().Add(sw.o.phaseTime))
	sw.stop(ms)
	row.memAlerts = sw.hook.on(ms[0].run).alerts
	if err != nil {
		return row, err
	}
	row.memRecords, row.memRate, row.memPeakRSS = mph.records, mph.rate(), mph.peakRSS
	row.memCPU = cpuPerK(mph.cpu, mph.records, mph.wall)
	return row, nil
}

// warm sends each handler a Housekeeping invocation, so that table
// creation is not in the figures.
func warm(ctx context.Context, hs []*handler) error {
	for _, h := range hs {
		now := time.Now().UTC()
		if r, err := host.Invoke(ctx, http.DefaultClient, h.p.BaseURL, "Housekeeping",
			host.TimerBody("Housekeeping", now.Add(-10*time.Minute), now.Add(10*time.Minute), false)); err != nil || r.Status != 200 {
			return fmt.Errorf("handler %s: first Housekeeping invocation: %v %v", h.name, err, r)
		}
	}
	return nil
}

// restore starts a fresh Table-state handler and delivers evs (partition
// 0's next events) to it: it returns the time from process start to the
// batch answered, and of that the time from ready to answered.
func (sw *sweeper) restore(ctx context.Context, prefix string, evs []host.Event) (time.Duration, time.Duration, error) {
	if len(evs) == 0 {
		return 0, 0, errors.New("no events left for the restore measurement")
	}
	hs, err := sw.start(ctx, 1, prefix)
	defer sw.stop(hs)
	if err != nil {
		return 0, 0, err
	}
	b := host.Batch{Namespace: "double.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch",
		Partition: "0", Events: evs}
	res, err := invoke(ctx, &http.Client{Timeout: 10 * time.Minute}, hs[0].p.BaseURL, b)
	if err != nil {
		return 0, 0, err
	}
	return res.end.Sub(hs[0].p.Started), res.end.Sub(hs[0].p.Ready), nil
}

type historyResult struct {
	callers, partitions int
	records             int
	rate                float64
	cut                 bool
	restore, wait       time.Duration   // the slowest of the restores
	restores            []time.Duration // each fresh handler's, in order
	quiet               time.Duration   // waited for the history's work to end
	slices              []historySlice
	peakRSS, memPeakRSS int64 // KiB, the largest of the history's Table-state and memory-state handlers
}

// historySlice compares the stores on one slice of the history: the same
// records through Table-state and memory-state handlers, each pair with
// the history before it in its state.
type historySlice struct {
	from, records     int
	table, mem        float64 // records/s
	alerts, memAlerts int
	rules, memRules   string // what the catcher received in each phase, by rule
	busy              string // Azurite's time per 1,000 records over the Table phase, by table and kind, most first
	calls             string // the requests of busy's six largest, per 1,000 records
	rows              string // the outbox rows the Table phase's transactions wrote per 1,000 records, by kind, most first
	byKey             string // the row keys queries by key named per 1,000 records, and the queries, by table and kind
	cpu, memCPU       string // each phase's CPU use (cpuPerK)
}

// keysPerK describes the row keys read by key between two readings of
// keyCounts, and the queries that read them, per 1,000 records, by label:
// in Azure Table Storage each of those queries scans its partition.
func keysPerK(k0, q0, k1, q1 map[string]int64, records int) string {
	// The outbox's row kinds ("a-") apart; other tables' keys (findings'
	// IDs) together.
	kind := func(l string) string {
		if i := strings.Index(l, " (by key "); i >= 0 && !strings.HasSuffix(l, "-)") {
			return l[:i] + " (by key)"
		}
		return l
	}
	sum := func(m map[string]int64) map[string]int64 {
		out := map[string]int64{}
		for l, n := range m {
			out[kind(l)] += n
		}
		return out
	}
	k0, q0, k1, q1 = sum(k0), sum(q0), sum(k1), sum(q1)
	var labels []string
	for l := range k1 {
		if k1[l] > k0[l] {
			labels = append(labels, l)
		}
	}
	if len(labels) == 0 {
		return "none"
	}
	slices.Sort(labels)
	per := func(n int64) float64 { return float64(n) * 1000 / float64(max(records, 1)) }
	parts := make([]string, len(labels))
	for i, l := range labels {
		name := strings.TrimSuffix(strings.Replace(strings.Replace(l, " query (by key)", "", 1), " query (by key ", " ", 1), ")")
		parts[i] = fmt.Sprintf("%s %.1f keys in %.1f queries", name, per(k1[l]-k0[l]), per(q1[l]-q0[l]))
	}
	return strings.Join(parts, ", ")
}

// rowsPerK describes the outbox rows written between two readings of
// rowCounts, per 1,000 records, by kind, most first: what delivery
// writes once the storm has passed, when alerts are few.
func rowsPerK(rw0, rw1 map[string]int64, records int) string {
	d := map[string]int64{}
	for k, n := range rw1 {
		d[k] = n - rw0[k]
	}
	return describeRows(d, float64(max(records, 1))/1000)
}

// busyPerK is Azurite's time between two readings of busyByTable, in ms
// per 1,000 of records, by table and kind of request.
func busyPerK(bz0, bz1 map[string]time.Duration, records int) map[string]float64 {
	per := map[string]float64{}
	for t, d := range bz1 {
		if d -= bz0[t]; d > 0 {
			per[t] = float64(d.Milliseconds()) * 1000 / float64(max(records, 1))
		}
	}
	return per
}

// largest returns the sum of per, and its n largest parts as "label
// value", largest first.
func largest(per map[string]float64, n int) (float64, []string) {
	labels := make([]string, 0, len(per))
	total := 0.0
	for l, v := range per {
		labels = append(labels, l)
		total += v
	}
	slices.SortFunc(labels, func(a, b string) int { return cmp.Compare(per[b], per[a]) })
	var parts []string
	for _, l := range labels[:min(n, len(labels))] {
		parts = append(parts, fmt.Sprintf("%s %.0f", l, per[l]))
	}
	return total, parts
}

// callsPerK describes the requests answered between two readings of
// callCounts, per 1,000 records, for the six kinds Azurite spent most time
// on (busiest's): how many, beside how long.
func callsPerK(bz0, bz1 map[string]time.Duration, n0, n1 map[string]int64, records int) string {
	_, top := largest(busyPerK(bz0, bz1, records), 6)
	parts := make([]string, len(top))
	for i, t := range top {
		l := t[:strings.LastIndexByte(t, ' ')] // "label ms"
		parts[i] = fmt.Sprintf("%s %.1f", l, float64(n1[l]-n0[l])*1000/float64(max(records, 1)))
	}
	return strings.Join(parts, ", ")
}

// busiest describes Azurite's time between two readings of busyByTable,
// per 1,000 of records: the total, then the six largest parts.
func busiest(bz0, bz1 map[string]time.Duration, records int) string {
	total, parts := largest(busyPerK(bz0, bz1, records), 6)
	return strings.Join(append([]string{fmt.Sprintf("%.0f ms", total)}, parts...), ", ")
}

func (s historySlice) ratio() float64 {
	if s.mem == 0 {
		return 0
	}
	return s.table / s.mem
}

func (s historySlice) String() string {
	return fmt.Sprintf("%.0f records/s Table, %.0f memory (%.2f), alerts %d Table, %d memory", s.table, s.mem, s.ratio(), s.alerts, s.memAlerts)
}

// quiet waits, at most limit, until Azurite and the handlers hs together
// use under a tenth of a core over half a second, and returns how long it
// waited.
func (sw *sweeper) quiet(hs []*handler, limit time.Duration) time.Duration {
	start := time.Now()
	cpu := func() float64 {
		t := cpuSeconds(sw.azPid)
		for _, h := range hs {
			t += cpuSeconds(h.p.Cmd.Process.Pid)
		}
		return t
	}
	for time.Since(start) < limit {
		c0 := cpu()
		time.Sleep(500 * time.Millisecond)
		if cpu()-c0 < 0.05 {
			break
		}
	}
	return time.Since(start)
}

// historyRestore feeds -history records through Table-state handlers, then
// measures a fresh handler's restore.
func (sw *sweeper) historyRestore(ctx context.Context) (*historyResult, error) {
	o := sw.o
	h := &historyResult{callers: o.historyCallers, partitions: o.historyPartitions}
	prefix := fmt.Sprintf("%shist", sw.run)
	hs, err := sw.start(ctx, o.handlers, prefix)
	if err != nil {
		sw.stop(hs)
		return nil, err
	}
	defer sw.stop(hs)
	if err := warm(ctx, hs); err != nil {
		return nil, err
	}
	// Memory-state handlers get the same history, slice by slice, so that
	// each slice compares the two stores on the same records, as a
	// configuration does, once the first hours' alerts have passed.
	ms, err := sw.start(ctx, o.handlers, "")
	if err != nil {
		sw.stop(ms)
		return nil, err
	}
	msStopped := false
	defer func() {
		if !msStopped {
			sw.stop(ms)
		}
	}()
	fmt.Fprintf(sw.stderr, "sweep: history: %d records, %d callers, %d partitions (at most %s)\n", o.history, h.callers, h.partitions, o.historyMax)
	// In slices, so that a million records are never all in memory.
	const slice = 100_000
	deadline := time.Now().Add(o.historyMax)
	s := demo.Tenant(demo.TenantOptions{Callers: h.callers, Vaults: o.vaults, Partitions: h.partitions, Seed: o.seed + 1,
		Records: o.history + max(o.restores, 1)*h.partitions*o.batch*o.eventRecords, RecordsPerEvent: o.eventRecords})
	seqs := make([]int64, h.partitions)
	enq := time.Now().UTC()
	var spent time.Duration
	var last traffic
	for h.records < o.history && !h.cut {
		tr := traffic{parts: make([][]host.Event, h.partitions)}
		for n := 0; n < min(slice, o.history-h.records); {
			e, ok := s.Next()
			if !ok {
				break
			}
			p := e.Partition
			tr.parts[p] = append(tr.parts[p], host.Event{Body: demo.EventBody(e.Records), Sequence: seqs[p],
				Offset: seqs[p] * 1024, Enqueued: enq.Add(time.Duration(seqs[p]) * time.Millisecond)})
			seqs[p]++
			n += len(e.Records)
		}
		limit := make([]int, h.partitions)
		for p := range limit {
			limit[p] = len(tr.parts[p])
		}
		// Alerts by the path each set of handlers sends to: the memory
		// handlers run beside the Table ones, and what they send late (an
		// alert waiting for its source) must not count as Table state's.
		t0, m0, bz0, rw0, n0 := sw.hook.on(hs[0].run), sw.hook.on(ms[0].run), sw.rt.busyByTable(), sw.rt.rowCounts(), sw.rt.callCounts()
		k0, kq0 := sw.rt.keyCounts()
		ph, err := sw.deliver(ctx, hs, tr, limit, deadline)
		if err != nil {
			return nil, err
		}
		if ph.records == 0 {
			h.cut = true
			break
		}
		bz1, rw1, n1 := sw.rt.busyByTable(), sw.rt.rowCounts(), sw.rt.callCounts()
		k1, kq1 := sw.rt.keyCounts()
		mph, err := sw.deliver(ctx, ms, tr, ph.next, time.Now().Add(sw.o.phaseTime))
		if err != nil {
			return nil, err
		}
		h.peakRSS, h.memPeakRSS = max(h.peakRSS, ph.peakRSS), max(h.memPeakRSS, mph.peakRSS)
		t1, m1 := sw.hook.on(hs[0].run), sw.hook.on(ms[0].run)
		sl := historySlice{from: h.records, records: ph.records, table: ph.rate(), mem: mph.rate(), alerts: t1.alerts - t0.alerts, memAlerts: m1.alerts - m0.alerts,
			rules: t1.since(t0), memRules: m1.since(m0), busy: busiest(bz0, bz1, ph.records), calls: callsPerK(bz0, bz1, n0, n1, ph.records), rows: rowsPerK(rw0, rw1, ph.records),
			byKey: keysPerK(k0, kq0, k1, kq1, ph.records), cpu: cpuPerK(ph.cpu, ph.records, ph.wall), memCPU: cpuPerK(mph.cpu, mph.records, mph.wall)}
		h.slices = append(h.slices, sl)
		h.records += ph.records
		h.cut = ph.cut
		spent += ph.last.Sub(ph.first)
		last = tr
		for p := range tr.parts {
			tr.parts[p] = tr.parts[p][ph.next[p]:]
		}
		if ph.cut {
			break
		}
		fmt.Fprintf(sw.stderr, "sweep: history: %d records; this slice %s\n  Table: %s\n  memory: %s\n  Azurite per 1,000 records: %s\n  requests per 1,000 records (the same, most time first): %s\n  outbox rows written per 1,000 records: %s\n  rows read by key per 1,000 records: %s\n  CPU, Table phase: %s\n  CPU, memory phase: %s\n", h.records, sl, sl.rules, sl.memRules, sl.busy, sl.calls, sl.rows, sl.byKey, sl.cpu, sl.memCPU)
	}
	sw.stop(ms)
	msStopped = true
	if spent > 0 {
		h.rate = float64(h.records) / spent.Seconds()
	}
	// The restores: partition 0's next batches, a fresh handler each, once
	// the history's handlers (still running, as instances that keep their
	// partitions would) and Azurite have finished what the last batches
	// started (a compaction, sends): on these two shared cores that work
	// would be timed as the restore's, where in Azure it runs on other
	// machines.
	h.quiet = sw.quiet(hs, 15*time.Second)
	var rest []host.Event
	if last.parts != nil {
		rest = last.parts[0]
	}
	for range max(o.restores, 1) {
		next := slices.Clone(rest[:min(o.batch, len(rest))])
		rest = rest[len(next):]
		for len(next) < o.batch {
			e, ok := s.Next()
			if !ok {
				break
			}
			if e.Partition != 0 {
				continue
			}
			next = append(next, host.Event{Body: demo.EventBody(e.Records), Sequence: seqs[0], Offset: seqs[0] * 1024,
				Enqueued: enq.Add(time.Duration(seqs[0]) * time.Millisecond)})
			seqs[0]++
		}
		r, w, err := sw.restore(ctx, prefix, next)
		if err != nil {
			return nil, err
		}
		h.restores = append(h.restores, r)
		h.restore, h.wait = max(h.restore, r), max(h.wait, w)
	}
	return h, nil
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// sweepReport prints the figures and the goals; tableTwice is the alerts
// Table-state handlers sent twice (nothing doubled: the bar, which
// the sweep's two handlers under an alert storm put to the test too).
func sweepReport(w io.Writer, o sweepOptions, rows []sweepRow, h *historyResult, tableTwice int) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "sweep figures: demo.Tenant traffic over %d vaults, %d handler processes, batches of %d events × %d records, seed %d\n",
		o.vaults, o.handlers, o.batch, o.eventRecords, o.seed)
	if len(o.env) > 0 {
		fmt.Fprintf(w, "table-handler-environment: %s\n", strings.Join(o.env, " "))
	}
	fmt.Fprintf(w, "%7s %5s %8s %12s %7s %9s %9s %9s %6s %9s %9s %8s %9s\n",
		"callers", "parts", "records", "trips/1000", "state", "delivery", "table r/s", "mem r/s", "ratio", "p50 ms", "p99 ms", "RSS MiB", "restore")
	worstTrips, worstRatio, worstRSS, worstRestore := 0.0, -1.0, int64(0), time.Duration(0)
	worstState := 0.0
	cut := false
	for _, r := range rows {
		mark := ""
		if r.cut {
			mark = " (cut at -phase-time)"
			cut = true
		}
		st, dl := r.split()
		worstState = max(worstState, st)
		fmt.Fprintf(w, "%7d %5d %8d %12.1f %7.1f %9.1f %9.0f %9.0f %6.2f %9.1f %9.1f %8d %9s%s\n",
			r.callers, r.partitions, r.records, r.roundTripsPerK, st, dl, r.tableRate, r.memRate, r.ratio(),
			float64(r.p50)/1e6, float64(r.p99)/1e6, max(r.peakRSS, r.memPeakRSS)>>10, r.restore.Round(time.Millisecond), mark)
		worstTrips = max(worstTrips, r.roundTripsPerK)
		if worstRatio < 0 || r.ratio() < worstRatio {
			worstRatio = r.ratio()
		}
		worstRSS = max(worstRSS, r.peakRSS, r.memPeakRSS)
		worstRestore = max(worstRestore, r.restore)
	}
	if h != nil {
		note := ""
		if h.cut {
			note = fmt.Sprintf(" (cut at -history-time: %d of %d records)", h.records, o.history)
		}
		var each []string
		for _, r := range h.restores {
			each = append(each, r.Round(time.Millisecond).String())
		}
		fmt.Fprintf(w, "history: %d records (%d callers, %d partitions) at %.0f records/s with Table state%s, peak RSS %d MiB (memory state %d MiB); after %s for its handlers and Azurite to go quiet, %d fresh handlers, one after another, answered their first batch %s after process start (the slowest %s after ready)\n",
			h.records, h.callers, h.partitions, h.rate, note, h.peakRSS>>10, h.memPeakRSS>>10, h.quiet.Round(100*time.Millisecond), len(h.restores), strings.Join(each, ", "), h.wait.Round(time.Millisecond))
	}
	if h != nil && len(h.slices) > 0 {
		fmt.Fprintf(w, "history slice by slice (records from, Table r/s, memory r/s, ratio, alerts Table/memory):")
		for _, s := range h.slices {
			fmt.Fprintf(w, " %dk %.0f %.0f %.2f %d/%d;", s.from/1000, s.table, s.mem, s.ratio(), s.alerts, s.memAlerts)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "goals:")
	fmt.Fprintf(w, "  round trips per 1,000 records ≤ %.0f at every cardinality: worst %.1f  %s\n", goalRoundTrips, worstTrips,
		passFail(worstTrips <= goalRoundTrips && len(rows) > 0))
	fmt.Fprintf(w, "    of which detection state and statistics (journal and state tables): worst %.1f  %s\n", worstState,
		passFail(worstState <= goalRoundTrips && len(rows) > 0))
	fmt.Fprintf(w, "  Table-state throughput ≥ %.1f× memory-state: worst %.2f  %s\n", goalRatio, worstRatio,
		passFail(worstRatio >= goalRatio && !cut))
	if h != nil && len(h.slices) > 0 {
		// For reference, not the goal's verdict: the configurations above
		// start from empty state, so they measure a deployment's first
		// half hour, when every application's first bursts are alerted.
		s := h.slices[len(h.slices)-1]
		fmt.Fprintf(w, "    for reference, after %d records of history (%d callers, its last slice: %s): %.2f\n", s.from, h.callers, s, s.ratio())
	}
	restoreLine := fmt.Sprintf("worst after a configuration %s", worstRestore.Round(time.Millisecond))
	restoreOK := worstRestore < goalRestore
	if h != nil {
		restoreLine += fmt.Sprintf("; after %d records of history %s (the slowest of %d)", h.records, h.restore.Round(time.Millisecond), len(h.restores))
		restoreOK = restoreOK && h.restore < goalRestore && !h.cut
	}
	fmt.Fprintf(w, "  restore (fresh handler, start to first batch answered) < %s: %s  %s\n", goalRestore, restoreLine, passFail(restoreOK))
	if h != nil {
		worstRSS = max(worstRSS, h.peakRSS, h.memPeakRSS)
	}
	fmt.Fprintf(w, "  handler peak RSS < %d MiB (the configurations' and the history's handlers): worst %d MiB  %s\n", goalRSSMiB, worstRSS>>10, passFail(worstRSS>>10 < goalRSSMiB))
	fmt.Fprintf(w, "  no alert sent twice by Table-state handlers (each set counted by its own webhook path): %d  %s\n", tableTwice, passFail(tableTwice == 0))
	if cut {
		fmt.Fprintln(w, "note: a configuration cut short by -phase-time fails the throughput goal: its store did not keep up")
	}
}

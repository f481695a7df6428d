//go:build linux

// Command load is the sustained load run (issue 8, `make load`): demo
// traffic through the host double into two `kvwatch serve` processes with
// their state in Table Storage (an Azurite it starts from tools/azurite) and
// a local webhook catcher for the alerts, measuring what a deployment cares
// about:
//
//   - throughput (records/s) from the first batch posted to the last answered;
//   - handler latency per batch as the host sees it (post to answer) and as
//     the handler reports it in its summary line, median and p99;
//   - each handler's peak resident memory (/proc/<pid>/status VmHWM), and
//     VmRSS sampled every second to show it stays flat after warm-up;
//   - the CPU the handlers, Azurite and this driver used (/proc/<pid>/stat
//     utime+stime), as a share of the machine;
//   - Table round trips per 1,000 records, counted at a pass-through proxy
//     between the handlers and Azurite.
//
// The traffic: consecutive demo days (internal/demo, a different seed per
// day), every vault's records merged in time order, 10 records per event,
// events dealt round robin to 4 partitions, 2 partitions per handler, one
// goroutine per partition delivering batches of 100 events (the
// maxEventBatchSize in host.json) as the Event Hubs trigger does: the next
// batch of a partition only after the previous one was answered, retried
// with function.json's policy on a non-2xx answer. The last part of the run
// (-big-records, or the last tenth of the time) is delivered in batches of
// 1,000 events, and the handlers' peak memory is measured separately for it.
//
// The run stops after -records records or -time, whichever comes first;
// the last lines printed are the figures, one per line, "name: value".
//
// The host double's Hub keeps every event it was given (so that tests can
// rewind it); ten million records would be gigabytes, so this driver keeps
// its own per-partition sequence numbers and builds and posts each batch
// with the double's host.Body and host.Invoke, exactly as Hub.Deliver does.
//
// `load sweep` is the cardinality sweep (sweep.go, `make sweep`).
//
// Linux only: it reads /proc.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/azurite"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/host"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

type options struct {
	records      int
	limit        time.Duration
	batch        int
	bigBatch     int
	bigRecords   int
	eventRecords int
	partitions   int
	handlers     int
	start        time.Time
	seed         int64
	azuriteDisk  bool
	count        bool
	keep         bool
	progress     time.Duration
	housekeeping time.Duration
	silence      time.Duration
	env          []string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == "sweep" {
		err = runSweep(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.records, "records", 10_000_000, "stop after this many records")
	fs.DurationVar(&o.limit, "time", 75*time.Minute, "stop after this long (streaming time, not counting build and start)")
	fs.IntVar(&o.batch, "batch", 100, "events per batch (host.json maxEventBatchSize)")
	fs.IntVar(&o.bigBatch, "big-batch", 1000, "events per batch in the last part of the run, measured on its own (0: no such part)")
	fs.IntVar(&o.bigRecords, "big-records", 1_000_000, "records delivered in -big-batch batches at the end of the run")
	fs.IntVar(&o.eventRecords, "event-records", 10, "records per Event Hubs event")
	fs.IntVar(&o.partitions, "partitions", 4, "Event Hubs partitions")
	fs.IntVar(&o.handlers, "handlers", 2, "handler processes; partitions are split evenly between them")
	startDay := fs.String("start", "2025-01-01", "the first demo day (consecutive days follow)")
	fs.Int64Var(&o.seed, "seed", 1, "the first day's demo seed (the next day's is one more)")
	fs.BoolVar(&o.azuriteDisk, "azurite-disk", false, "let Azurite keep its data on disk (default: in memory)")
	fs.BoolVar(&o.count, "count-round-trips", true, "count Table requests at a proxy in front of Azurite")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (binary, handler logs, dead letters)")
	fs.DurationVar(&o.housekeeping, "housekeeping", 10*time.Minute, "fire the Housekeeping timer this often, as host.json's schedule does (0: never)")
	fs.DurationVar(&o.silence, "logging-silence", 5*time.Minute, "fire the LoggingSilence timer this often (0: never)")
	fs.DurationVar(&o.progress, "progress", 30*time.Second, "how often to print a progress line (stderr)")
	fs.Func("env", "KEY=VALUE added to the handlers' environment (repeatable), e.g. GOMEMLIMIT=200MiB", func(v string) error {
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
	if o.start, err = time.Parse(time.DateOnly, *startDay); err != nil {
		return fmt.Errorf("-start: %w", err)
	}
	switch {
	case o.records <= 0, o.batch <= 0, o.eventRecords <= 0, o.partitions <= 0, o.handlers <= 0, o.limit <= 0:
		return errors.New("-records, -time, -batch, -event-records, -partitions and -handlers must be positive")
	case o.partitions%o.handlers != 0:
		return errors.New("-partitions must be a multiple of -handlers")
	}
	if o.bigBatch <= 0 {
		o.bigRecords = 0
	}
	o.bigRecords = min(max(o.bigRecords, 0), o.records)

	tools, work, bin, cleanup, err := prepare(ctx, "load", o.keep, stderr)
	if err != nil {
		return err
	}
	defer cleanup()

	// Its own process group: Ctrl-C reaches only this driver, which
	// stops it after the handlers.
	ao := azurite.Options{OwnGroup: true}
	if o.azuriteDisk {
		ao.Dir = filepath.Join(work, "azurite")
	}
	az, err := azurite.Launch(tools, ao)
	if err != nil {
		return err
	}
	defer az.Stop()
	fmt.Fprintf(stderr, "load: Azurite (pid %d) on 127.0.0.1:%d\n", az.Pid(), az.Port)

	tablePort := az.Port
	var rt *roundTrips
	if o.count {
		if rt, err = startProxy(az.Port); err != nil {
			return err
		}
		defer rt.close()
		tablePort = rt.port
	}

	hook, err := startCatcher()
	if err != nil {
		return err
	}
	defer hook.close()

	cfg := filepath.Join(work, "kvwatch.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`# kvwatch load run: the default pack, alerts to a local webhook catcher.
receivers:
  - name: hook
    webhook: {url: %q, timeout: 5s}
`, hook.url+"/alerts")), 0o644); err != nil {
		return err
	}
	prefix := fmt.Sprintf("load%d", rand.IntN(1_000_000))
	conn := azurite.ConnectionString(tablePort)

	hs := make([]*handler, o.handlers)
	for i := range hs {
		name := string(rune('a' + i))
		logf, err := os.Create(filepath.Join(work, "handler-"+name+".log"))
		if err != nil {
			return err
		}
		defer logf.Close()
		p, err := host.Start(ctx, bin, []string{"serve"}, append([]string{
			"KVWATCH_TABLE_CONNECTION_STRING=" + conn, "KVWATCH_TABLE_PREFIX=" + prefix,
			"KVWATCH_CONFIG=" + cfg, "KVWATCH_LOG_LEVEL=warn",
			"KVWATCH_DEADLETTER_FILE=" + filepath.Join(work, "handler-"+name+"-deadletter.jsonl"),
		}, o.env...), logf, 30*time.Second)
		if err != nil {
			return fmt.Errorf("handler %s: %w (log: %s)", name, err, logf.Name())
		}
		defer p.Kill()
		hs[i] = &handler{name: name, p: p, log: logf.Name()}
		fmt.Fprintf(stderr, "load: handler %s (pid %d) on %s, ready %s after start\n", name, p.Cmd.Process.Pid, p.BaseURL,
			p.Ready.Sub(p.Started).Round(time.Millisecond))
	}
	// A first invocation each, so that table creation and the first
	// reads are not in the figures.
	for _, h := range hs {
		now := time.Now().UTC()
		if r, err := host.Invoke(ctx, http.DefaultClient, h.p.BaseURL, "Housekeeping",
			host.TimerBody("Housekeeping", now.Add(-10*time.Minute), now.Add(10*time.Minute), false)); err != nil || r.Status != 200 {
			return fmt.Errorf("handler %s: first Housekeeping invocation: %v %v", h.name, err, r)
		}
	}

	res, err := stream(ctx, o, hs, az, rt, stderr)
	if err != nil {
		return err
	}

	// Deliver what is left in the outbox, as the Housekeeping timer would,
	// then stop the handlers the way the host does.
	for range 3 {
		if ctx.Err() != nil || !hs[0].alive() {
			break
		}
		now := time.Now().UTC()
		_, _ = host.Invoke(ctx, http.DefaultClient, hs[0].p.BaseURL, "Housekeeping",
			host.TimerBody("Housekeeping", now.Add(-10*time.Minute), now.Add(10*time.Minute), false))
		time.Sleep(200 * time.Millisecond)
	}
	for _, h := range hs {
		if err := h.p.Stop(40 * time.Second); err != nil {
			fmt.Fprintf(stderr, "load: handler %s did not exit cleanly: %v (log: %s)\n", h.name, err, h.log)
		}
	}
	for _, h := range hs {
		if problems := logProblems(h.log); problems != "" {
			fmt.Fprintf(stderr, "load: handler %s logged warnings or errors (first ones):\n%s", h.name, problems)
		}
	}
	report(stdout, o, res, hs, az, rt, hook)
	return nil
}

// ---------------------------------------------------------------------------
// Traffic.

// event is one Event Hubs event: a body of eventRecords records, and the
// part of the run it belongs to (0: -batch events per batch, 1: -big-batch).
type event struct {
	body    []byte
	records int
	part    int
}

// produce generates demo days and deals their events to the partitions
// until it has made o.records records, the time limit passes or ctx ends.
// It switches to the big-batch part when the records left are
// o.bigRecords, or when the last tenth of the time (in proportion to
// bigRecords) begins.
func produce(ctx context.Context, o options, t0 time.Time, deadline time.Time, parts []chan event, days *atomic.Int64) {
	defer func() {
		for _, c := range parts {
			close(c)
		}
	}()
	bigAt := t0.Add(time.Duration(float64(o.limit) * (1 - float64(o.bigRecords)/float64(o.records))))
	made, n, part := 0, 0, 0
	for d := 0; ; d++ {
		recs := demo.Stream(demo.Options{Seed: o.seed + int64(d), Day: o.start.AddDate(0, 0, d)})
		days.Add(1)
		for i := 0; i < len(recs); {
			if part == 0 && o.bigRecords > 0 && (o.records-made <= o.bigRecords || time.Now().After(bigAt)) {
				part = 1
			}
			k := min(o.eventRecords, len(recs)-i, o.records-made)
			select {
			case parts[n%len(parts)] <- event{body: demo.EventBody(recs[i : i+k]), records: k, part: part}:
			case <-ctx.Done():
				return
			}
			n++
			i += k
			made += k
			if made >= o.records || time.Now().After(deadline) {
				return
			}
		}
	}
}

// function.json's retry policy.
var retryPolicy = host.Retry{MaxRetryCount: -1, Min: 5 * time.Second, Max: 5 * time.Minute}

var summaryRE = regexp.MustCompile(`(\d+) records, (\d+) accepted(?: \((\d+) duplicates dropped\))?, (\d+) skipped, (\d+) dead-lettered, (\d+) findings in (\S+)$`)

// partStats collects one part of the run.
type partStats struct {
	mu                  sync.Mutex
	hostLat, handlerLat []time.Duration
	batches, events     int
	records             int
	accepted, skipped   int
	dups, dead, finds   int
	retried             int
	first, last         time.Time
}

func (s *partStats) add(b batchResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.IsZero() || b.start.Before(s.first) {
		s.first = b.start
	}
	if b.end.After(s.last) {
		s.last = b.end
	}
	s.hostLat = append(s.hostLat, b.hostLat)
	if b.handlerLat > 0 {
		s.handlerLat = append(s.handlerLat, b.handlerLat)
	}
	s.batches++
	s.events += b.events
	s.records += b.records
	s.accepted += b.accepted
	s.skipped += b.skipped
	s.dups += b.dups
	s.dead += b.dead
	s.finds += b.findings
	if b.attempts > 1 {
		s.retried++
	}
}

type batchResult struct {
	events, records                         int
	accepted, skipped, dups, dead, findings int
	hostLat, handlerLat                     time.Duration
	attempts                                int
	start, end                              time.Time
}

// deliver is one partition's trigger loop.
func deliver(ctx context.Context, o options, partition string, target *handler, in <-chan event, stats []*partStats,
	done *atomic.Int64, onBig func()) error {
	client := &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	seq := int64(0)
	var pending *event
	enqueued := time.Now().UTC()
	for {
		var evs []event
		if pending != nil {
			evs = append(evs, *pending)
			pending = nil
		} else {
			e, ok := <-in
			if !ok {
				return nil
			}
			evs = append(evs, e)
		}
		size := o.batch
		if evs[0].part == 1 {
			size = o.bigBatch
			onBig()
		}
		for len(evs) < size {
			e, ok := <-in
			if !ok {
				break
			}
			if e.part != evs[0].part {
				pending = &e
				break
			}
			evs = append(evs, e)
		}
		b := host.Batch{Namespace: "double.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch",
			Partition: partition}
		records := 0
		for _, e := range evs {
			b.Events = append(b.Events, host.Event{Body: e.body, Sequence: seq, Offset: seq * 1024,
				Enqueued: enqueued.Add(time.Duration(seq) * time.Millisecond)})
			seq++
			records += e.records
		}
		res, err := invoke(ctx, client, target.p.BaseURL, b)
		if err != nil {
			return fmt.Errorf("partition %s: %w", partition, err)
		}
		res.events, res.records = len(evs), records
		stats[evs[0].part].add(res)
		done.Add(int64(records))
	}
}

// invoke posts a batch as the trigger does: retried by the retry policy
// until the handler answers 2xx.
func invoke(ctx context.Context, client *http.Client, target string, b host.Batch) (batchResult, error) {
	wait := retryPolicy.Min
	for attempt := 0; ; attempt++ {
		b.RetryCount = attempt
		body, err := host.Body(b, host.StringOfStrings)
		if err != nil {
			return batchResult{}, err
		}
		t0 := time.Now()
		resp, err := host.Invoke(ctx, client, target, "AuditEvents", body)
		t1 := time.Now()
		if err == nil && resp.Status/100 == 2 {
			r := batchResult{hostLat: t1.Sub(t0), attempts: attempt + 1, start: t0, end: t1}
			if len(resp.Logs) > 0 {
				if m := summaryRE.FindStringSubmatch(resp.Logs[0]); m != nil {
					r.accepted, _ = strconv.Atoi(m[2])
					r.dups, _ = strconv.Atoi(m[3])
					r.skipped, _ = strconv.Atoi(m[4])
					r.dead, _ = strconv.Atoi(m[5])
					r.findings, _ = strconv.Atoi(m[6])
					r.handlerLat, _ = time.ParseDuration(m[7])
				}
			}
			return r, nil
		}
		if ctx.Err() != nil {
			return batchResult{}, ctx.Err()
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		} else {
			msg = fmt.Sprintf("HTTP %d", resp.Status)
		}
		fmt.Fprintf(os.Stderr, "load: partition %s: attempt %d failed (%s); retrying in %s\n", b.Partition, attempt+1, msg, wait)
		select {
		case <-ctx.Done():
			return batchResult{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, retryPolicy.Max)
	}
}

// ---------------------------------------------------------------------------
// The run and its measurements.

type sample struct {
	at      time.Duration
	records int64
	rss     []int64 // per handler, KiB
	azRSS   int64
}

type result struct {
	parts        [2]*partStats
	t0, t1       time.Time
	days         int64
	stopReason   string
	samples      []sample
	hwm          [2][]int64 // per part, per handler: VmHWM in KiB
	hwmReset     bool
	cpu          map[string]float64 // seconds over the run
	azHWM        int64
	reqs0, reqs1 roundTripCounts
	interrupted  bool
	timers       atomic.Int64
	bigAt        time.Duration // when the first big batch was posted
}

func stream(ctx context.Context, o options, hs []*handler, az *azurite.Server, rt *roundTrips, stderr io.Writer) (*result, error) {
	res := &result{parts: [2]*partStats{{}, {}}, cpu: map[string]float64{}}
	pids := map[string]int{"azurite": az.Pid(), "driver": os.Getpid()}
	for _, h := range hs {
		pids["handler "+h.name] = h.p.Cmd.Process.Pid
	}
	cpu0 := map[string]float64{}
	for k, pid := range pids {
		cpu0[k] = cpuSeconds(pid)
	}
	// Node runs Azurite's JavaScript on its main thread (task id = pid):
	// that one thread at a full core is Azurite's ceiling.
	azMain := fmt.Sprintf("/proc/%d/task/%d/stat", az.Pid(), az.Pid())
	azMain0 := cpuSecondsFile(azMain)
	if rt != nil {
		res.reqs0 = rt.counts()
	}

	res.t0 = time.Now()
	deadline := res.t0.Add(o.limit)
	parts := make([]chan event, o.partitions)
	for i := range parts {
		parts[i] = make(chan event, max(o.batch, o.bigBatch))
	}
	var days, done atomic.Int64
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go produce(sctx, o, res.t0, deadline, parts, &days)

	errs := make(chan error, o.partitions+1)
	var wg sync.WaitGroup
	per := o.partitions / o.handlers
	// Before the first big batch is posted: note each handler's peak so
	// far, and reset it (writing 5 to /proc/<pid>/clear_refs resets VmHWM).
	var bigOnce sync.Once
	bigStarted := false
	onBig := func() {
		bigOnce.Do(func() {
			bigStarted = true
			res.bigAt = time.Since(res.t0)
			res.hwmReset = true
			for _, h := range hs {
				pid := h.p.Cmd.Process.Pid
				res.hwm[0] = append(res.hwm[0], procStatus(pid, "VmHWM"))
				if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
					res.hwmReset = false
				}
			}
		})
	}
	for i := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := deliver(sctx, o, strconv.Itoa(i), hs[i/per], parts[i], res.parts[:], &done, onBig); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	// The timers, on their schedules, at one instance (the host runs a
	// timer function on one instance at a time).
	for _, t := range []struct {
		name  string
		every time.Duration
	}{{"Housekeeping", o.housekeeping}, {"LoggingSilence", o.silence}} {
		if t.every <= 0 {
			continue
		}
		go func() {
			tk := time.NewTicker(t.every)
			defer tk.Stop()
			for {
				select {
				case <-finished:
					return
				case <-sctx.Done():
					return
				case <-tk.C:
				}
				now := time.Now().UTC()
				r, err := host.Invoke(sctx, http.DefaultClient, hs[0].p.BaseURL, t.name, host.TimerBody(t.name, now.Add(-t.every), now.Add(t.every), false))
				switch {
				case err != nil && sctx.Err() == nil:
					fmt.Fprintf(stderr, "load: %s timer: %v\n", t.name, err)
				case err == nil && r.Status != 200:
					fmt.Fprintf(stderr, "load: %s timer: HTTP %d\n", t.name, r.Status)
				case err == nil:
					res.timers.Add(1)
				}
			}
		}()
	}

	// Sample memory every second; at the switch to big batches, note the
	// peak so far and reset it (writing 5 to clear_refs resets VmHWM).
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastProgress, lastDone := res.t0, int64(0)
	var lastHWM []int64
	for running := true; running; {
		select {
		case <-finished:
			running = false
		case <-tick.C:
		}
		s := sample{at: time.Since(res.t0), records: done.Load(), azRSS: procStatus(az.Pid(), "VmRSS")}
		hwm := make([]int64, len(hs))
		for i, h := range hs {
			s.rss = append(s.rss, procStatus(h.p.Cmd.Process.Pid, "VmRSS"))
			hwm[i] = procStatus(h.p.Cmd.Process.Pid, "VmHWM")
		}
		if slices.Contains(hwm, 0) {
			// A handler is gone (interrupted): keep the last readings.
			if ctx.Err() == nil && sctx.Err() == nil {
				errs <- errors.New("a handler exited during the run")
				cancel()
			}
		} else {
			lastHWM = hwm
			res.samples = append(res.samples, s)
		}
		if h := procStatus(az.Pid(), "VmHWM"); h > 0 {
			res.azHWM = h
		}
		if now := time.Now(); now.Sub(lastProgress) >= o.progress || !running {
			d := done.Load()
			line := fmt.Sprintf("load: %6s  %10d records  %6.0f records/s (last %s)  day %d  rss",
				s.at.Round(time.Second), d, float64(d-lastDone)/now.Sub(lastProgress).Seconds(),
				now.Sub(lastProgress).Round(time.Second), days.Load())
			for i, h := range hs {
				line += fmt.Sprintf(" %s %d MiB", h.name, s.rss[i]>>10)
			}
			line += fmt.Sprintf("  azurite %d MiB", s.azRSS>>10)
			if rt != nil {
				line += fmt.Sprintf("  table requests %d", rt.counts().total-res.reqs0.total)
			}
			fmt.Fprintln(stderr, line)
			lastProgress, lastDone = now, d
		}
	}
	res.t1 = time.Now()
	if bigStarted {
		res.hwm[1] = lastHWM
	} else {
		res.hwm[0] = lastHWM
	}
	for k, pid := range pids {
		res.cpu[k] = cpuSeconds(pid) - cpu0[k]
	}
	res.cpu["azurite main thread"] = cpuSecondsFile(azMain) - azMain0
	if rt != nil {
		res.reqs1 = rt.counts()
	}
	res.days = days.Load()
	close(errs)
	var runErr error
	for err := range errs {
		if !errors.Is(err, context.Canceled) && runErr == nil {
			runErr = err
		}
	}
	switch {
	case ctx.Err() != nil:
		res.interrupted = true
		res.stopReason = "interrupted"
	case runErr != nil:
		return nil, runErr
	case int(done.Load()) >= o.records:
		res.stopReason = "record limit"
	default:
		res.stopReason = "time limit"
	}
	return res, nil
}

// ---------------------------------------------------------------------------
// Processes.

type handler struct {
	name string
	p    *host.Process
	log  string
	run  string // the sweep's set of handlers it belongs to (its alerts' path)
}

func (h *handler) alive() bool { return procStatus(h.p.Cmd.Process.Pid, "VmRSS") > 0 }

// procStatus reads a "Name: N kB" line of /proc/<pid>/status, in KiB (0
// when the process is gone).
func procStatus(pid int, name string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// cpuSeconds is utime+stime of a process from /proc/<pid>/stat.
func cpuSeconds(pid int) float64 { return cpuSecondsFile(fmt.Sprintf("/proc/%d/stat", pid)) }

// cpuSecondsFile is utime+stime from a stat file of /proc (a process's or
// a thread's).
func cpuSecondsFile(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	k, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return float64(u+k) / clockTicks
}

// roundTrips is a pass-through TCP proxy in front of Azurite that counts
// the HTTP requests the handlers send (one request is one round trip: a
// point read, a query page, an entity-group transaction, a single write).
// It reads only the request heads (and skips request bodies by their
// length); answers are copied back untouched, so it costs little CPU
// beside what it measures.
type roundTrips struct {
	l                     net.Listener
	port                  int
	total, reads, batches atomic.Int64
	writes, unparsed      atomic.Int64
	byTable               sync.Map // table name suffix → *atomic.Int64
	// busy sums, per table and kind of request, the time from a request
	// sent to the first byte of its answer (Azurite serves one request at
	// a time: the shares say where its time goes, queueing included).
	busy sync.Map // "table kind" → *atomic.Int64 (nanoseconds)
	// calls counts the requests busy sums the time of, by the same label.
	calls sync.Map // "table kind" → *atomic.Int64
	// rows counts the operations of the outbox's transactions by the kind
	// of row they write (txRows): what delivery writes per alert.
	rows sync.Map // kind → *atomic.Int64
	// keys counts the row keys the queries by key name, by label ("outbox
	// query (by key a-)"), and keyQueries those queries: in Azure Table
	// Storage each such query scans its partition, a point read per key
	// would not.
	keys, keyQueries sync.Map // label → *atomic.Int64
}

// keyCounts returns the row keys read by key and the queries that read
// them, by label.
func (r *roundTrips) keyCounts() (keys, queries map[string]int64) {
	return counted(&r.keys), counted(&r.keyQueries)
}

// callCounts returns the requests answered, by table and kind.
func (r *roundTrips) callCounts() map[string]int64 { return counted(&r.calls) }

// rowCounts returns the outbox transactions' operations counted by kind.
func (r *roundTrips) rowCounts() map[string]int64 { return counted(&r.rows) }

// counted reads a map of counters (name → *atomic.Int64).
func counted(m *sync.Map) map[string]int64 {
	out := map[string]int64{}
	m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// txOp finds a transaction's operations: the request line of each part
// (its method, and its row key when the URL names one) and, for those
// with a body, the row key and, on a cooldown row, the key it holds
// (internal/tablestore/outbox.go's Key property).
var txOp = regexp.MustCompile(`(?m)^(POST|PUT|PATCH|MERGE|DELETE) (\S*) HTTP/1\.1`)

var (
	txRowKey  = regexp.MustCompile(`RowKey='([^']{0,2})|"RowKey":"([^"]{0,2})`)
	txCoolKey = regexp.MustCompile(`"Key":"(group|inhibit|held)\|`)
)

// txRows names the kind of row each operation of an outbox transaction
// writes: its row key's prefix ("a-" alert, "r-" its index row, "d-"
// decision, "c-" cooldown row, "l-" log entry, "~h" head), a cooldown
// row told apart by its key's first word ("group", "inhibit", "held"; a
// rule's cooldown is "cooldown"), deletions as "delete".
func txRows(body []byte) []string {
	locs := txOp.FindAllSubmatchIndex(body, -1)
	out := make([]string, 0, len(locs))
	for i, l := range locs {
		end := len(body)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		if string(body[l[2]:l[3]]) == "DELETE" {
			out = append(out, "delete")
			continue
		}
		part := body[l[0]:end]
		kind := "?"
		if m := txRowKey.FindSubmatch(part); m != nil {
			kind = string(m[1]) + string(m[2])
		}
		if kind == "c-" {
			kind = "cooldown"
			if m := txCoolKey.FindSubmatch(part); m != nil {
				kind = string(m[1])
			}
		}
		out = append(out, kind)
	}
	return out
}

// busyByTable returns the time counted per table and kind of request.
func (r *roundTrips) busyByTable() map[string]time.Duration {
	out := map[string]time.Duration{}
	r.busy.Range(func(k, v any) bool {
		out[k.(string)] = time.Duration(v.(*atomic.Int64).Load())
		return true
	})
	return out
}

// sent is a request forwarded, waiting for its answer.
type sent struct {
	label string
	at    time.Time
}

// table returns the table a request line names ("state", "journal",
// "findings", "outbox", …: the name without the run's prefix), "$batch"
// for transactions (their table is in the body) and "Tables" for table
// operations.
func requestTable(line []byte) string {
	f := bytes.Fields(line)
	if len(f) < 2 {
		return "?"
	}
	path := string(f[1])
	// /devstoreaccount1/<table>(…) or /devstoreaccount1/<table>?…
	parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 3)
	if len(parts) < 2 {
		return "?"
	}
	name := parts[1]
	if i := strings.IndexAny(name, "(?"); i >= 0 {
		name = name[:i]
	}
	for _, suf := range []string{"journal", "state", "findings", "deadletters", "outbox", "checkpoints", "silences"} {
		if strings.HasSuffix(strings.ToLower(name), suf) {
			return suf
		}
	}
	return name
}

// byTableCounts returns the requests counted per table.
func (r *roundTrips) byTableCounts() map[string]int64 { return counted(&r.byTable) }

type roundTripCounts struct{ total, reads, batches, writes int64 }

func (r *roundTrips) counts() roundTripCounts {
	return roundTripCounts{r.total.Load(), r.reads.Load(), r.batches.Load(), r.writes.Load()}
}

func startProxy(azPort int) (*roundTrips, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rt := &roundTrips{l: l, port: l.Addr().(*net.TCPAddr).Port}
	target := fmt.Sprintf("127.0.0.1:%d", azPort)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go rt.serve(c, target)
		}
	}()
	return rt, nil
}

func (r *roundTrips) serve(c net.Conn, target string) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	// The SDK sends a request on a connection only once the answer to the
	// one before is read: the first bytes read after a request are its
	// answer's.
	waiting := make(chan sent, 4)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf) // answers, untouched
			if n > 0 {
				select {
				case s := <-waiting:
					b, _ := r.busy.LoadOrStore(s.label, &atomic.Int64{})
					b.(*atomic.Int64).Add(int64(time.Since(s.at)))
					n, _ := r.calls.LoadOrStore(s.label, &atomic.Int64{})
					n.(*atomic.Int64).Add(1)
				default:
				}
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		c.Close()
	}()
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(up, 64<<10)
	for {
		n, label, err := r.request(br, bw)
		if err == nil && n > 0 {
			// Before the last bytes go: the answer cannot come first.
			select {
			case waiting <- sent{label, time.Now()}:
			default:
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			if n < 0 {
				// Not the HTTP/1.1 the SDK sends: pass the rest through.
				r.unparsed.Add(1)
				if bw.Flush() == nil {
					io.Copy(up, br)
				}
			}
			return
		}
	}
}

// request forwards one request from br to up and counts it, and names it
// (its table and kind: query, read, write, tx). It returns -1 with an error
// when the request cannot be framed.
func (r *roundTrips) request(br *bufio.Reader, up io.Writer) (int, string, error) {
	var length int64
	chunked, isBatch := false, false
	first := true
	label := ""
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		if first {
			first = false
			r.total.Add(1)
			if t := requestTable(line); t != "$batch" {
				c, _ := r.byTable.LoadOrStore(t, &atomic.Int64{})
				c.(*atomic.Int64).Add(1)
				switch {
				case !bytes.HasPrefix(line, []byte("GET ")):
					label = t + " write"
				case bytes.Contains(line, []byte("PartitionKey='")):
					label = t + " read"
				default:
					label = t + " query" + queryKind(line)
					if n := bytes.Count(line, []byte("RowKey%20eq")) + bytes.Count(line, []byte("RowKey+eq")); n > 0 {
						c, _ := r.keys.LoadOrStore(label, &atomic.Int64{})
						c.(*atomic.Int64).Add(int64(n))
						q, _ := r.keyQueries.LoadOrStore(label, &atomic.Int64{})
						q.(*atomic.Int64).Add(1)
					}
				}
			} else {
				isBatch = true
			}
			switch {
			case bytes.HasPrefix(line, []byte("GET ")):
				r.reads.Add(1)
			case bytes.Contains(line, []byte("/$batch")):
				r.batches.Add(1)
			default:
				r.writes.Add(1)
			}
		} else if k, v, ok := bytes.Cut(line, []byte(":")); ok {
			switch {
			case bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")):
				length, _ = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			case bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")):
				chunked = true
			}
		}
		if _, err := up.Write(line); err != nil {
			return 0, "", err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
	}
	if chunked {
		return -1, "", errors.New("chunked request")
	}
	if isBatch {
		// A transaction: its table is named in its first operation.
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return 0, "", err
		}
		t := "$batch"
		if i := bytes.Index(body, []byte(" http")); i >= 0 {
			if j := bytes.IndexByte(body[i+1:], ' '); j >= 0 {
				if u, err := url.Parse(string(body[i+1 : i+1+j])); err == nil {
					t = requestTable([]byte("X "+u.Path)) + " (tx)"
				}
			}
		}
		c, _ := r.byTable.LoadOrStore(t, &atomic.Int64{})
		c.(*atomic.Int64).Add(1)
		if t == "outbox (tx)" {
			for _, k := range txRows(body) {
				n, _ := r.rows.LoadOrStore(k, &atomic.Int64{})
				n.(*atomic.Int64).Add(1)
			}
		}
		_, err := up.Write(body)
		return 1, t, err
	}
	_, err := io.CopyN(up, br, length)
	return 1, label, err
}

func (r *roundTrips) close() { r.l.Close() }

// queryKind tells apart, by their filters, the queries of the outbox's
// senders (what is due), its catch-ups (the log entries after a row key),
// those reading rows by key, and the rest.
func queryKind(line []byte) string {
	switch {
	case bytes.Contains(line, []byte("Pending")):
		return " (due)"
	case bytes.Contains(line, []byte("RowKey%20gt%20%27l-")), bytes.Contains(line, []byte("RowKey+gt+%27l-")):
		return " (log)"
	case bytes.Contains(line, []byte("RowKey%20eq")), bytes.Contains(line, []byte("RowKey+eq")):
		// The kind of row: the row key's prefix (outbox.go), URL-encoded.
		for _, sep := range []string{"RowKey%20eq%20%27", "RowKey+eq+%27"} {
			if _, after, ok := bytes.Cut(line, []byte(sep)); ok && len(after) >= 2 {
				return " (by key " + string(after[:2]) + ")"
			}
		}
		return " (by key)"
	}
	return ""
}

// catcher is the webhook receiver: it counts what it gets.
type catcher struct {
	srv     *http.Server
	url     string
	mu      sync.Mutex
	alerts  int
	bySev   map[string]int
	digests int
	// seen counts the alerts received by path and ID (the sweep gives each
	// set of handlers a path of its own), runs what each path received.
	seen map[string]*receipt
	runs map[string]*tally
}

// receipt is how often an alert was received on one path, and when first.
type receipt struct {
	n     int
	first time.Time
}

// dup is an alert received again: its rule, ID, the path it came to (the
// sweep's run) and how long after the first time.
type dup struct {
	rule, id, path string
	after          time.Duration
}

// maxDups bounds the repeats a run's tally keeps to show.
const maxDups = 10

func startCatcher() (*catcher, error) {
	c := &catcher{bySev: map[string]int{}, seen: map[string]*receipt{}, runs: map[string]*tally{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c.url = "http://" + l.Addr().String()
	c.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var a alert.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		if a.Schema == alert.SchemaVersion {
			c.alerts++
			// By the path the sender was given (the sweep gives each set
			// of handlers its own) and ID.
			run := c.runs[r.URL.Path]
			if run == nil {
				run = &tally{byRule: map[string]int{}}
				c.runs[r.URL.Path] = run
			}
			run.alerts++
			run.byRule[a.Rule]++
			k := r.URL.Path + "\x00" + a.ID
			if got := c.seen[k]; got == nil {
				c.seen[k] = &receipt{n: 1, first: time.Now()}
			} else {
				got.n++
				run.twice++
				if len(run.dups) < maxDups {
					run.dups = append(run.dups, dup{rule: a.Rule, id: a.ID, path: r.URL.Path, after: time.Since(got.first)})
				}
			}
			c.bySev[a.Severity.String()]++
		} else {
			c.digests++
		}
		c.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})}
	go c.srv.Serve(l)
	return c, nil
}

func (c *catcher) close() { c.srv.Close() }

// prepare finds the pinned Azurite's tools, makes a work directory (kept
// with keep) and builds kvwatch into it; cleanup removes the directory
// unless it is kept. name prefixes what it prints.
func prepare(ctx context.Context, name string, keep bool, stderr io.Writer) (tools, work, bin string, cleanup func(), err error) {
	tools, err = azurite.Tools()
	if err != nil {
		return "", "", "", nil, err
	}
	root := filepath.Dir(filepath.Dir(tools)) // the checkout
	work, err = os.MkdirTemp("", "kvwatch-"+name+"-")
	if err != nil {
		return "", "", "", nil, err
	}
	cleanup = func() { os.RemoveAll(work) }
	if keep {
		fmt.Fprintf(stderr, "%s: work directory %s (kept)\n", name, work)
		cleanup = func() {}
	}
	fmt.Fprintf(stderr, "%s: building kvwatch\n", name)
	bin = filepath.Join(work, "kvwatch")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kvwatch")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		cleanup()
		return "", "", "", nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return tools, work, bin, cleanup, nil
}

// tally is what the catcher had received on one path (from one set of
// handlers: the sweep gives each its own, "/alerts/"+run) at one moment:
// alerts, alerts by rule and alerts whose ID it had received before.
type tally struct {
	alerts int
	byRule map[string]int
	twice  int
	dups   []dup // the first maxDups repeats (not copied by on)
}

// on returns what the handlers of run sent so far.
func (c *catcher) on(run string) tally {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.runs["/alerts/"+run]
	if t == nil {
		return tally{}
	}
	return tally{alerts: t.alerts, byRule: maps.Clone(t.byRule), twice: t.twice}
}

// since describes what was received between t0 and t: alerts received
// twice, then the rules with the most alerts, most first.
func (t tally) since(t0 tally) string {
	type rc struct {
		rule string
		n    int
	}
	var rs []rc
	for r, n := range t.byRule {
		if d := n - t0.byRule[r]; d > 0 {
			rs = append(rs, rc{r, d})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n > rs[j].n || rs[i].n == rs[j].n && rs[i].rule < rs[j].rule })
	parts := []string{fmt.Sprintf("%d twice", t.twice-t0.twice)}
	for _, r := range rs[:min(len(rs), 5)] {
		parts = append(parts, fmt.Sprintf("%s %d", r.rule, r.n))
	}
	return strings.Join(parts, ", ")
}

// logProblems returns the first lines of a handler's log (warn level and
// above, JSON lines).
func logProblems(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	out := ""
	for i, l := range lines {
		if i == 5 {
			out += fmt.Sprintf("  ... %d lines in all, in %s\n", len(lines), path)
			break
		}
		if len(l) > 300 {
			l = l[:300] + "…"
		}
		out += "  " + l + "\n"
	}
	return out
}

// ---------------------------------------------------------------------------
// Figures.

func report(w io.Writer, o options, r *result, hs []*handler, az *azurite.Server, rt *roundTrips, hook *catcher) {
	mainPart, big := r.parts[0], r.parts[1]
	records := mainPart.records + big.records
	wall := r.t1.Sub(r.t0)
	cores := float64(runtime.NumCPU())
	mib := func(kib int64) string { return fmt.Sprintf("%d MiB", kib>>10) }
	fmt.Fprintln(w)
	fmt.Fprintln(w, "figures:")
	fmt.Fprintf(w, "stopped-by: %s\n", r.stopReason)
	fmt.Fprintf(w, "records: %d (%d events; %d in %d-event batches, %d in %d-event batches)\n",
		records, mainPart.events+big.events, mainPart.records, o.batch, big.records, o.bigBatch)
	if len(o.env) > 0 {
		fmt.Fprintf(w, "handler-environment: %s\n", strings.Join(o.env, " "))
	}
	fmt.Fprintf(w, "demo-days: %d from %s (seeds %d..%d), %d partitions, %d handler processes\n",
		r.days, o.start.Format(time.DateOnly), o.seed, o.seed+r.days-1, o.partitions, o.handlers)
	fmt.Fprintf(w, "accepted: %d (skipped %d, duplicates dropped %d, dead-lettered %d), findings %d\n",
		mainPart.accepted+big.accepted, mainPart.skipped+big.skipped, mainPart.dups+big.dups, mainPart.dead+big.dead, mainPart.finds+big.finds)
	fmt.Fprintf(w, "duration: %s\n", wall.Round(time.Second))
	fmt.Fprintf(w, "throughput: %.0f records/s\n", float64(records)/wall.Seconds())
	if mainPart.records > 0 {
		fmt.Fprintf(w, "throughput-%d-event-batches: %.0f records/s\n", o.batch, float64(mainPart.records)/mainPart.last.Sub(mainPart.first).Seconds())
	}
	if big.records > 0 {
		fmt.Fprintf(w, "throughput-%d-event-batches: %.0f records/s\n", o.bigBatch, float64(big.records)/big.last.Sub(big.first).Seconds())
	}
	for i, p := range []*partStats{mainPart, big} {
		size := []int{o.batch, o.bigBatch}[i]
		if p.batches == 0 {
			continue
		}
		fmt.Fprintf(w, "batch-latency-%d-events: median %s, p99 %s, max %s (post to answer, %d batches)\n", size,
			ms(pct(p.hostLat, 50)), ms(pct(p.hostLat, 99)), ms(pct(p.hostLat, 100)), p.batches)
		fmt.Fprintf(w, "handler-time-%d-events: median %s, p99 %s (as the handler reports it)\n", size,
			ms(pct(p.handlerLat, 50)), ms(pct(p.handlerLat, 99)))
		fmt.Fprintf(w, "retried-batches-%d-events: %d\n", size, p.retried)
	}
	for i, h := range hs {
		peak := ""
		if r.hwm[0] != nil {
			peak = fmt.Sprintf("%s with %d-event batches", mib(r.hwm[0][i]), o.batch)
		}
		if big.batches > 0 && r.hwm[1] != nil {
			if !r.hwmReset {
				peak += fmt.Sprintf("; %s over the whole run, %d-event batches included (VmHWM could not be reset)", mib(r.hwm[1][i]), o.bigBatch)
			} else {
				peak += fmt.Sprintf("; %s with %d-event batches", mib(r.hwm[1][i]), o.bigBatch)
			}
		}
		fmt.Fprintf(w, "peak-rss-handler-%s: %s (VmHWM)\n", h.name, peak)
		fmt.Fprintf(w, "rss-handler-%s: %s\n", h.name, rssFlat(r.samples, i, mainPart.records, r.bigAt, o.batch))
	}
	fmt.Fprintf(w, "peak-rss-azurite: %s (VmHWM)\n", mib(r.azHWM))
	hcpu := 0.0
	for _, h := range hs {
		hcpu += r.cpu["handler "+h.name]
	}
	share := func(s float64) string {
		return fmt.Sprintf("%.0fs, %.0f%% of the machine (%d cores)", s, 100*s/(wall.Seconds()*cores), int(cores))
	}
	for _, h := range hs {
		fmt.Fprintf(w, "cpu-handler-%s: %s\n", h.name, share(r.cpu["handler "+h.name]))
	}
	fmt.Fprintf(w, "cpu-handlers: %s, %.1f µs per record\n", share(hcpu), hcpu*1e6/float64(max(records, 1)))
	fmt.Fprintf(w, "cpu-azurite: %s, %.1f µs per record\n", share(r.cpu["azurite"]), r.cpu["azurite"]*1e6/float64(max(records, 1)))
	fmt.Fprintf(w, "cpu-azurite-main-thread: %.0fs, %.0f%% of one core (Node runs Azurite's JavaScript on this one thread)\n",
		r.cpu["azurite main thread"], 100*r.cpu["azurite main thread"]/wall.Seconds())
	fmt.Fprintf(w, "cpu-handlers-per-core: %.0f%% of one core each on average (Go uses every core)\n",
		100*hcpu/float64(len(hs))/wall.Seconds())
	fmt.Fprintf(w, "cpu-driver: %s (demo generation, host double, round-trip proxy, webhook catcher)\n", share(r.cpu["driver"]))
	if r.cpu["azurite"] > 0 {
		fmt.Fprintf(w, "cpu-handlers-per-azurite: %.2f\n", hcpu/r.cpu["azurite"])
	}
	if rt != nil {
		d := roundTripCounts{r.reqs1.total - r.reqs0.total, r.reqs1.reads - r.reqs0.reads, r.reqs1.batches - r.reqs0.batches,
			r.reqs1.writes - r.reqs0.writes}
		perK := func(n int64) float64 { return float64(n) * 1000 / float64(max(records, 1)) }
		fmt.Fprintf(w, "table-round-trips-per-1000-records: %.1f (reads and queries %.1f, entity-group transactions %.1f, single writes %.1f)\n",
			perK(d.total), perK(d.reads), perK(d.batches), perK(d.writes))
		fmt.Fprintf(w, "table-requests: %d, %.0f per second\n", d.total, float64(d.total)/wall.Seconds())
		if n := rt.unparsed.Load(); n > 0 {
			fmt.Fprintf(w, "table-connections-not-counted: %d (requests the proxy could not frame)\n", n)
		}
	} else {
		fmt.Fprintln(w, "table-round-trips-per-1000-records: not counted (-count-round-trips=false)")
	}
	hook.mu.Lock()
	twice := 0
	for _, r := range hook.seen {
		if r.n > 1 {
			twice++
		}
	}
	sev := []string{}
	for _, s := range []string{"critical", "high", "medium", "low", "info"} {
		if n := hook.bySev[s]; n > 0 {
			sev = append(sev, fmt.Sprintf("%s %d", s, n))
		}
	}
	fmt.Fprintf(w, "timer-invocations: %d (Housekeeping every %s, LoggingSilence every %s, at handler %s)\n",
		r.timers.Load(), o.housekeeping, o.silence, hs[0].name)
	fmt.Fprintf(w, "alerts-received: %d (%s), %d received twice\n", hook.alerts, strings.Join(sev, ", "), twice)
	hook.mu.Unlock()
}

// rssFlat describes VmRSS after warm-up (the first tenth of the main part's
// records, at least a minute) until the big batches begin: its range, and
// readings at quarters.
func rssFlat(ss []sample, i int, mainRecords int, bigAt time.Duration, batch int) string {
	if len(ss) == 0 {
		return "no samples"
	}
	warm := int64(mainRecords / 10)
	var after []sample
	for _, s := range ss {
		if s.records >= warm && s.at >= time.Minute && (bigAt == 0 || s.at < bigAt) {
			after = append(after, s)
		}
	}
	if len(after) < 4 {
		return fmt.Sprintf("too short a run to judge (%d samples after warm-up)", len(after))
	}
	lo, hi := after[0].rss[i], after[0].rss[i]
	for _, s := range after {
		lo, hi = min(lo, s.rss[i]), max(hi, s.rss[i])
	}
	q := []string{}
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		s := after[min(int(f*float64(len(after))), len(after)-1)]
		q = append(q, fmt.Sprintf("%d", s.rss[i]>>10))
	}
	return fmt.Sprintf("%d–%d MiB with %d-event batches after warm-up (VmRSS every second from %s to %s, records %d to %d); at 0/25/50/75/100%% of that: %s MiB",
		lo>>10, hi>>10, batch, after[0].at.Round(time.Second), after[len(after)-1].at.Round(time.Second),
		after[0].records, after[len(after)-1].records, strings.Join(q, " / "))
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

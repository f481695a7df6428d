package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Process is a custom handler started the way the Functions host starts
// it: its port and worker id in the environment, then GET / polled until
// anything answers.
type Process struct {
	Cmd     *exec.Cmd
	Port    int
	BaseURL string
	// Started and Ready bound the cold start: process start to the first
	// answer to GET /.
	Started, Ready time.Time

	done chan error
}

// Start runs binary with args and env (plus the host's variables) and
// waits until it answers GET / or timeout (the host gives up after 30 s).
// Output goes to out.
func Start(ctx context.Context, binary string, args, env []string, out io.Writer, timeout time.Duration) (*Process, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(),
		"FUNCTIONS_CUSTOMHANDLER_PORT="+strconv.Itoa(port),
		"FUNCTIONS_HTTPWORKER_PORT="+strconv.Itoa(port),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID=double-"+strconv.Itoa(port),
		"FUNCTIONS_HTTPWORKER_ID=double-"+strconv.Itoa(port),
	), env...)
	cmd.Stdout, cmd.Stderr = out, out
	p := &Process{Cmd: cmd, Port: port, BaseURL: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan error, 1)}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.done <- cmd.Wait() }()
	client := &http.Client{Timeout: time.Second}
	deadline := p.Started.Add(timeout)
	for {
		if ctx.Err() != nil {
			p.Kill()
			return nil, ctx.Err()
		}
		resp, err := client.Get(p.BaseURL + "/")
		if err == nil {
			resp.Body.Close()
			p.Ready = time.Now()
			return p, nil
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("handler exited before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("handler not ready within %s", timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for the exit.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(timeout):
		p.Kill()
		return errors.New("did not stop in time; killed")
	}
}

// Kill ends the process at once, as a crash would.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// Hub is an Event Hub double: an append-only log per partition, with the
// Event Hubs extension's checkpoints.
type Hub struct {
	mu         sync.Mutex
	partitions map[string][]Event
	checkpoint map[string]int // index of the next event to deliver
	enqueued   time.Time
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{partitions: map[string][]Event{}, checkpoint: map[string]int{}, enqueued: time.Now().UTC()}
}

// Append adds event bodies to a partition, numbering them as Event Hubs does.
func (h *Hub) Append(partition string, bodies ...[]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range bodies {
		seq := int64(len(h.partitions[partition]))
		h.partitions[partition] = append(h.partitions[partition], Event{Body: b, Sequence: seq, Offset: seq * 1024,
			Enqueued: h.enqueued.Add(time.Duration(seq) * time.Millisecond)})
	}
}

// Pending reports how many events of a partition are not checkpointed.
func (h *Hub) Pending(partition string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.partitions[partition]) - h.checkpoint[partition]
}

// Partitions lists the partitions.
func (h *Hub) Partitions() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for p := range h.partitions {
		out = append(out, p)
	}
	return out
}

// Rewind moves a partition's checkpoint back, as a lost checkpoint (crash,
// partition moved) makes the extension redeliver from an earlier point.
func (h *Hub) Rewind(partition string, events int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checkpoint[partition] = max(0, h.checkpoint[partition]-events)
}

// Retry is function.json's retry policy.
type Retry struct {
	MaxRetryCount int // -1: forever
	Min, Max      time.Duration
}

// Deliver is one step of the trigger: the next batch of up to batchSize
// events of a partition, posted to target in shape, retried by the retry
// policy until it succeeds, then checkpointed. It returns how many events
// the batch held (0 when the partition is drained) and the number of
// attempts.
func (h *Hub) Deliver(ctx context.Context, client *http.Client, target, partition string, batchSize int, shape Shape, retry Retry) (int, int, error) {
	h.mu.Lock()
	from := h.checkpoint[partition]
	evs := h.partitions[partition]
	to := min(len(evs), from+batchSize)
	batch := Batch{Namespace: "double.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch",
		Partition: partition, Events: append([]Event(nil), evs[from:to]...)}
	h.mu.Unlock()
	if len(batch.Events) == 0 {
		return 0, 0, nil
	}
	wait := retry.Min
	for attempt := 0; ; attempt++ {
		batch.RetryCount = attempt
		body, err := Body(batch, shape)
		if err != nil {
			return 0, attempt, err
		}
		resp, err := Invoke(ctx, client, target, "AuditEvents", body)
		if err == nil && resp.Status/100 == 2 {
			h.mu.Lock()
			if h.checkpoint[partition] < to {
				h.checkpoint[partition] = to
			}
			h.mu.Unlock()
			return len(batch.Events), attempt + 1, nil
		}
		if retry.MaxRetryCount >= 0 && attempt >= retry.MaxRetryCount {
			// No more retries: the extension checkpoints anyway.
			h.mu.Lock()
			h.checkpoint[partition] = max(h.checkpoint[partition], to)
			h.mu.Unlock()
			return len(batch.Events), attempt + 1, fmt.Errorf("batch failed after %d attempts: %v", attempt+1, errOr(err, resp))
		}
		select {
		case <-ctx.Done():
			return 0, attempt + 1, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, retry.Max)
	}
}

func errOr(err error, r *Response) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("HTTP %d", r.Status)
}

// TimerBody is the body the host posts for a timer function.
func TimerBody(name string, last, next time.Time, pastDue bool) []byte {
	return []byte(fmt.Sprintf(`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":%q,"Next":%q,"LastUpdated":%q},"IsPastDue":%t}},"Metadata":{"sys":{"MethodName":%q,"UtcNow":%q,"RandGuid":"0a7c3e1b-5d2f-4b8e-9c6a-1f3e5d7b9a2c"}}}`,
		last.Format(time.RFC3339Nano), next.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano), pastDue, name,
		time.Now().UTC().Format(time.RFC3339Nano)))
}

// Package handlers is the HTTP contract between the Azure Functions host and
// kvwatch as a custom handler: readiness on GET /, one route per function
// (POST /<FunctionName>), and the response shape the host expects.
package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

// DefaultMaxBody is the default limit on an invocation body: a full batch
// of host.json's maxEventBatchSize (16) always fits. An Event Hubs Standard
// event is at most 1 MiB (body, properties and system properties), and with
// dataType "string" the host encodes each byte at most 7 times over (a
// control byte becomes \u00XX in the array of strings, and that backslash
// is escaped again when the array is written as a JSON string): 16 × 7 MiB
// plus metadata is under 128 MiB. internal/contract checks host.json
// against this.
const DefaultMaxBody = 128 << 20

// MaxEventBytes is the largest Event Hubs event (Standard tier), what
// DefaultMaxBody is sized for.
const MaxEventBytes = 1 << 20

// WorstEncoding is how many bytes of invocation body one byte of an event
// can become through the host's encodings (dataType "string").
const WorstEncoding = 7

// RetryWarnAt is the retry count from which a held batch is logged as an
// error: the host's retry policy retries forever and holds the partition.
const RetryWarnAt = 5

// Processor runs a decoded batch through the pipeline. An error means a
// dependency failed and the host should retry the batch.
type Processor interface {
	Process(ctx context.Context, b *ingest.Batch) (pipeline.Summary, error)
}

// Config configures the handler.
type Config struct {
	// MaxBody limits an invocation body in bytes; DefaultMaxBody when 0.
	MaxBody int64
	// BodyTimeout bounds reading one invocation body; DefaultBodyTimeout
	// when 0. A client that sends slower gets an error, not a goroutine
	// and a buffer held forever.
	BodyTimeout time.Duration
	// Binding is the Event Hubs trigger's binding name ("events").
	Binding string
	// Letters receives what can't be read before the pipeline does (an
	// oversized body).
	Letters deadletter.Sink
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Timers are the timer functions by function name (LoggingSilence,
	// Digest, Housekeeping), each served at POST /<name>.
	Timers map[string]TimerFunc
}

// Handler serves the host.
type Handler struct {
	cfg  Config
	proc Processor
	log  zerolog.Logger
	mux  *http.ServeMux
}

// New returns the handler for the function app's routes.
func New(cfg Config, proc Processor, log zerolog.Logger) *Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, proc: proc, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.ready)
	h.mux.HandleFunc("HEAD /{$}", h.ready)
	// Every Event Hubs trigger (AuditEvents, AuditEvents_<region>) runs
	// the same pipeline; a timer's exact route is more specific and wins.
	h.mux.HandleFunc("POST /{function}", func(w http.ResponseWriter, r *http.Request) {
		if !IsAuditFunction(r.PathValue("function")) {
			writeError(w, http.StatusNotFound, "no function at this route")
			return
		}
		h.auditEvents(w, r)
	})
	for name, fn := range cfg.Timers {
		h.mux.HandleFunc("POST /"+name, h.timer(name, fn))
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if name := strings.TrimPrefix(r.URL.Path, "/"); IsAuditFunction(name) || cfg.Timers[name] != nil {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
			return
		}
		writeError(w, http.StatusNotFound, "no function at this route")
	})
	return h
}

// AuditFunction is the Event Hubs trigger function of the first region in
// the deployment (function-app/AuditEvents, connection EventHubConnection).
const AuditFunction = "AuditEvents"

// RegionFunction is the name of the trigger function that reads the hub of
// another region: AuditEvents_<region>, with the connection
// EventHubConnection_<region> (see RegionConnection). `make package`
// generates one per region after the first; region names are Azure's
// lower-case location names (westeurope).
func RegionFunction(region string) string { return AuditFunction + "_" + region }

// RegionConnection is the connection setting prefix of RegionFunction(region):
// the app setting <it>__fullyQualifiedNamespace names that region's namespace.
func RegionConnection(region string) string { return "EventHubConnection_" + region }

// ValidRegion reports whether s can be a region in a function name: an
// Azure location name, lower-case letters and digits, starting with a letter.
func ValidRegion(s string) bool {
	if len(s) < 2 || len(s) > 40 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// IsAuditFunction reports whether name is an Event Hubs trigger function
// this handler serves: AuditEvents or AuditEvents_<region>.
func IsAuditFunction(name string) bool {
	if name == AuditFunction {
		return true
	}
	region, ok := strings.CutPrefix(name, AuditFunction+"_")
	return ok && ValidRegion(region)
}

// ServeHTTP implements http.Handler. Requests that do not come from the
// loopback interface are refused: only the local host may call.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !fromLoopback(r.RemoteAddr) {
		writeError(w, http.StatusForbidden, "only the local Functions host may call this handler")
		return
	}
	h.mux.ServeHTTP(w, r)
}

func fromLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (h *Handler) ready(w http.ResponseWriter, _ *http.Request) { writeReady(w) }

// writeReady is the answer to the host's readiness probe.
func writeReady(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"ready"}`)
}

// Response is the custom handler response body the host reads.
type Response struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

func (h *Handler) auditEvents(w http.ResponseWriter, r *http.Request) {
	start := h.cfg.Now()
	function := strings.TrimPrefix(r.URL.Path, "/")
	log := h.log.With().Str("function", function).
		Str("invocation_id", r.Header.Get("X-Azure-Functions-InvocationId")).Logger()
	ctx := r.Context()

	body, err := readBody(w, r, h.cfg.MaxBody, h.cfg.BodyTimeout)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		// Retrying can't make the body smaller, and failing would hold the
		// partition forever: keep what we read as a dead letter, say so
		// loudly, and let the host move on.
		msg := fmt.Sprintf("invocation body exceeds the limit of %d bytes (KVWATCH_MAX_BODY_BYTES); "+
			"its events were not processed and its beginning was dead-lettered: raise the limit or lower maxEventBatchSize in host.json", h.cfg.MaxBody)
		l := deadletter.Letter{At: h.cfg.Now().UTC(), Reason: msg, Event: -1, Record: -1}
		l.SetRaw(body)
		l.Size, l.Truncated = max(len(body), int(r.ContentLength)), true
		if h.cfg.Letters != nil {
			if err := h.cfg.Letters.Put(ctx, []deadletter.Letter{l}); err != nil {
				log.Error().Err(err).Msg("dead letter for oversized body not stored; asking the host to retry")
				writeError(w, http.StatusInternalServerError, "dead-letter store failed; retry")
				return
			}
		}
		log.Error().Int64("limit", h.cfg.MaxBody).Msg(msg)
		writeResponse(w, []string{"kvwatch: error: " + msg})
		return
	case err != nil:
		// The connection broke while reading: the host will not see our
		// answer anyway; tell it to retry in case it does.
		log.Warn().Err(err).Msg("reading invocation body failed")
		writeError(w, http.StatusInternalServerError, "reading the invocation body failed; retry")
		return
	}

	batch, sum, err, panicked, stack := h.process(ctx, body)
	if panicked != nil {
		// A bug, not bad luck: a retry would panic again and hold the
		// partition. Keep the body as a dead letter and move on, loudly.
		msg := fmt.Sprintf("internal error while processing this batch (%v); its body was dead-lettered", panicked)
		l := deadletter.Letter{At: h.cfg.Now().UTC(), Reason: msg, Event: -1, Record: -1}
		l.SetRaw(body)
		if h.cfg.Letters != nil {
			if err := h.cfg.Letters.Put(ctx, []deadletter.Letter{l}); err != nil {
				log.Error().Err(err).Msg("dead letter after an internal error not stored; asking the host to retry")
				writeError(w, http.StatusInternalServerError, "internal error; retry")
				return
			}
		}
		log.Error().Str("panic", fmt.Sprint(panicked)).Str("stack", string(stack)).Msg(msg)
		writeResponse(w, []string{"kvwatch: error: " + msg})
		return
	}
	logs := make([]string, 0, 2+len(batch.Problems))
	if batch.Retry != nil && batch.Retry.RetryCount > 0 {
		ev := log.Warn()
		if batch.Retry.RetryCount >= RetryWarnAt {
			ev = log.Error()
		}
		ev.Int("retry_count", batch.Retry.RetryCount).Str("partition", batch.Partition.PartitionID).
			Msg("batch is being retried; the partition is held until it succeeds")
		logs = append(logs, fmt.Sprintf("kvwatch: retry %d of this batch (partition %s)",
			batch.Retry.RetryCount, batch.Partition.PartitionID))
	}

	if err != nil {
		log.Error().Err(err).Str("partition", batch.Partition.PartitionID).
			Msg("batch failed on a dependency; answering 500 so the host retries it")
		writeError(w, http.StatusInternalServerError, "processing failed on a dependency; retry")
		return
	}
	sum.Elapsed = h.cfg.Now().Sub(start)
	logs = append(logs, sum.String())
	for _, p := range batch.Problems {
		logs = append(logs, "kvwatch: problem: "+sanitize(p))
	}
	writeResponse(w, logs)
}

// process decodes and processes one invocation body, turning a panic into
// a value instead of a dropped connection, with the stack where it
// happened (taken before the stack unwinds).
func (h *Handler) process(ctx context.Context, body []byte) (batch *ingest.Batch, sum pipeline.Summary, err error, panicked any, stack []byte) {
	defer func() {
		if p := recover(); p != nil {
			panicked, stack = p, debug.Stack()
		}
	}()
	dec := ingest.Decoder{Binding: h.cfg.Binding, Now: h.cfg.Now}
	batch = dec.Invocation(body)
	sum, err = h.proc.Process(ctx, batch)
	return batch, sum, err, nil, nil
}

func writeResponse(w http.ResponseWriter, logs []string) {
	w.Header().Set("Content-Type", "application/json")
	b, err := json.Marshal(Response{Outputs: map[string]any{}, Logs: logs, ReturnValue: nil})
	if err != nil { // cannot happen with strings
		b = []byte(`{"Outputs":{},"Logs":[],"ReturnValue":null}`)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg})
	_, _ = w.Write(b)
}

// sanitize keeps a log line on one line and free of control characters:
// problems quote record content, which is attacker-controlled.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
}

// Package ingest turns what arrives — a Functions host invocation body, an
// Event Hubs event body, an archived PT1H.json blob — into normalized audit
// events, each with the position it came from, plus dead letters for
// whatever could not be read.
//
// Nothing here fails a whole batch because of one bad piece: every problem
// is counted, described and dead-lettered, and the rest goes on.
package ingest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/deadletter"
)

// Stats counts what a batch held and what became of it.
type Stats struct {
	Events       int `json:"events"`       // event bodies (or files / lines)
	Records      int `json:"records"`      // records found in them
	Accepted     int `json:"accepted"`     // normalized Key Vault audit events
	Skipped      int `json:"skipped"`      // well-formed but not Key Vault AuditEvents
	Metrics      int `json:"metrics"`      // of Skipped: metric records
	Categories   int `json:"categories"`   // of Skipped: other log categories
	Resources    int `json:"resources"`    // of Skipped: other resource types
	DeadLettered int `json:"deadLettered"` // letters written (a letter may cover a whole body)
}

// Add adds o to s.
func (s *Stats) Add(o Stats) {
	s.Events += o.Events
	s.Records += o.Records
	s.Accepted += o.Accepted
	s.Skipped += o.Skipped
	s.Metrics += o.Metrics
	s.Categories += o.Categories
	s.Resources += o.Resources
	s.DeadLettered += o.DeadLettered
}

// PartitionContext is the Event Hubs partition an invocation's events came
// from, as the host describes it in Metadata.PartitionContext.
type PartitionContext struct {
	FullyQualifiedNamespace string `json:"FullyQualifiedNamespace"`
	EventHubName            string `json:"EventHubName"`
	ConsumerGroup           string `json:"ConsumerGroup"`
	PartitionID             string `json:"PartitionId"`
}

// RetryContext is present when the host's retry policy re-runs an invocation.
type RetryContext struct {
	RetryCount    int `json:"RetryCount"`
	MaxRetryCount int `json:"MaxRetryCount"`
}

// Batch is the result of reading one unit of input.
type Batch struct {
	Partition PartitionContext
	Retry     *RetryContext
	Events    []audit.Event
	Letters   []deadletter.Letter
	Stats     Stats
	// Problems describes, one line each, what went wrong (bad records,
	// missing metadata); it goes to the host's Logs and the log.
	Problems []string

	// raws locates the event bodies the batch's records were read from, so
	// that RecordRaw can give a record's bytes back when a later stage
	// cannot store it. Nothing is copied: the entries point into the input.
	raws []rawBody
}

// rawBody is where one event body's bytes are, and in which form.
type rawBody struct {
	file        string
	line, event int
	data        []byte
	form        byte // rawPlain, rawQuoted or rawQuotedBase64
}

const (
	rawPlain        = 0
	rawQuoted       = 'q' // a JSON string holding the body (dataType string)
	rawQuotedBase64 = 'b' // a JSON string holding the body in base64 (dataType binary)
)

// maxProblems bounds the Problems lines kept per batch; the counts in Stats
// stay exact.
const maxProblems = 20

func (b *Batch) problem(format string, args ...any) {
	if len(b.Problems) < maxProblems {
		b.Problems = append(b.Problems, fmt.Sprintf(format, args...))
	} else if len(b.Problems) == maxProblems {
		b.Problems = append(b.Problems, "further problems not listed")
	}
}

// Decoder reads input into batches. Its zero value is ready to use; a
// Decoder is not safe for concurrent use (keep one per goroutine or build
// one per call: it is cheap).
type Decoder struct {
	// Binding is the trigger's binding name in function.json; "events" when
	// empty. If Data lacks it but holds exactly one member, that one is used.
	Binding string
	// Now stamps dead letters; time.Now when nil.
	Now func() time.Time

	rec    audit.Record
	norm   audit.Normalizer
	intern audit.Interner
	buf    []byte // the unquoted Data.<binding>, reused across invocations

	// quoted, when set, is the JSON string the body being read was
	// unquoted from (into a scratch buffer that the next event reuses):
	// what the batch keeps to find the body again.
	quoted     []byte
	quotedForm byte
}

func (d *Decoder) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Decoder) letter(b *Batch, src audit.Source, reason string, raw []byte) {
	l := deadletter.Letter{
		At:          d.now().UTC(),
		Reason:      reason,
		Partition:   src.Partition,
		Sequence:    src.Sequence,
		HasSequence: src.HasSequence,
		File:        src.File,
		Line:        src.Line,
		Event:       src.Event,
		Record:      src.Record,
	}
	l.SetRaw(raw)
	b.Letters = append(b.Letters, l)
	b.Stats.DeadLettered++
}

// where describes a source position for messages.
func where(src audit.Source) string {
	var s string
	switch {
	case src.File != "" && src.Line > 0:
		s = fmt.Sprintf("%s:%d", src.File, src.Line)
	case src.File != "":
		s = src.File
	case src.HasSequence:
		s = fmt.Sprintf("partition %s sequence %d", src.Partition, src.Sequence)
	default:
		s = fmt.Sprintf("event %d", src.Event)
	}
	if src.Record >= 0 {
		s += fmt.Sprintf(" record %d", src.Record)
	}
	return s
}

// Body reads one Event Hubs event body: {"records": [...]}, or a single
// record object, and appends its events to b.
func (d *Decoder) Body(b *Batch, body []byte, src audit.Source) {
	b.Stats.Events++
	src.Record = -1
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		d.quoted = nil // no records to find again
		b.problem("%s: event body is not a JSON object", where(src))
		d.letter(b, src, "event body is not a JSON object", body)
		return
	}
	dec := jsontext.NewDecoder(bytes.NewBuffer(body), audit.DecodeOptions)
	d.guarded(b, dec, body, src)
}

// guarded reads an envelope; if the body turns out to be broken part way,
// whatever it had yielded is taken back and the whole body dead-lettered,
// so that replaying the letter later cannot count its records twice.
func (d *Decoder) guarded(b *Batch, dec *jsontext.Decoder, body []byte, src audit.Source) {
	raw := rawBody{file: src.File, line: src.Line, event: src.Event, data: body}
	if d.quoted != nil {
		raw.data, raw.form = d.quoted, d.quotedForm
		d.quoted = nil
	}
	b.raws = append(b.raws, raw)
	n, letters, stats := len(b.Events), len(b.Letters), b.Stats
	if err := d.envelope(b, dec, body, src); err != nil {
		b.Events, b.Letters = b.Events[:n], b.Letters[:letters]
		events := b.Stats.Events
		b.Stats = stats
		b.Stats.Events = events
		b.problem("%s: %v", where(src), err)
		d.letter(b, src, err.Error(), body)
	}
}

var errNoRecords = errors.New("no records member")

// envelope reads {"records":[...]} from dec. When the object has no records
// member it is taken as one record. A syntax error is returned (the caller
// dead-letters the body); bad records are dead-lettered one by one.
func (d *Decoder) envelope(b *Batch, dec *jsontext.Decoder, body []byte, src audit.Source) error {
	if _, err := dec.ReadToken(); err != nil { // {
		return fmt.Errorf("event body: %w", err)
	}
	found := false
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return fmt.Errorf("event body: %w", err)
		}
		isRec := !found && isRecords(name)
		if !isRec || dec.PeekKind() != '[' {
			if err := dec.SkipValue(); err != nil {
				return fmt.Errorf("event body: %w", err)
			}
			continue
		}
		found = true
		if _, err := dec.ReadToken(); err != nil { // [
			return fmt.Errorf("event body: %w", err)
		}
		for i := 0; dec.PeekKind() != ']'; i++ {
			rs := src
			rs.Record = i
			start := dec.InputOffset()
			d.rec = audit.Record{}
			err := d.rec.DecodeInterned(dec, &d.intern)
			var ferr *audit.FieldError
			if err != nil && !errors.As(err, &ferr) {
				return fmt.Errorf("event body: record %d: %w", i, err)
			}
			b.Stats.Records++
			if err != nil {
				raw := bytes.TrimLeft(body[start:dec.InputOffset()], " \t\r\n,")
				msg := "record does not decode: " + err.Error()
				b.problem("%s: %s", where(rs), msg)
				d.letter(b, rs, msg, raw)
				continue
			}
			d.normalize(b, rs, func() []byte {
				return bytes.TrimLeft(body[start:dec.InputOffset()], " \t\r\n,")
			})
		}
		if _, err := dec.ReadToken(); err != nil { // ]
			return fmt.Errorf("event body: %w", err)
		}
	}
	if _, err := dec.ReadToken(); err != nil { // }
		return fmt.Errorf("event body: %w", err)
	}
	if !found {
		rs := src
		rs.Record = 0
		d.record(b, body, rs)
	}
	return nil
}

// RecordRaw returns the raw bytes of the record an event of the batch was
// normalized from (the record as it stood in its event body), found again
// by the event's source position; ok is false if the batch has no body at
// that position. It decodes the body again, so it is for the rare record
// that has to be dead-lettered after ingest, not for every record. The
// bytes stay valid while the input the batch was read from does.
func (b *Batch) RecordRaw(src audit.Source) ([]byte, bool) {
	for i := len(b.raws) - 1; i >= 0; i-- {
		r := &b.raws[i]
		if r.file != src.File || r.line != src.Line || r.event != src.Event {
			continue
		}
		body := r.data
		if r.form != rawPlain {
			var err error
			if body, err = jsontext.AppendUnquote(nil, body); err != nil && len(body) == 0 {
				return nil, false
			}
			body = bytes.TrimSpace(body)
			if r.form == rawQuotedBase64 && (len(body) == 0 || body[0] != '{' && body[0] != '[') {
				if body, err = base64.StdEncoding.AppendDecode(nil, body); err != nil {
					return nil, false
				}
			}
		}
		return recordIn(bytes.TrimSpace(body), src.Record)
	}
	return nil, false
}

// recordIn returns record i of an event body: element i of its records
// array, or the whole body when it has no records member (a single record).
func recordIn(body []byte, i int) ([]byte, bool) {
	if i < 0 {
		return body, true
	}
	dec := jsontext.NewDecoder(bytes.NewReader(body), audit.DecodeOptions)
	if _, err := dec.ReadToken(); err != nil {
		return nil, false
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return nil, false
		}
		if !isRecords(name) || dec.PeekKind() != '[' {
			if err := dec.SkipValue(); err != nil {
				return nil, false
			}
			continue
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, false
		}
		for j := 0; j < i; j++ {
			if dec.PeekKind() == ']' {
				return nil, false
			}
			if err := dec.SkipValue(); err != nil {
				return nil, false
			}
		}
		v, err := dec.ReadValue()
		if err != nil {
			return nil, false
		}
		return bytes.Clone(v), true
	}
	if i == 0 {
		return body, true
	}
	return nil, false
}

func isRecords(name jsontext.Value) bool {
	s := string(name) // no allocation: compared, not kept
	return s == `"records"` || s == `"Records"` || s == `"RECORDS"`
}

// record decodes and normalizes one record given as a whole.
func (d *Decoder) record(b *Batch, raw []byte, src audit.Source) {
	b.Stats.Records++
	var err error
	if d.rec, err = audit.DecodeRecord(raw); err != nil {
		msg := "record does not decode: " + shortErr(err)
		b.problem("%s: %s", where(src), msg)
		d.letter(b, src, msg, raw)
		return
	}
	d.normalize(b, src, func() []byte { return raw })
}

// normalize normalizes d.rec; raw gives its bytes for a dead letter.
func (d *Decoder) normalize(b *Batch, src audit.Source, raw func() []byte) {
	ev, skip, err := d.norm.Normalize(&d.rec, src)
	switch {
	case err != nil:
		b.problem("%s: %v", where(src), err)
		d.letter(b, src, err.Error(), raw())
	case skip != audit.SkipNone:
		b.Stats.Skipped++
		switch skip {
		case audit.SkipMetric:
			b.Stats.Metrics++
		case audit.SkipCategory:
			b.Stats.Categories++
		case audit.SkipResourceType:
			b.Stats.Resources++
		}
	default:
		b.Stats.Accepted++
		b.Events = append(b.Events, ev)
	}
}

// shortErr keeps a decode error to one readable line.
func shortErr(err error) string {
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// ParseSequence reads a sequence number written as a JSON number or string.
func parseInt(v jsontext.Value) (int64, bool) {
	s := string(v)
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// Split cuts the batch, whose events are in time order, into consecutive
// batches, a new one starting wherever cut(prev, next) says, as an Event
// Hub delivers a stream in batches. The first carries the batch's dead
// letters, statistics and problems (the others have none of their own);
// all share its raw bodies, so RecordRaw answers for every one of them.
func (b *Batch) Split(cut func(prev, next *audit.Event) bool) []*Batch {
	var out []*Batch
	start := 0
	add := func(end int) {
		nb := &Batch{Partition: b.Partition, Retry: b.Retry, Events: b.Events[start:end:end], raws: b.raws}
		if len(out) == 0 {
			nb.Letters, nb.Stats, nb.Problems = b.Letters, b.Stats, b.Problems
		}
		out = append(out, nb)
		start = end
	}
	for i := 1; i < len(b.Events); i++ {
		if cut(&b.Events[i-1], &b.Events[i]) {
			add(i)
		}
	}
	add(len(b.Events))
	return out
}

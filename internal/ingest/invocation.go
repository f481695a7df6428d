package ingest

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/kvwatch/kvwatch/internal/audit"
)

// invocation is the Functions host's request body for a custom handler.
type invocation struct {
	Data     map[string]jsontext.Value `json:"Data"`
	Metadata struct {
		PartitionContext     jsontext.Value `json:"PartitionContext"`
		SequenceNumberArray  jsontext.Value `json:"SequenceNumberArray"`
		EnqueuedTimeUtcArray jsontext.Value `json:"EnqueuedTimeUtcArray"`
		RetryContext         *RetryContext  `json:"RetryContext"`
	} `json:"Metadata"`
}

// Invocation reads a host invocation body for the Event Hubs trigger with
// cardinality many. Data.<binding> may be any of the shapes the host sends:
// a JSON string holding an array of event objects (no dataType), of raw
// body strings (dataType string) or of base64 strings (dataType binary),
// or a plain JSON array of any of those. Per-event positions come from
// Metadata.SequenceNumberArray and EnqueuedTimeUtcArray (JSON-encoded
// strings of arrays, or plain arrays).
func (d *Decoder) Invocation(body []byte) *Batch {
	b := &Batch{}
	whole := audit.Source{Event: -1, Record: -1}
	var inv invocation
	if err := json.Unmarshal(body, &inv, audit.DecodeOptions); err != nil {
		msg := "invocation body is not a host invocation: " + shortErr(err)
		b.problem("%s", msg)
		d.letter(b, whole, msg, body)
		return b
	}
	if len(inv.Metadata.PartitionContext) > 0 {
		if err := unmarshalMaybeString(inv.Metadata.PartitionContext, &b.Partition); err != nil {
			b.problem("Metadata.PartitionContext: %s", shortErr(err))
		}
	}
	whole.Partition = b.Partition.PartitionID
	b.Retry = inv.Metadata.RetryContext

	binding := d.Binding
	if binding == "" {
		binding = "events"
	}
	data, ok := inv.Data[binding]
	if !ok && len(inv.Data) == 1 {
		for _, v := range inv.Data {
			data, ok = v, true
		}
	}
	if !ok || len(data) == 0 || data.Kind() == 'n' {
		msg := fmt.Sprintf("invocation has no Data.%s", binding)
		b.problem("%s", msg)
		d.letter(b, whole, msg, body)
		return b
	}

	var seqs []jsontext.Value
	var enq []string
	if len(inv.Metadata.SequenceNumberArray) > 0 {
		if err := unmarshalMaybeString(inv.Metadata.SequenceNumberArray, &seqs); err != nil {
			b.problem("Metadata.SequenceNumberArray: %s", shortErr(err))
		}
	}
	if len(inv.Metadata.EnqueuedTimeUtcArray) > 0 {
		if err := unmarshalMaybeString(inv.Metadata.EnqueuedTimeUtcArray, &enq); err != nil {
			b.problem("Metadata.EnqueuedTimeUtcArray: %s", shortErr(err))
		}
	}

	// Data.events: a string holding JSON (decode twice), or JSON itself.
	events := []byte(data)
	if data.Kind() == '"' {
		var err error
		events, err = jsontext.AppendUnquote(nil, data)
		if err != nil && len(events) == 0 {
			msg := "Data." + binding + ": " + shortErr(err)
			b.problem("%s", msg)
			d.letter(b, whole, msg, data)
			return b
		}
	}
	events = bytes.TrimSpace(events)
	src := func(i int) audit.Source {
		s := audit.Source{Partition: b.Partition.PartitionID, Event: i, Record: -1}
		if i < len(seqs) {
			s.Sequence, s.HasSequence = parseInt(seqs[i])
		}
		if i < len(enq) {
			if t, err := audit.ParseTime(enq[i]); err == nil {
				s.Enqueued = t
			}
		}
		return s
	}
	switch {
	case len(events) > 0 && events[0] == '{': // cardinality one, or a single body
		d.Body(b, events, src(0))
	case len(events) > 0 && events[0] == '[':
		if err := d.eventArray(b, events, src); err != nil {
			msg := "Data." + binding + ": " + err.Error()
			b.problem("%s", msg)
			d.letter(b, whole, msg, events)
		}
	default:
		msg := "Data." + binding + " is neither an array nor an object"
		b.problem("%s", msg)
		d.letter(b, whole, msg, events)
	}
	if len(seqs) > 0 && len(seqs) != b.Stats.Events {
		b.problem("Metadata.SequenceNumberArray has %d entries for %d events", len(seqs), b.Stats.Events)
	} else if len(seqs) == 0 && b.Stats.Events > 0 {
		b.problem("Metadata.SequenceNumberArray is missing: events have no sequence numbers")
	}
	return b
}

// eventArray reads an array whose elements are event objects, strings
// holding raw bodies, or base64 strings. A syntax error in the array itself
// is returned after the elements before it were read.
func (d *Decoder) eventArray(b *Batch, events []byte, src func(int) audit.Source) error {
	dec := jsontext.NewDecoder(bytes.NewBuffer(events), audit.DecodeOptions)
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	var scratch []byte
	for i := 0; dec.PeekKind() != ']'; i++ {
		s := src(i)
		switch dec.PeekKind() {
		case '{':
			b.Stats.Events++
			v, err := dec.ReadValue()
			if err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			if err := d.envelope(b, jsontext.NewDecoder(bytes.NewBuffer(v), audit.DecodeOptions), v, s); err != nil {
				b.problem("%s: %v", where(s), err)
				d.letter(b, s, err.Error(), v)
			}
		case '"':
			v, err := dec.ReadValue()
			if err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			scratch, err = jsontext.AppendUnquote(scratch[:0], v)
			if err != nil && len(scratch) == 0 {
				b.Stats.Events++
				b.problem("%s: %v", where(s), err)
				d.letter(b, s, err.Error(), v)
				continue
			}
			body := bytes.TrimSpace(scratch)
			if len(body) > 0 && body[0] != '{' && body[0] != '[' {
				// dataType binary: base64 of the body.
				raw, err := base64.StdEncoding.AppendDecode(nil, body)
				if err != nil {
					b.Stats.Events++
					s.Record = -1
					msg := "event body is neither JSON nor base64"
					b.problem("%s: %s", where(s), msg)
					d.letter(b, s, msg, body)
					continue
				}
				body = raw
			}
			d.Body(b, body, s)
		default:
			b.Stats.Events++
			v, err := dec.ReadValue()
			if err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			s.Record = -1
			msg := "event is not an object or a string"
			b.problem("%s: %s", where(s), msg)
			d.letter(b, s, msg, v)
		}
	}
	_, err := dec.ReadToken()
	return err
}

// unmarshalMaybeString decodes v into out, first unquoting it when the
// host sent the value as a JSON-encoded string.
func unmarshalMaybeString(v jsontext.Value, out any) error {
	if v.Kind() == '"' {
		raw, err := jsontext.AppendUnquote(nil, v)
		if err != nil {
			return err
		}
		v = raw
	}
	return json.Unmarshal(v, out, audit.DecodeOptions)
}

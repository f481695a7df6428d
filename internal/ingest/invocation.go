package ingest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/kvwatch/kvwatch/internal/audit"
)

// metadata is the part of an invocation's Metadata kvwatch reads.
type metadata struct {
	PartitionContext     jsontext.Value `json:"PartitionContext"`
	SequenceNumberArray  jsontext.Value `json:"SequenceNumberArray"`
	EnqueuedTimeUtcArray jsontext.Value `json:"EnqueuedTimeUtcArray"`
	RetryContext         jsontext.Value `json:"RetryContext"`
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
	binding := d.Binding
	if binding == "" {
		binding = "events"
	}
	events, found, meta, err := d.readInvocation(body, binding)
	if err != nil {
		msg := "invocation body is not a host invocation: " + shortErr(err)
		b.problem("%s", msg)
		d.letter(b, whole, msg, body)
		return b
	}
	if len(meta.PartitionContext) > 0 {
		if err := unmarshalMaybeString(meta.PartitionContext, &b.Partition); err != nil {
			b.problem("Metadata.PartitionContext: %s", shortErr(err))
		}
	}
	whole.Partition = b.Partition.PartitionID
	if len(meta.RetryContext) > 0 && meta.RetryContext.Kind() != 'n' {
		var rc RetryContext
		if err := unmarshalMaybeString(meta.RetryContext, &rc); err != nil {
			b.problem("Metadata.RetryContext: %s", shortErr(err))
		} else {
			b.Retry = &rc
		}
	}

	if !found {
		msg := fmt.Sprintf("invocation has no Data.%s", binding)
		b.problem("%s", msg)
		d.letter(b, whole, msg, body)
		return b
	}

	var seqs []jsontext.Value
	var enq []string
	if len(meta.SequenceNumberArray) > 0 {
		if err := unmarshalMaybeString(meta.SequenceNumberArray, &seqs); err != nil {
			b.problem("Metadata.SequenceNumberArray: %s", shortErr(err))
		}
	}
	if len(meta.EnqueuedTimeUtcArray) > 0 {
		if err := unmarshalMaybeString(meta.EnqueuedTimeUtcArray, &enq); err != nil {
			b.problem("Metadata.EnqueuedTimeUtcArray: %s", shortErr(err))
		}
	}

	events = bytes.TrimSpace(events)
	// Real records run about 1 KiB each: size the event slice once.
	b.Events = make([]audit.Event, 0, len(events)/1024+1)
	src := func(i int) audit.Source {
		s := audit.Source{Namespace: b.Partition.FullyQualifiedNamespace, Hub: b.Partition.EventHubName,
			Partition: b.Partition.PartitionID, Event: i, Record: -1}
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

// readInvocation streams through {"Data": {...}, "Metadata": {...}}. It
// returns the binding's value — unquoted when the host sent it as a JSON
// string — in a buffer the decoder reuses, without copying the rest of the
// body. When Data lacks the binding but has exactly one member, that one is
// taken.
func (d *Decoder) readInvocation(body []byte, binding string) (events []byte, found bool, meta metadata, err error) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(body), audit.DecodeOptions)
	if k := dec.PeekKind(); k != '{' {
		if k == 0 {
			_, err = dec.ReadToken()
			if err == io.EOF {
				err = errors.New("empty body")
			}
			return nil, false, meta, err
		}
		return nil, false, meta, errors.New("not a JSON object")
	}
	if _, err = dec.ReadToken(); err != nil {
		return nil, false, meta, err
	}
	var other []byte // the only member of Data, if it is not the binding
	otherCount := 0
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, false, meta, err
		}
		name := tok.String()
		switch {
		case name == "Data" && dec.PeekKind() == '{':
			dec.ReadToken()
			for dec.PeekKind() != '}' {
				mtok, err := dec.ReadToken()
				if err != nil {
					return nil, false, meta, err
				}
				member := mtok.String()
				v, err := dec.ReadValue()
				if err != nil {
					return nil, false, meta, err
				}
				isBinding := member == binding
				if !isBinding {
					otherCount++
					if otherCount > 1 || found {
						continue
					}
				}
				if v.Kind() == 'n' {
					continue
				}
				var out []byte
				if v.Kind() == '"' {
					var uerr error
					out, uerr = jsontext.AppendUnquote(d.buf[:0], v)
					if uerr != nil && len(out) == 0 {
						return nil, false, meta, fmt.Errorf("Data.%s: %w", member, uerr)
					}
				} else {
					out = append(d.buf[:0], v...)
				}
				d.buf = out
				if isBinding {
					events, found = out, true
				} else {
					other = out
				}
			}
			if _, err := dec.ReadToken(); err != nil {
				return nil, false, meta, err
			}
		case name == "Metadata" && dec.PeekKind() == '{':
			// Every member is kept raw (jsontext.Value) and read by the
			// caller, so one odd member costs that member only; an error
			// here is a syntax error, which the body cannot survive.
			if err := json.UnmarshalDecode(dec, &meta, audit.DecodeOptions); err != nil {
				return nil, false, meta, err
			}
		default:
			if err := dec.SkipValue(); err != nil {
				return nil, false, meta, err
			}
		}
	}
	if !found && otherCount == 1 && other != nil {
		events, found = other, true
	}
	return events, found, meta, nil
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
			d.guarded(b, jsontext.NewDecoder(bytes.NewBuffer(v), audit.DecodeOptions), v, s)
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
				d.quotedForm = rawQuotedBase64
			} else {
				d.quotedForm = rawQuoted
			}
			d.quoted = v // scratch is reused: the batch keeps the string
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

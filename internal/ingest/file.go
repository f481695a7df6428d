package ingest

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/kvwatch/kvwatch/internal/audit"
)

// File reads a file of archived or saved input, detected by content:
//   - a PT1H.json blob: JSON Lines, one record per line (or one
//     {"records":[...]} envelope per line);
//   - a {"records":[...]} document;
//   - a saved host invocation body {"Data":..., "Metadata":...};
//   - a JSON array of envelopes or records.
//
// Positions are the file name and line, so replaying the same file gives
// the same positions.
func (d *Decoder) File(name string, data []byte) *Batch {
	b := &Batch{}
	d.AppendFile(b, name, data)
	return b
}

// AppendFile is File appending to an existing batch.
func (d *Decoder) AppendFile(b *Batch, name string, data []byte) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return
	}
	// A document spread over lines (pretty-printed) is read whole; anything
	// on one line is JSON Lines, so a PT1H.json blob holding one record
	// gives it the same position (line 1) as when the blob has grown.
	if single, ok := singleValue(trimmed); ok && bytes.IndexByte(trimmed, '\n') >= 0 {
		d.document(b, name, single, 0)
		return
	}
	// JSON Lines: each line on its own, so one bad line costs one line.
	line := 0
	for len(data) > 0 {
		line++
		i := bytes.IndexByte(data, '\n')
		var l []byte
		if i < 0 {
			l, data = data, nil
		} else {
			l, data = data[:i], data[i+1:]
		}
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		d.document(b, name, l, line)
	}
}

// singleValue reports whether data is exactly one JSON value.
func singleValue(data []byte) ([]byte, bool) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(data), audit.DecodeOptions)
	v, err := dec.ReadValue()
	if err != nil {
		return nil, false
	}
	if len(bytes.TrimSpace(dec.UnreadBuffer())) != 0 || dec.InputOffset() != int64(len(data)) {
		return nil, false
	}
	return v, true
}

// document reads one JSON value from a file (the whole file when line is 0).
func (d *Decoder) document(b *Batch, name string, doc []byte, line int) {
	src := audit.Source{File: name, Line: line, Event: line, Record: -1}
	switch {
	case len(doc) > 0 && doc[0] == '[':
		sub := &Batch{}
		err := d.eventArray(sub, doc, func(i int) audit.Source {
			s := src
			s.Event = i
			return s
		})
		merge(b, sub)
		if err != nil {
			b.problem("%s: %v", where(src), err)
			d.letter(b, src, err.Error(), doc)
		}
	case len(doc) > 0 && doc[0] == '{' && hasMember(doc, "Data"):
		sub := d.Invocation(doc)
		for i := range sub.Events {
			sub.Events[i].Source.File, sub.Events[i].Source.Line = name, line
		}
		for i := range sub.Letters {
			sub.Letters[i].File, sub.Letters[i].Line = name, line
		}
		// The next invocation in the file reuses the decoder's buffer the
		// bodies point into: keep copies (replay only).
		for i := range sub.raws {
			r := &sub.raws[i]
			r.file, r.line, r.data = name, line, bytes.Clone(r.data)
		}
		merge(b, sub)
	default:
		d.Body(b, doc, src)
	}
}

func merge(b, sub *Batch) {
	b.Events = append(b.Events, sub.Events...)
	b.Letters = append(b.Letters, sub.Letters...)
	b.raws = append(b.raws, sub.raws...)
	b.Stats.Add(sub.Stats)
	for _, p := range sub.Problems {
		b.problem("%s", p)
	}
	if sub.Partition.PartitionID != "" {
		b.Partition = sub.Partition
	}
}

// hasMember reports whether the top-level object doc has a member name
// (exactly, as the host writes it).
func hasMember(doc []byte, name string) bool {
	dec := jsontext.NewDecoder(bytes.NewBuffer(doc), audit.DecodeOptions)
	if _, err := dec.ReadToken(); err != nil {
		return false
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return false
		}
		if tok.String() == name {
			return true
		}
		if err := dec.SkipValue(); err != nil {
			return false
		}
	}
	return false
}

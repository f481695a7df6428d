package demo

import (
	"bytes"
	"slices"
)

// Record is one audit record of a demo day as a JSON line, with its time
// as Azure writes it (fixed width: records sort by it as strings).
type Record struct {
	Time []byte
	Line []byte
}

// Stream returns the records of Generate(opts) as the live stream carries
// them: every vault's records in one time order (the archive keeps them
// per vault and hour).
func Stream(opts Options) []Record {
	var recs []Record
	for _, b := range Generate(opts) {
		data := bytes.TrimSpace(b.Data)
		for len(data) > 0 {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			recs = append(recs, Record{Time: recordTime(line), Line: line})
		}
	}
	slices.SortStableFunc(recs, func(a, b Record) int { return bytes.Compare(a.Time, b.Time) })
	return recs
}

// EventBody is the body of an Event Hubs event carrying recs, as Azure
// Monitor writes it: {"records":[...]}.
func EventBody(recs []Record) []byte {
	n := len(`{"records":[]}`)
	for _, r := range recs {
		n += len(r.Line) + 1
	}
	body := make([]byte, 0, n)
	body = append(body, `{"records":[`...)
	for i, r := range recs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r.Line...)
	}
	return append(body, "]}"...)
}

// recordTime returns the "time" value of a record line.
func recordTime(line []byte) []byte {
	i := bytes.Index(line, []byte(`"time"`))
	if i < 0 {
		return nil
	}
	rest := line[i+len(`"time"`):]
	q := bytes.IndexByte(rest, '"')
	if q < 0 {
		return nil
	}
	rest = rest[q+1:]
	e := bytes.IndexByte(rest, '"')
	if e < 0 {
		return nil
	}
	return rest[:e]
}

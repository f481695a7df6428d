// Package demotest turns demo traffic into what the Functions host sends,
// for the benchmarks that run it through ingest, detection or serve.
package demotest

import (
	"bytes"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/host"
)

// Invocations turns days of demo traffic (from 2026-11-01, the archive's
// blobs in order, the mixed-format ones left out) into host invocation
// bodies of partition 0, in the host's default shape: 100 events of 10
// records each. It returns them and the number of records.
func Invocations(tb testing.TB, days int) (bodies [][]byte, records int) {
	tb.Helper()
	var lines [][]byte
	for d := range days {
		for _, blob := range demo.Generate(demo.Options{Day: time.Date(2026, 11, 1+d, 0, 0, 0, 0, time.UTC)}) {
			if bytes.Contains([]byte(blob.Path), []byte("/mixed/")) {
				continue
			}
			lines = append(lines, bytes.Split(bytes.TrimSpace(blob.Data), []byte("\n"))...)
		}
	}
	seq := int64(0)
	for i := 0; i < len(lines); i += 1000 {
		chunk := lines[i:min(i+1000, len(lines))]
		batch := host.Batch{Partition: "0"}
		for j := 0; j < len(chunk); j += 10 {
			body := append([]byte(`{"records":[`), bytes.Join(chunk[j:min(j+10, len(chunk))], []byte(","))...)
			batch.Events = append(batch.Events, host.Event{Body: append(body, "]}"...), Sequence: seq, Enqueued: time.Unix(0, 0)})
			seq++
		}
		b, err := host.Body(batch, host.StringOfObjects)
		if err != nil {
			tb.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	return bodies, len(lines)
}

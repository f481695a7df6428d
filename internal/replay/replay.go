// Package replay feeds archived audit logs (PT1H.json blobs, saved event
// bodies, saved host invocations) through the same pipeline as the custom
// handler, file by file.
package replay

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

// Input is one file's content.
type Input struct {
	Name string
	Data []byte
}

// Processor is what replay feeds: the pipeline.
type Processor interface {
	Process(ctx context.Context, b *ingest.Batch) (pipeline.Summary, error)
}

// Summary totals a replay.
type Summary struct {
	Files      int
	Bytes      int64
	Stats      ingest.Stats
	Duplicates int
	Findings   int
	Elapsed    time.Duration
}

// String is the summary line replay prints on stderr.
func (s Summary) String() string {
	return fmt.Sprintf("replay: %d files, %d events, %d records, %d accepted, %d duplicates, %d skipped, %d dead-lettered, %d findings in %s",
		s.Files, s.Stats.Events, s.Stats.Records, s.Stats.Accepted, s.Duplicates, s.Stats.Skipped,
		s.Stats.DeadLettered, s.Findings, s.Elapsed.Round(time.Millisecond))
}

// Progress is told about each file done; nil for none.
type Progress func(done, total int, bytesDone, bytesTotal int64)

// Files lists the regular files under the given paths (directories walked
// recursively, hidden entries skipped), sorted within each directory.
func Files(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if path != p && len(name) > 0 && name[0] == '.' {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("replay: walk %s: %w", p, err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// hourKey finds the y=/m=/d=/h= part of an archive blob path: blobs of
// the same hour, one per vault, are replayed together.
var hourKey = regexp.MustCompile(`y=\d{4}/m=\d{2}/d=\d{2}/h=\d{2}`)

// groups orders inputs as the live stream would have carried them: archive
// blobs by hour (all vaults of an hour together), anything else on its own
// in the order given.
func groups(names []string) [][]int {
	type g struct {
		key string
		idx []int
	}
	byKey := map[string]*g{}
	var order []*g
	for i, n := range names {
		k := hourKey.FindString(filepath.ToSlash(n))
		if k == "" {
			k = fmt.Sprintf("~%08d", i)
		}
		if byKey[k] == nil {
			byKey[k] = &g{key: k}
			order = append(order, byKey[k])
		}
		byKey[k].idx = append(byKey[k].idx, i)
	}
	sort.SliceStable(order, func(a, b int) bool {
		ka, kb := order[a].key, order[b].key
		if (ka[0] == '~') != (kb[0] == '~') {
			return ka[0] != '~' // archive hours first, in time order
		}
		return ka < kb
	})
	out := make([][]int, len(order))
	for i, g := range order {
		out[i] = g.idx
	}
	return out
}

// Run replays the files at paths.
func Run(ctx context.Context, paths []string, proc Processor, progress Progress) (Summary, error) {
	files, err := Files(paths)
	if err != nil {
		return Summary{}, err
	}
	var total int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			total += st.Size()
		}
	}
	read := func(i int) (Input, error) {
		data, err := os.ReadFile(files[i])
		if err != nil {
			return Input{}, fmt.Errorf("replay: %w", err)
		}
		return Input{Name: files[i], Data: data}, nil
	}
	return run(ctx, files, read, total, proc, progress)
}

// RunInputs replays in-memory inputs (the embedded demo).
func RunInputs(ctx context.Context, inputs []Input, proc Processor, progress Progress) (Summary, error) {
	var total int64
	names := make([]string, len(inputs))
	for i, in := range inputs {
		total += int64(len(in.Data))
		names[i] = in.Name
	}
	return run(ctx, names, func(i int) (Input, error) { return inputs[i], nil }, total, proc, progress)
}

// Slice is how much event time one replayed batch covers.
const Slice = 30 * time.Minute

// run replays group by group: the files of one archive hour are decoded
// into one batch whose events are put in time order, as the Event Hub
// would have delivered them, so that detection sees every vault's traffic
// of the hour together instead of one vault's whole day after another's.
// The hour is then handed on in batches of Slice of event time, as the
// hub delivers a stream: what a caller does later in the hour reaches
// detection in a later batch (an incident that grows is updated, not
// found whole at once).
// Positions stay file and line, so replaying the same files again is a
// no-op for a durable store.
func run(ctx context.Context, names []string, read func(int) (Input, error), total int64, proc Processor, progress Progress) (Summary, error) {
	start := time.Now()
	var sum Summary
	var dec ingest.Decoder
	for _, g := range groups(names) {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		b := &ingest.Batch{}
		var size int64
		for _, i := range g {
			in, err := read(i)
			if err != nil {
				return sum, err
			}
			dec.AppendFile(b, in.Name, in.Data)
			size += int64(len(in.Data))
		}
		sort.SliceStable(b.Events, func(x, y int) bool { return b.Events[x].Time.Before(b.Events[y].Time) })
		for _, sb := range b.Split(func(prev, next *audit.Event) bool {
			return !prev.Time.Truncate(Slice).Equal(next.Time.Truncate(Slice))
		}) {
			res, err := proc.Process(ctx, sb)
			if err != nil {
				return sum, fmt.Errorf("replay %s: %w", names[g[0]], err)
			}
			sum.Stats.Add(sb.Stats)
			sum.Findings += res.Result.Findings
			sum.Duplicates += res.Duplicates
		}
		sum.Files += len(g)
		sum.Bytes += size
		if progress != nil {
			progress(sum.Files, len(names), sum.Bytes, total)
		}
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

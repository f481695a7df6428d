// Package replay feeds archived audit logs (PT1H.json blobs, saved event
// bodies, saved host invocations) through the same pipeline as the custom
// handler, file by file.
package replay

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

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
	i := 0
	next := func() (Input, error) {
		if i >= len(files) {
			return Input{}, io.EOF
		}
		name := files[i]
		i++
		data, err := os.ReadFile(name)
		if err != nil {
			return Input{}, fmt.Errorf("replay: %w", err)
		}
		return Input{Name: name, Data: data}, nil
	}
	return run(ctx, next, len(files), total, proc, progress)
}

// RunInputs replays in-memory inputs (the embedded demo).
func RunInputs(ctx context.Context, inputs []Input, proc Processor, progress Progress) (Summary, error) {
	var total int64
	for _, in := range inputs {
		total += int64(len(in.Data))
	}
	i := 0
	next := func() (Input, error) {
		if i >= len(inputs) {
			return Input{}, io.EOF
		}
		i++
		return inputs[i-1], nil
	}
	return run(ctx, next, len(inputs), total, proc, progress)
}

func run(ctx context.Context, next func() (Input, error), n int, total int64, proc Processor, progress Progress) (Summary, error) {
	start := time.Now()
	var sum Summary
	var dec ingest.Decoder
	for {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		in, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, err
		}
		b := dec.File(in.Name, in.Data)
		res, err := proc.Process(ctx, b)
		if err != nil {
			return sum, fmt.Errorf("replay %s: %w", in.Name, err)
		}
		sum.Files++
		sum.Bytes += int64(len(in.Data))
		sum.Stats.Add(b.Stats)
		sum.Findings += res.Result.Findings
		sum.Duplicates += res.Duplicates
		if progress != nil {
			progress(sum.Files, n, sum.Bytes, total)
		}
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

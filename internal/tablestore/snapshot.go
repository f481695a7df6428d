package tablestore

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/state"
)

// A snapshot is the view of one instance at a cut (for every stream, the
// last log entry folded into it), written as generation gen: its data in
// rows of PartitionKey snap-<gen>-<nonce> (the attempt's own), then the head row (PartitionKey
// "snapshot", RowKey "~head") moved to it with If-Match. The data is the
// deflated JSON of snapshotData, cut into rows of at most 600 KiB.
type snapshotData struct {
	Cut   map[string]int64 `json:"cut"`
	Items []snapshotItem   `json:"items"`
	// Tombs are the view's tombstones (Journal.tombs), by key.
	Tombs []snapshotTomb `json:"tombs,omitempty"`
}

// snapshotTomb is a key pruned, and when (unix seconds).
type snapshotTomb struct {
	K  state.Key `json:"k"`
	At int64     `json:"t"`
}

type snapshotItem struct {
	K state.Key     `json:"k"`
	E *state.Entity `json:"e"`
}

// snapshotHead is the head row's content.
type snapshotHead struct {
	gen  int64
	pk   string // the partition holding the snapshot's rows
	rows int
	at   time.Time        // when the snapshot was written, or a compaction since claimed the next round
	cut  map[string]int64 // the snapshot's cut
	// deleted: log entries up to these were deleted when this snapshot
	// was written (the previous snapshot's cut).
	deleted map[string]int64
	etag    string
}

type headData struct {
	Cut     map[string]int64 `json:"cut"`
	Deleted map[string]int64 `json:"deleted,omitempty"`
}

type restoredView struct {
	view  map[state.Key]*state.Entity
	tombs map[state.Key]int64
	cut   map[string]int64
	gen   int64
	bytes int // stored (deflated) size
}

// claimRound moves the snapshot head's time to now, if its ETag is still
// h's (Merge: nothing else changes, and a restore reading the head's
// snapshot meanwhile is not disturbed). It returns the head's new ETag, or
// ok false when the head changed since h was read.
func (j *Journal) claimRound(ctx context.Context, h *snapshotHead, now time.Time) (string, bool, error) {
	body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: snapshotPK, RowKey: headRK},
		Properties: map[string]any{propTime: aztables.EDMInt64(now.UnixMilli())}})
	if err != nil {
		return "", false, err
	}
	j.s.stats.inserts.Add(1)
	var etag azcore.ETag
	err = j.s.call(ctx, "claim compaction", func(ctx context.Context) error {
		e := azcore.ETag(h.etag)
		resp, err := j.table.UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{IfMatch: &e, UpdateMode: aztables.UpdateModeMerge})
		etag = resp.ETag
		return err
	})
	if st, _, ok := statusOf(err); ok && (st == http.StatusPreconditionFailed || st == http.StatusNotFound || st == http.StatusConflict) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("tablestore: journal: claim compaction: %w", err)
	}
	return string(etag), true, nil
}

// errSnapshotMoved: a newer snapshot replaced the one being read.
var errSnapshotMoved = errors.New("snapshot replaced while it was read")

// readHead returns the snapshot head; gen 0 when there is none.
func (j *Journal) readHead(ctx context.Context) (*snapshotHead, error) {
	resp, found, err := j.s.get(ctx, j.table, "read snapshot head", snapshotPK, headRK)
	if err != nil {
		return nil, fmt.Errorf("tablestore: journal: %w", err)
	}
	if !found {
		return &snapshotHead{cut: map[string]int64{}}, nil
	}
	var ent aztables.EDMEntity
	if err := json.Unmarshal(resp.Value, &ent); err != nil {
		return nil, fmt.Errorf("tablestore: journal: decode snapshot head: %w", err)
	}
	h := &snapshotHead{etag: string(resp.ETag)}
	if g, ok := ent.Properties[propGen].(aztables.EDMInt64); ok {
		h.gen = int64(g)
	}
	h.pk, _ = ent.Properties[propPart].(string)
	if h.pk == "" {
		h.pk = snapPK(h.gen, "")
	}
	if r, ok := ent.Properties[propRows].(int32); ok {
		h.rows = int(r)
	}
	if t, ok := ent.Properties[propTime].(aztables.EDMInt64); ok {
		h.at = time.UnixMilli(int64(t))
	}
	data, err := getChunks(ent.Properties)
	if err != nil {
		return nil, fmt.Errorf("tablestore: journal: snapshot head: %w", err)
	}
	js, err := unpackBytes(data)
	if err != nil {
		return nil, fmt.Errorf("tablestore: journal: snapshot head: %w", err)
	}
	var hd headData
	if err := json.Unmarshal(js, &hd); err != nil {
		return nil, fmt.Errorf("tablestore: journal: snapshot head: %w", err)
	}
	h.cut, h.deleted = hd.Cut, hd.Deleted
	if h.cut == nil {
		h.cut = map[string]int64{}
	}
	return h, nil
}

// readSnapshot reads the latest snapshot (an empty view when there is none).
func (j *Journal) readSnapshot(ctx context.Context) (*restoredView, error) {
	h, err := j.readHead(ctx)
	if err != nil {
		return nil, err
	}
	return j.readSnapshotBody(ctx, h)
}

// snapshotReadAhead is how many of a snapshot's rows are read ahead of
// the one being decoded.
const snapshotReadAhead = 3

// readSnapshotBody reads the snapshot h heads: its rows, inflated and
// decoded (an empty view when there is none); errSnapshotMoved when its
// rows went meanwhile (a newer snapshot replaced it).
//
// The rows are read by key (the head says how many there are), a few
// ahead of the one being inflated and decoded, so that reading and
// decoding overlap: with one query for them all, decoding began only
// once every row was in, and each took about as long as the other (2.1
// MB of snapshot: 130-240 ms to read, 160-330 to decode).
func (j *Journal) readSnapshotBody(ctx context.Context, h *snapshotHead) (*restoredView, error) {
	out := &restoredView{view: map[state.Key]*state.Entity{}, cut: map[string]int64{}, gen: h.gen}
	if h.gen == 0 {
		return out, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type row struct {
		data []byte
		err  error
	}
	rows := make([]chan row, h.rows)
	read := func(i int) {
		rows[i] = make(chan row, 1)
		go func() {
			data, err := j.readSnapshotRow(ctx, h.pk, i)
			rows[i] <- row{data, err}
		}()
	}
	ahead := min(h.rows, snapshotReadAhead)
	for i := range ahead {
		read(i)
	}
	// The feeder hands the rows on in order and starts the next reads as
	// it goes. It ends with the first row that could not be read, said on
	// fed before the pipe is closed with it (nil once every row went in,
	// or when the decoder stopped reading).
	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() {
		for i := range h.rows {
			r := <-rows[i]
			if r.err != nil {
				fed <- r.err
				pw.CloseWithError(r.err)
				return
			}
			if i+ahead < h.rows {
				read(i + ahead)
			}
			out.bytes += len(r.data)
			if _, err := pw.Write(r.data); err != nil {
				fed <- nil // the decoder stopped: its error says why
				return
			}
		}
		pw.Close()
		fed <- nil
	}()
	var rd reader
	sd, err := rd.snapshot(flate.NewReader(pr))
	if err == nil {
		// Whatever follows the deflated stream is read (none is written).
		_, err = io.Copy(io.Discard, pr)
	}
	if err == nil {
		<-fed
	} else {
		select {
		case ferr := <-fed:
			// The feeder ended first: a row it could not read is why.
			if ferr != nil {
				err = ferr
			}
		default:
			// The decoder ended first (the data is not a snapshot): the
			// rows still being read are not needed.
			cancel()
			pr.CloseWithError(err)
			<-fed
		}
	}
	if errors.Is(err, errSnapshotMoved) {
		return nil, errSnapshotMoved
	}
	if err != nil {
		return nil, fmt.Errorf("tablestore: journal: read snapshot %d: %w", h.gen, err)
	}
	for _, it := range sd.Items {
		if it.E != nil {
			out.view[it.K] = it.E
		}
	}
	if len(sd.Tombs) > 0 {
		out.tombs = make(map[state.Key]int64, len(sd.Tombs))
		for _, t := range sd.Tombs {
			out.tombs[t.K] = t.At
		}
	}
	if sd.Cut != nil {
		out.cut = sd.Cut
	}
	return out, nil
}

// readSnapshotRow reads row i of a snapshot's rows in partition pk: its
// chunks' bytes; errSnapshotMoved when it is gone (a newer snapshot
// replaced this one and its rows were deleted).
func (j *Journal) readSnapshotRow(ctx context.Context, pk string, i int) ([]byte, error) {
	if j.testSnapshotRow != nil {
		j.testSnapshotRow(ctx, i)
	}
	resp, found, err := j.s.get(ctx, j.table, "read snapshot row", pk, snapshotRK(i))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errSnapshotMoved
	}
	ent, err := decodeChunkedRow(resp.Value)
	if err != nil {
		return nil, fmt.Errorf("decode snapshot row %d: %w", i, err)
	}
	data, err := ent.chunks()
	if err != nil {
		return nil, fmt.Errorf("snapshot row %d: %w", i, err)
	}
	return data, nil
}

// snapshotRK is the row key of a snapshot's row i.
func snapshotRK(i int) string { return fmt.Sprintf("%06d", i) }

// maybeCompact starts a compaction in the background when the logs have
// grown past the thresholds since the last snapshot this instance knows.
func (j *Journal) maybeCompact() {
	j.mu.Lock()
	due := j.tail.entries >= j.opts.CompactEntries || j.tail.bytes >= j.opts.CompactBytes
	due = due && !j.opts.Now().Before(j.compactAfter)
	j.mu.Unlock()
	if !due || !j.compacting.CompareAndSwap(false, true) {
		return
	}
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer j.compacting.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := j.Compact(ctx); err != nil {
			j.log.Warn().Err(err).Msg("state journal: compaction failed; the next batch tries again")
		}
	}()
}

// Wait waits for a background compaction to end.
func (j *Journal) Wait() { j.wg.Wait() }

// Compact writes the view as a new snapshot, unless another instance did
// within CompactEvery, and deletes the log entries the previous snapshot
// covers (every reader had at least CompactEvery to fold them; one that
// did not sees the gap and restores). It reports whether it wrote one.
func (j *Journal) Compact(ctx context.Context) (bool, error) {
	if err := j.ready(ctx); err != nil {
		return false, err
	}
	h, err := j.readHead(ctx)
	if err != nil {
		return false, err
	}
	now := j.opts.Now()
	if h.gen > 0 && now.Sub(h.at) < j.opts.CompactEvery {
		j.mu.Lock()
		j.tail = j.tailSince(h.cut)
		// Written or claimed within CompactEvery: the next round is not
		// due before CompactEvery after that.
		j.compactAfter = h.at.Add(j.opts.CompactEvery)
		j.mu.Unlock()
		return false, nil
	}
	if h.gen > 0 {
		// Claim the round: the head's time moves to now, under its ETag,
		// so that another instance due at the same time finds it taken
		// (above) instead of encoding the whole view as well, only to
		// lose the head to this one (instances come due together: in a
		// sweep's history two did in 8 of 11 rounds). A claim that fails
		// met another's claim or snapshot. An instance that claims and
		// stops holds the next round back CompactEvery, no longer.
		if j.testCompact != nil {
			j.testCompact("claim")
		}
		etag, ok, err := j.claimRound(ctx, h, now)
		if err != nil {
			return false, err
		}
		if !ok {
			// The head changed since it was read: another instance claimed
			// this round or wrote its snapshot, just now. Its round runs
			// CompactEvery from about now; reading the head again before
			// then would only find it taken.
			j.mu.Lock()
			j.compactAfter = now.Add(j.opts.CompactEvery)
			j.mu.Unlock()
			return false, nil
		}
		h.etag = etag
	}
	if j.testCompact != nil {
		j.testCompact("encode")
	}
	// The view and its cut, copied under the lock: entities are never
	// changed in place, so the pointers are a consistent copy.
	j.mu.Lock()
	sd := snapshotData{Cut: map[string]int64{}}
	for n, c := range j.streams {
		if c.index > 0 {
			sd.Cut[n] = c.index
		}
	}
	for _, k := range sortedKeys(j.view) {
		sd.Items = append(sd.Items, snapshotItem{K: k, E: j.view[k]})
	}
	j.forgetTombsLocked(now.Unix(), false)
	for k, at := range j.tombs {
		sd.Tombs = append(sd.Tombs, snapshotTomb{K: k, At: at})
	}
	j.mu.Unlock()
	slices.SortFunc(sd.Tombs, func(a, b snapshotTomb) int { return compareByGroup(a.K, b.K) })
	for n, idx := range h.cut {
		if sd.Cut[n] < idx {
			// This view is behind the last snapshot for a stream (it never
			// read that stream's entries): it must not replace it.
			return false, nil
		}
	}
	var buf bytes.Buffer
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&buf)
	if err := encodeSnapshot(w, &sd); err != nil {
		return false, fmt.Errorf("tablestore: journal: encode snapshot: %w", err)
	}
	w.Close()
	deflaters.Put(w)
	data := buf.Bytes()
	gen := h.gen + 1
	// Rows under a partition of this attempt's own: two instances compacting
	// at once write apart, and the one that loses the head deletes only its
	// rows, never the winner's.
	pk := snapPK(gen, newNonce())
	var rows [][]byte
	for len(data) > 0 {
		n := min(len(data), maxEntryRaw)
		rows = append(rows, data[:n])
		data = data[n:]
	}
	// Rows in transactions of at most three (2.7 MB), replacing what a
	// failed attempt at the same generation left.
	for i := 0; i < len(rows); i += 3 {
		var actions []aztables.TransactionAction
		for r := i; r < min(i+3, len(rows)); r++ {
			props := map[string]any{}
			if err := putChunks(props, rows[r]); err != nil {
				return false, err
			}
			body, err := marshalEDM(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: snapshotRK(r)}, Properties: props})
			if err != nil {
				return false, err
			}
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeInsertReplace, Entity: body})
		}
		j.s.stats.transactions.Add(1)
		j.s.stats.writes.Add(int64(len(actions)))
		if _, err := j.s.transact(ctx, j.table, actions); err != nil {
			return false, fmt.Errorf("tablestore: journal: write snapshot %d: %w", gen, err)
		}
	}
	hd, err := json.Marshal(headData{Cut: sd.Cut, Deleted: h.cut})
	if err != nil {
		return false, err
	}
	props := map[string]any{propGen: aztables.EDMInt64(gen), propPart: pk, propRows: int32(len(rows)), propTime: aztables.EDMInt64(now.UnixMilli())}
	if err := putChunks(props, packBytes(hd, true)); err != nil {
		return false, err
	}
	body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: snapshotPK, RowKey: headRK}, Properties: props})
	if err != nil {
		return false, err
	}
	j.s.stats.inserts.Add(1)
	err = j.s.call(ctx, "move snapshot head", func(ctx context.Context) error {
		if h.etag == "" {
			_, err := j.table.AddEntity(ctx, body, nil)
			return err
		}
		e := azcore.ETag(h.etag)
		_, err := j.table.UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{IfMatch: &e, UpdateMode: aztables.UpdateModeReplace})
		return err
	})
	if st, _, ok := statusOf(err); ok && (st == http.StatusConflict || st == http.StatusPreconditionFailed) {
		// Another instance compacted first: ours is not the head.
		j.deletePartition(ctx, pk, "")
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tablestore: journal: move snapshot head: %w", err)
	}
	j.mu.Lock()
	j.tail = j.tailSince(sd.Cut)
	j.mu.Unlock()
	// What the previous snapshot covered is no longer needed by anyone
	// restoring from this one; older generations' rows neither.
	var errs []error
	if h.gen > 0 {
		errs = append(errs, j.deletePartition(ctx, h.pk, ""))
	}
	for n, idx := range h.cut {
		errs = append(errs, j.deletePartition(ctx, streamPK(n), entryRK(idx)))
		if strings.HasPrefix(n, "f:") && sd.Cut[n] == idx {
			// A replayed file with nothing new over a whole snapshot
			// interval: the others stop reading its log (its head stays;
			// replaying it again registers it again).
			errs = append(errs, j.retire(ctx, n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return true, fmt.Errorf("tablestore: journal: snapshot %d written; deleting what it replaced: %w", gen, err)
	}
	return true, nil
}

// deletePartition deletes a partition's rows, or with upTo, its entry rows
// up to that row key (the head row is kept).
func (j *Journal) deletePartition(ctx context.Context, pk, upTo string) error {
	filter := "PartitionKey eq " + odataQuote(pk)
	if upTo != "" {
		filter += " and RowKey le " + odataQuote(upTo)
	}
	sel := "PartitionKey,RowKey"
	var rks []string
	err := j.s.query(ctx, j.table, filter, &sel, func(raw []byte) error {
		var ent aztables.EDMEntity
		if err := json.Unmarshal(raw, &ent); err != nil {
			return err
		}
		if ent.RowKey != headRK {
			rks = append(rks, ent.RowKey)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for len(rks) > 0 {
		n := min(len(rks), maxTxOps)
		actions := make([]aztables.TransactionAction, n)
		for i, rk := range rks[:n] {
			body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: rk}})
			if err != nil {
				return err
			}
			any := azcore.ETagAny
			actions[i] = aztables.TransactionAction{ActionType: aztables.TransactionTypeDelete, Entity: body, IfMatch: &any}
		}
		j.s.stats.transactions.Add(1)
		j.s.stats.deletes.Add(int64(n))
		if _, err := j.s.transact(ctx, j.table, actions); err != nil {
			var f *txFailure
			if !errors.As(err, &f) || f.status != http.StatusNotFound {
				return err
			}
			// One went meanwhile (another compaction): the next one
			// deletes the rest.
		}
		rks = rks[n:]
	}
	return nil
}

// retire removes a stream from the registry.
func (j *Journal) retire(ctx context.Context, stream string) error {
	j.s.stats.inserts.Add(1)
	err := j.s.call(ctx, "retire stream", func(ctx context.Context) error {
		_, err := j.table.DeleteEntity(ctx, registryPK, streamPK(stream), nil)
		return err
	})
	if st, _, ok := statusOf(err); ok && st == http.StatusNotFound {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("retire %s: %w", stream, err)
	}
	j.mu.Lock()
	delete(j.regd, stream)
	j.mu.Unlock()
	return nil
}

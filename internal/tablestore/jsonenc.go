package tablestore

import (
	"bytes"
	"compress/flate"
	"io"
	"strconv"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/state"
)

// Log entries and snapshots are written by hand (state.JSONEncoder), byte
// for byte what encoding/json.Marshal writes (TestJournalEncoders), at a
// fraction of its cost: the journal encodes every change it logs and its
// whole view at every compaction (BenchmarkSnapshotEncode,
// BenchmarkJournalRound).

// jsonBuf is an encoder, its output buffer and a deflater, reused.
type jsonBuf struct {
	x  state.JSONEncoder
	b  []byte
	fw *flate.Writer
}

// buffers keeps a few log-entry encoders (buffer and deflater) and
// inflaters for a journal whatever the garbage collections: a sync.Pool is
// emptied by every one, several a second under load, and a deflater is
// 1.2 MB to make. Writers and readers of more streams at once than it
// holds make their own.
type buffers struct {
	encoders  chan *jsonBuf
	inflaters chan *inflater
}

func newBuffers() buffers {
	return buffers{encoders: make(chan *jsonBuf, 4), inflaters: make(chan *inflater, 8)}
}

func (bs buffers) getEncoder() *jsonBuf {
	select {
	case jb := <-bs.encoders:
		return jb
	default:
		return &jsonBuf{}
	}
}

func (bs buffers) putEncoder(jb *jsonBuf) {
	if cap(jb.b) > 4<<20 {
		jb.b = nil
	}
	select {
	case bs.encoders <- jb:
	default:
	}
}

// entryLevel is the deflate level of log entries. On a tenant's traffic
// (300 callers, 1,000-record batches, changes listed by group) an entry of
// 677 KB of JSON deflates to 73 KB at level 1 in 2.1 ms, 64 KB at level 3
// in 2.6 ms, 54 KB at level 6 in 6.4 ms; BenchmarkJournalRound's batch
// costs 25% more at level 3. Reading costs what the JSON costs, whatever
// the level: the fastest stays.
const entryLevel = flate.BestSpeed

// pack is packBytes(data, true) with jb's deflater, at entryLevel.
func (jb *jsonBuf) pack(data []byte) []byte {
	if len(data) <= compressAbove {
		return packBytes(data, true)
	}
	var buf bytes.Buffer
	buf.Grow(len(data)/3 + 16)
	buf.WriteByte(formatDeflated)
	if jb.fw == nil {
		jb.fw, _ = flate.NewWriter(&buf, entryLevel)
	} else {
		jb.fw.Reset(&buf)
	}
	jb.fw.Write(data)
	jb.fw.Close()
	return buf.Bytes()
}

// inflater unpacks stored data (unpackBytes) into a buffer it reuses.
type inflater struct {
	src bytes.Reader
	r   io.ReadCloser
	out bytes.Buffer
}

func (bs buffers) getInflater() *inflater {
	select {
	case f := <-bs.inflaters:
		return f
	default:
		return &inflater{}
	}
}

// unpack returns what unpackBytes would, valid until release.
func (f *inflater) unpack(b []byte) ([]byte, error) {
	if len(b) == 0 || b[0] != formatDeflated {
		return unpackBytes(b)
	}
	f.src.Reset(b[1:])
	if f.r == nil {
		f.r = flate.NewReader(&f.src)
	} else if err := f.r.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil, err
	}
	f.out.Reset()
	_, err := f.out.ReadFrom(f.r)
	return f.out.Bytes(), err
}

// putInflater keeps f for another unless its buffer grew very large.
func (bs buffers) putInflater(f *inflater) {
	if f.out.Cap() > 4<<20 {
		return
	}
	select {
	case bs.inflaters <- f:
	default:
	}
}

var jsonBufs = sync.Pool{New: func() any { return &jsonBuf{b: make([]byte, 0, 16<<10)} }}

// putJSONBuf returns a buffer to the pool unless it grew very large.
func putJSONBuf(jb *jsonBuf) {
	if cap(jb.b) > 4<<20 {
		return
	}
	jb.b = jb.b[:0]
	jsonBufs.Put(jb)
}

// appendJournalItems appends items as encoding/json writes []journalItem.
func appendJournalItems(x *state.JSONEncoder, b []byte, items []journalItem) []byte {
	if items == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJournalItem(x, b, &items[i])
	}
	return append(b, ']')
}

func appendJournalItem(x *state.JSONEncoder, b []byte, it *journalItem) []byte {
	b = append(b, `{"k":`...)
	b = x.AppendKey(b, it.K)
	if it.D != nil {
		b = append(b, `,"d":`...)
		b = x.AppendDelta(b, it.D)
	}
	if it.Drop {
		b = append(b, `,"x":true`...)
	}
	return append(b, '}')
}

// appendSnapshotItem appends one item of a snapshot's list.
func appendSnapshotItem(x *state.JSONEncoder, b []byte, it *snapshotItem) []byte {
	b = append(b, `{"k":`...)
	b = x.AppendKey(b, it.K)
	b = append(b, `,"e":`...)
	b = x.AppendEntity(b, it.E)
	return append(b, '}')
}

// encodeSnapshot writes sd as encoding/json writes snapshotData, to w in
// pieces of about 64 KiB (the whole JSON is several times the deflated
// snapshot: it is never held at once).
func encodeSnapshot(w interface{ Write([]byte) (int, error) }, sd *snapshotData) error {
	jb := jsonBufs.Get().(*jsonBuf)
	defer putJSONBuf(jb)
	b := append(jb.b[:0], `{"cut":`...)
	b = jb.x.AppendStringInts(b, sd.Cut)
	b = append(b, `,"items":`...)
	if sd.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range sd.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendSnapshotItem(&jb.x, b, &sd.Items[i])
			if len(b) >= 64<<10 {
				if _, err := w.Write(b); err != nil {
					jb.b = b
					return err
				}
				b = b[:0]
			}
		}
		b = append(b, ']')
	}
	if len(sd.Tombs) > 0 {
		b = append(b, `,"tombs":[`...)
		for i, t := range sd.Tombs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"k":`...)
			b = jb.x.AppendKey(b, t.K)
			b = append(b, `,"t":`...)
			b = strconv.AppendInt(b, t.At, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	_, err := w.Write(b)
	jb.b = b
	return err
}

// marshalEDM is json.Marshal(e), the same bytes, without encoding/json's
// second pass over what e.MarshalJSON returned (it validates and compacts
// a marshaler's output): for a row of binary chunks, the scan of up to
// 800 KiB of base64 again.
func marshalEDM(e aztables.EDMEntity) ([]byte, error) { return e.MarshalJSON() }

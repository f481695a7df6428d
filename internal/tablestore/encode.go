package tablestore

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/kvwatch/kvwatch/internal/state"
)

// Table Storage limits (learn.microsoft.com, "Scalability and performance
// targets for Table storage" and "Understanding the Table service data
// model"): a property holds at most 64 KiB, an entity at most 1 MiB and
// 255 properties, an entity group transaction at most 100 entities and
// 4 MiB, all of one PartitionKey.
const (
	chunkSize      = 60 << 10  // bytes of data per binary property, under the 64 KiB cap
	maxChunks      = 15        // 900 KiB of data, well under the 1 MiB entity cap
	maxTxOps       = 100       // entities per transaction
	maxTxBytes     = 3_500_000 // request bytes per transaction, under 4 MiB with headroom for MIME framing
	compressAbove  = 4 << 10   // state JSON longer than this is deflated
	opOverhead     = 1024      // per-operation MIME and HTTP framing in a transaction body
	formatJSON     = 'J'
	formatDeflated = 'Z'
)

// Property names.
const (
	propRule   = "Rule"
	propGroup  = "Group"
	propBlock  = "Block"
	propChunks = "N"
	propNonce  = "Nonce"
)

func chunkProp(i int) string { return "D" + strconv.Itoa(i) }

// partitionKey spreads groups over partitions while keeping one group's
// blocks (all its entities of one rule) in one partition, so a batch
// writes each group in one entity-group transaction.
func partitionKey(rule, group string) string {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(group))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:8])
}

// rowKey encodes a signed block so that row keys sort as blocks do: the
// block offset by 2^63, as 20 zero-padded decimal digits (BlockRule -2 and
// BlockMeta -1 sort before every time block).
func rowKey(block int64) string {
	return fmt.Sprintf("%020d", uint64(block)^(1<<63))
}

func parseRowKey(rk string) (int64, error) {
	if len(rk) != 20 {
		return 0, fmt.Errorf("row key %q is not a block", rk)
	}
	u, err := strconv.ParseUint(rk, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("row key %q is not a block", rk)
	}
	return int64(u ^ (1 << 63)), nil
}

// entityRef locates a key's entity.
type entityRef struct {
	pk, rk string
}

func refOf(k state.Key) entityRef {
	return entityRef{partitionKey(k.Rule, k.Group), rowKey(k.Block)}
}

var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// packBytes returns data in its stored form: a format byte, then the data,
// deflated when long.
func packBytes(data []byte, compress bool) []byte {
	if !compress || len(data) <= compressAbove {
		out := make([]byte, 0, len(data)+1)
		return append(append(out, formatJSON), data...)
	}
	var buf bytes.Buffer
	buf.Grow(len(data)/3 + 16)
	buf.WriteByte(formatDeflated)
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&buf)
	w.Write(data)
	w.Close()
	deflaters.Put(w)
	return buf.Bytes()
}

// inflate returns the inflated b. Its buffer starts at a few times b's
// size and doubles: io.ReadAll grows a large slice by a quarter at a time,
// and inflating a 3 MB snapshot that way allocated, cleared and copied
// some 250 MB (0.5 s of a fresh instance's restore, profiled).
func inflate(b []byte) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(min(6*len(b)+512, 64<<20))
	_, err := out.ReadFrom(flate.NewReader(bytes.NewReader(b)))
	return out.Bytes(), err
}

func unpackBytes(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty data")
	}
	switch b[0] {
	case formatJSON:
		return b[1:], nil
	case formatDeflated:
		return inflate(b[1:])
	}
	return nil, fmt.Errorf("unknown data format %q", b[0])
}

// putChunks spreads stored bytes over binary properties D0..Dn-1 and N.
func putChunks(props map[string]any, b []byte) error {
	n := (len(b) + chunkSize - 1) / chunkSize
	if n > maxChunks {
		return fmt.Errorf("%w: %d bytes stored, at most %d", ErrTooLarge, len(b), maxChunks*chunkSize)
	}
	for i := 0; i < n; i++ {
		props[chunkProp(i)] = aztables.EDMBinary(b[i*chunkSize : min(len(b), (i+1)*chunkSize)])
	}
	props[propChunks] = int32(n)
	return nil
}

func getChunks(props map[string]any) ([]byte, error) {
	n, ok := props[propChunks].(int32)
	if !ok || n < 0 || n > maxChunks {
		return nil, fmt.Errorf("entity has no valid %s property", propChunks)
	}
	var out []byte
	for i := 0; i < int(n); i++ {
		c, ok := props[chunkProp(i)].(aztables.EDMBinary)
		if !ok {
			return nil, fmt.Errorf("entity lacks %s", chunkProp(i))
		}
		out = append(out, c...)
	}
	return out, nil
}

// memSize estimates the memory a decoded entity takes from the length of
// its JSON, for the cache's budget.
func memSize(jsonLen int) int { return 3*jsonLen + 256 }

// encodeState returns the stored entity (the JSON aztables sends) for a
// state entity, and the length of the entity's own JSON.
func encodeState(k state.Key, ref entityRef, e *state.Entity) ([]byte, int, error) {
	js, err := json.Marshal(e)
	if err != nil {
		return nil, 0, fmt.Errorf("encode state: %w", err)
	}
	props := map[string]any{
		propRule:  k.Rule,
		propGroup: k.Group,
		propBlock: aztables.EDMInt64(k.Block),
	}
	if err := putChunks(props, packBytes(js, true)); err != nil {
		return nil, 0, fmt.Errorf("state entity %s/%q/%d: %w", k.Rule, k.Group, k.Block, err)
	}
	body, err := json.Marshal(aztables.EDMEntity{
		Entity:     aztables.Entity{PartitionKey: ref.pk, RowKey: ref.rk},
		Properties: props,
	})
	return body, len(js), err
}

// stored is an entity as read from the table.
type stored struct {
	key  state.Key
	etag string
	e    *state.Entity
	size int // estimated memory taken, for the cache's budget
}

// decodeState parses a state entity as returned by a read or a query.
func decodeState(raw []byte) (*stored, error) {
	var ent aztables.EDMEntity
	if err := json.Unmarshal(raw, &ent); err != nil {
		return nil, fmt.Errorf("decode state entity: %w", err)
	}
	rule, _ := ent.Properties[propRule].(string)
	group, _ := ent.Properties[propGroup].(string)
	block, err := parseRowKey(ent.RowKey)
	if err != nil {
		return nil, err
	}
	data, err := getChunks(ent.Properties)
	if err != nil {
		return nil, fmt.Errorf("state entity %s/%s: %w", ent.PartitionKey, ent.RowKey, err)
	}
	js, err := unpackBytes(data)
	if err != nil {
		return nil, fmt.Errorf("state entity %s/%s: %w", ent.PartitionKey, ent.RowKey, err)
	}
	e := &state.Entity{}
	if err := json.Unmarshal(js, e); err != nil {
		return nil, fmt.Errorf("state entity %s/%s: %w", ent.PartitionKey, ent.RowKey, err)
	}
	return &stored{key: state.Key{Rule: rule, Group: group, Block: block}, etag: ent.ETag, e: e, size: memSize(len(js))}, nil
}

// validKey reports whether s may be a PartitionKey or RowKey: at most 1 KiB
// and none of / \ # ? or control characters ("Understanding the Table
// service data model").
func validKey(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r == '/' || r == '\\' || r == '#' || r == '?' || r < 0x20 || (r >= 0x7f && r <= 0x9f)
	})
}

// odataQuote quotes a string literal for a $filter.
func odataQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// chunkedRow is what the journal reads of a row: its keys, version, Index
// (a log's head) and the bytes stored in D0..Dn-1 (nil without N).
type chunkedRow struct {
	rowKey, etag string
	index        int64
	data         []byte
	chunked      bool // N was there
}

// chunks returns the row's stored bytes, as getChunks does.
func (r *chunkedRow) chunks() ([]byte, error) {
	if !r.chunked {
		return nil, fmt.Errorf("entity has no valid %s property", propChunks)
	}
	return r.data, nil
}

// decodeChunkedRow reads a row as a query returns it (aztables' JSON of
// the entity) in one pass, the binary properties decoded from base64
// straight into the row's data: a restore reads megabytes of them, which
// aztables.EDMEntity's decoding went over three times more (a map of raw
// values, a string each, then base64). It reads what getChunks and the
// Index property read, and fails where they fail.
func decodeChunkedRow(raw []byte) (chunkedRow, error) {
	var r chunkedRow
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return r, fmt.Errorf("entity is not a JSON object: %v", err)
	}
	n := -1
	var chunks [maxChunks][]byte
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return r, err
		}
		name := tok.String()
		switch {
		case name == "RowKey" || name == "odata.etag":
			v, err := dec.ReadToken()
			if err != nil || v.Kind() != '"' {
				return r, fmt.Errorf("entity %s is not a string", name)
			}
			if name == "RowKey" {
				r.rowKey = v.String()
			} else {
				r.etag = v.String()
			}
		case name == propIndex:
			v, err := dec.ReadToken()
			if err != nil {
				return r, err
			}
			switch v.Kind() {
			case '"': // Edm.Int64
				if r.index, err = strconv.ParseInt(v.String(), 10, 64); err != nil {
					return r, fmt.Errorf("entity %s: %w", name, err)
				}
			case '0':
				if r.index, err = v.Int(); err != nil {
					return r, fmt.Errorf("entity %s: %w", name, err)
				}
			}
		case name == propChunks:
			v, err := dec.ReadToken()
			if err != nil || v.Kind() != '0' {
				return r, fmt.Errorf("entity has no valid %s property", propChunks)
			}
			c, err := v.Int()
			if err != nil || c < 0 {
				return r, fmt.Errorf("entity has no valid %s property", propChunks)
			}
			n = int(c)
		case len(name) >= 2 && name[0] == 'D' && !strings.Contains(name, "@"):
			i, err := strconv.Atoi(name[1:])
			if err != nil || i < 0 || i >= maxChunks {
				if err := dec.SkipValue(); err != nil {
					return r, err
				}
				continue
			}
			v, err := dec.ReadValue()
			if err != nil || v.Kind() != '"' {
				return r, fmt.Errorf("entity %s is not binary", name)
			}
			s := []byte(v[1 : len(v)-1])
			if bytes.IndexByte(s, '\\') >= 0 {
				if s, err = jsontext.AppendUnquote(nil, v); err != nil {
					return r, err
				}
			}
			b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
			m, err := base64.StdEncoding.Decode(b, s)
			if err != nil {
				return r, fmt.Errorf("entity %s: %w", name, err)
			}
			chunks[i] = b[:m]
		default:
			if err := dec.SkipValue(); err != nil {
				return r, err
			}
		}
	}
	if n < 0 {
		return r, nil
	}
	r.chunked = true
	if n > maxChunks {
		return r, fmt.Errorf("entity has no valid %s property", propChunks)
	}
	size := 0
	for i := range n {
		if chunks[i] == nil {
			return r, fmt.Errorf("entity lacks %s", chunkProp(i))
		}
		size += len(chunks[i])
	}
	r.data = make([]byte, 0, size)
	for i := range n {
		r.data = append(r.data, chunks[i]...)
	}
	return r, nil
}

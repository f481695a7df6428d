package tablestore

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

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

func unpackBytes(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty data")
	}
	switch b[0] {
	case formatJSON:
		return b[1:], nil
	case formatDeflated:
		return io.ReadAll(flate.NewReader(bytes.NewReader(b[1:])))
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

package tablestore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/deadletter"
)

// DeadLetters is a deadletter.Sink on the store's deadletters table:
// PartitionKey the letter's UTC date (YYYYMMDD), RowKey its time in
// nanoseconds and a digest of its content (so a Put retried with the same
// letters stores nothing twice), the letter's fields as JSON in M and its
// raw bytes, deflated, in binary properties D0..Dn-1 — over several
// entities (RowKey suffixes -p01, -p02, …) when they would not fit in one.
type DeadLetters struct{ s *Store }

var _ deadletter.Sink = (*DeadLetters)(nil)

// DeadLetters returns the store's dead-letter sink.
func (s *Store) DeadLetters() *DeadLetters { return &DeadLetters{s} }

const (
	propMeta   = "M"
	propParts  = "Parts"
	rawPerPart = maxChunks * chunkSize
)

type dlEntity struct {
	pk, rk string
	body   []byte
}

// Put implements deadletter.Sink: every letter is stored, or an error is
// returned (and a retry stores only what is missing).
func (d *DeadLetters) Put(ctx context.Context, letters []deadletter.Letter) error {
	var ents []dlEntity
	for i := range letters {
		es, err := encodeLetter(&letters[i], i)
		if err != nil {
			return fmt.Errorf("tablestore: dead letter: %w", err)
		}
		ents = append(ents, es...)
	}
	// Transactions per date partition.
	var txs [][]dlEntity
	open := map[string]int{}
	var sizes []int
	for _, e := range ents {
		i, ok := open[e.pk]
		n := len(e.body) + opOverhead
		if !ok || len(txs[i]) >= maxTxOps || sizes[i]+n > maxTxBytes {
			txs = append(txs, nil)
			sizes = append(sizes, 0)
			i = len(txs) - 1
			open[e.pk] = i
		}
		txs[i] = append(txs[i], e)
		sizes[i] += n
	}
	s := d.s
	return s.parallel(ctx, len(txs), func(ctx context.Context, i int) error {
		tx := txs[i]
		actions := make([]aztables.TransactionAction, len(tx))
		for j, e := range tx {
			actions[j] = aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: e.body}
		}
		s.stats.transactions.Add(1)
		_, err := s.transact(ctx, s.deadletters, actions)
		var f *txFailure
		if err == nil || !errors.As(err, &f) || f.status != http.StatusConflict {
			if err != nil {
				return fmt.Errorf("tablestore: dead letters: %w", err)
			}
			return nil
		}
		// Some are stored already (by an earlier try of the same letters):
		// insert one by one, taking "exists" for done.
		for _, e := range tx {
			s.stats.inserts.Add(1)
			err := s.call(ctx, "dead letter", func(ctx context.Context) error {
				_, err := s.deadletters.AddEntity(ctx, e.body, nil)
				return err
			})
			if st, _, ok := statusOf(err); ok && st == http.StatusConflict {
				continue
			}
			if err != nil {
				return fmt.Errorf("tablestore: dead letter: %w", err)
			}
		}
		return nil
	})
}

func encodeLetter(l *deadletter.Letter, index int) ([]dlEntity, error) {
	at := l.At
	if at.IsZero() {
		at = time.Now()
	}
	meta := *l
	meta.Raw, meta.RawBase64 = "", nil
	meta.At = at.UTC()
	mj, err := json.Marshal(&meta)
	if err != nil {
		return nil, err
	}
	raw := l.Bytes()
	h := sha256.New()
	h.Write(mj)
	h.Write(raw)
	binary.Write(h, binary.BigEndian, int64(index))
	pk := at.UTC().Format("20060102")
	rk := fmt.Sprintf("%019d%s", at.UnixNano(), hex.EncodeToString(h.Sum(nil)[:8]))
	packed := packBytes(raw, true)
	nparts := max(1, (len(packed)+rawPerPart-1)/rawPerPart)
	out := make([]dlEntity, 0, nparts)
	for p := 0; p < nparts; p++ {
		props := map[string]any{}
		if p == 0 {
			if len(mj) > chunkSize {
				return nil, fmt.Errorf("letter fields take %d bytes, at most %d", len(mj), chunkSize)
			}
			props[propMeta] = aztables.EDMBinary(mj)
			props[propParts] = int32(nparts)
		}
		if err := putChunks(props, packed[min(len(packed), p*rawPerPart):min(len(packed), (p+1)*rawPerPart)]); err != nil {
			return nil, err
		}
		key := rk
		if p > 0 {
			key = fmt.Sprintf("%s-p%02d", rk, p)
		}
		body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: key}, Properties: props})
		if err != nil {
			return nil, err
		}
		out = append(out, dlEntity{pk, key, body})
	}
	return out, nil
}

// List returns the letters dead-lettered on the UTC days from..to
// (inclusive), oldest first.
func (d *DeadLetters) List(ctx context.Context, from, to time.Time) ([]deadletter.Letter, error) {
	s := d.s
	filter := "PartitionKey ge " + odataQuote(from.UTC().Format("20060102")) +
		" and PartitionKey le " + odataQuote(to.UTC().Format("20060102"))
	type part struct {
		rk    string
		props map[string]any
	}
	var ps []part
	err := s.query(ctx, s.deadletters, filter, nil, func(raw []byte) error {
		var e aztables.EDMEntity
		if err := json.Unmarshal(raw, &e); err != nil {
			return err
		}
		ps = append(ps, part{e.PartitionKey + "/" + e.RowKey, e.Properties})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tablestore: dead letters: %w", err)
	}
	slices.SortFunc(ps, func(a, b part) int { return strings.Compare(a.rk, b.rk) })
	var out []deadletter.Letter
	for i := 0; i < len(ps); {
		mj, ok := ps[i].props[propMeta].(aztables.EDMBinary)
		n, _ := ps[i].props[propParts].(int32)
		if !ok || n < 1 || i+int(n) > len(ps) {
			return nil, fmt.Errorf("tablestore: dead letter %s is incomplete", ps[i].rk)
		}
		var l deadletter.Letter
		if err := json.Unmarshal(mj, &l); err != nil {
			return nil, err
		}
		var packed []byte
		for j := i; j < i+int(n); j++ {
			c, err := getChunks(ps[j].props)
			if err != nil {
				return nil, err
			}
			packed = append(packed, c...)
		}
		raw, err := unpackBytes(packed)
		if err != nil {
			return nil, err
		}
		size, truncated := l.Size, l.Truncated
		l.SetRaw(raw)
		l.Size, l.Truncated = size, truncated
		out = append(out, l)
		i += int(n)
	}
	return out, nil
}

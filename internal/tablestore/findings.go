package tablestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/state"
)

// AddFinding implements state.Store: it inserts the finding into the
// findings table (PartitionKey the ID's first two characters, RowKey the
// ID); if the ID is there already, added is false. An insert whose answer
// was lost (a timeout, a broken connection) and that is retried finds its
// own entity: a nonce written with it tells it apart from another
// attempt's, so the finding is reported added exactly once.
func (s *Store) AddFinding(ctx context.Context, id string, body []byte) (bool, error) {
	got, err := s.AddFindings(ctx, []state.FindingRecord{{ID: id, Body: body}})
	if err != nil {
		return false, err
	}
	return got[0], nil
}

// findingPK is a finding's partition: "h" and the hour its period starts
// in (UTC), so that a batch's findings, which mostly share an hour, are
// recorded in one or a few transactions; the ID's first two characters
// when the period is unknown.
func findingPK(id string, period time.Time) string {
	if period.IsZero() {
		return id[:min(2, len(id))]
	}
	return "h" + period.UTC().Format("2006010215")
}

type findingOp struct {
	i      int
	pk, id string
	nonce  string
	ent    []byte
}

// AddFindings implements state.FindingsAdder: the records of one partition
// are inserted in entity-group transactions (at most 100, 3.5 MB); a
// transaction refused because one ID exists (409) is done again one record
// at a time, each telling its own earlier insert from another's by its
// nonce.
func (s *Store) AddFindings(ctx context.Context, recs []state.FindingRecord) ([]bool, error) {
	out := make([]bool, len(recs))
	byPK := map[string][]findingOp{}
	var pks []string
	seen := make(map[string]bool, len(recs))
	// What delivery decided, as of now: the other instance records and
	// decides the same findings. (The Found that follows takes these
	// catch-ups as its own; with fewer findings than 2 per shard it may
	// not touch every shard, and they would cost more than they save.)
	if len(recs) >= 2*outboxShards {
		if err := s.Outbox().refresh(ctx); err != nil {
			return nil, err
		}
	}
	decided := s.Outbox().decided
	for i, r := range recs {
		if !validKey(r.ID) {
			return nil, fmt.Errorf("tablestore: finding ID %q is not a valid row key", r.ID)
		}
		if seen[r.ID] {
			continue // the same ID twice: the first one records it
		}
		seen[r.ID] = true
		if decided(r.ID) {
			// Delivery decided it: it was recorded before it was handed
			// on (by another instance, which raised it too), so it is
			// not added, and an insert would only be refused.
			continue
		}
		pk := findingPK(r.ID, r.Period)
		nonce := newNonce()
		props := map[string]any{propNonce: nonce}
		if err := putChunks(props, packBytes(r.Body, true)); err != nil {
			return nil, fmt.Errorf("tablestore: finding %s: %w", r.ID, err)
		}
		ent, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: r.ID}, Properties: props})
		if err != nil {
			return nil, err
		}
		if _, ok := byPK[pk]; !ok {
			pks = append(pks, pk)
		}
		byPK[pk] = append(byPK[pk], findingOp{i: i, pk: pk, id: r.ID, nonce: nonce, ent: ent})
	}
	var chunks [][]findingOp
	for _, pk := range pks {
		ops := byPK[pk]
		for len(ops) > 0 {
			n, size := 0, 0
			for n < len(ops) && n < maxTxOps && (n == 0 || size+len(ops[n].ent)+opOverhead < maxTxBytes) {
				size += len(ops[n].ent) + opOverhead
				n++
			}
			chunks = append(chunks, ops[:n])
			ops = ops[n:]
		}
	}
	var mu sync.Mutex
	err := s.parallel(ctx, len(chunks), func(ctx context.Context, c int) error {
		ops := chunks[c]
		mayBeOurs := false // no transaction was sent: this insert's own attempts tell
		// A transaction refused because IDs exist (another instance raised
		// the same findings) is sent again without them, found by a query
		// per 14 IDs: a few round trips, not one per finding.
		for try := 0; len(ops) > 1 && try < 3; try++ {
			actions := make([]aztables.TransactionAction, len(ops))
			for k, op := range ops {
				actions[k] = aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: op.ent}
			}
			s.stats.transactions.Add(1)
			s.stats.writes.Add(int64(len(ops)))
			retries := s.stats.retries.Load()
			_, err := s.transact(ctx, s.findings, actions)
			// Unless the transaction was sent again (its first answer lost:
			// then it may be ours that exists), an ID that exists now was
			// recorded by another attempt or instance.
			mayBeOurs = mayBeOurs || s.stats.retries.Load() != retries
			if err == nil {
				mu.Lock()
				for _, op := range ops {
					out[op.i] = true
				}
				mu.Unlock()
				return nil
			}
			var f *txFailure
			if !errors.As(err, &f) || f.status != http.StatusConflict {
				return fmt.Errorf("tablestore: record findings: %w", err)
			}
			s.stats.conflicts.Add(1)
			nonces, err := s.findingNonces(ctx, ops)
			if err != nil {
				return err
			}
			rest := ops[:0:0]
			mu.Lock()
			for _, op := range ops {
				if nonce, ok := nonces[op.id]; ok {
					out[op.i] = mayBeOurs && nonce == op.nonce
				} else {
					rest = append(rest, op)
				}
			}
			mu.Unlock()
			ops = rest
		}
		return s.parallel(ctx, len(ops), func(ctx context.Context, k int) error {
			added, err := s.addFinding(ctx, ops[k], mayBeOurs)
			if err != nil {
				return err
			}
			mu.Lock()
			out[ops[k].i] = added
			mu.Unlock()
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// decided reports whether some shard's view holds a decision about the
// finding: the finding was recorded before it was handed on to delivery.
func (o *Outbox) decided(id string) bool {
	o.mu.Lock()
	parts := make([]*outboxPart, 0, len(o.parts))
	for _, p := range o.parts {
		parts = append(parts, p)
	}
	o.mu.Unlock()
	for _, p := range parts {
		p.mu.Lock()
		_, ok := p.dec[id]
		p.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// findingNonces returns, for those of ops (of one partition) that are
// recorded, the nonce they were recorded with: a query per 14 IDs.
func (s *Store) findingNonces(ctx context.Context, ops []findingOp) (map[string]string, error) {
	out := map[string]string{}
	var mu sync.Mutex
	n := (len(ops) + keysPerQuery - 1) / keysPerQuery
	err := s.parallel(ctx, n, func(ctx context.Context, q int) error {
		part := ops[q*keysPerQuery : min(len(ops), (q+1)*keysPerQuery)]
		var or []string
		for _, op := range part {
			or = append(or, "RowKey eq "+odataQuote(op.id))
		}
		filter := "PartitionKey eq " + odataQuote(part[0].pk) + " and (" + strings.Join(or, " or ") + ")"
		sel := "RowKey," + propNonce
		return s.query(ctx, s.findings, filter, &sel, func(raw []byte) error {
			var ent aztables.EDMEntity
			if err := json.Unmarshal(raw, &ent); err != nil {
				return err
			}
			nonce, _ := ent.Properties[propNonce].(string)
			mu.Lock()
			out[ent.RowKey] = nonce
			mu.Unlock()
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("tablestore: record findings: %w", err)
	}
	return out, nil
}

// addFinding inserts one finding. On 409 it is not added, unless an
// earlier request of ours may have inserted it (mayBeOurs, or this insert
// was sent again): then the entity's nonce tells.
func (s *Store) addFinding(ctx context.Context, op findingOp, mayBeOurs bool) (bool, error) {
	pk, id := op.pk, op.id
	s.stats.inserts.Add(1)
	attempts := 0
	err := s.call(ctx, "record finding", func(ctx context.Context) error {
		attempts++
		_, err := s.findings.AddEntity(ctx, op.ent, nil)
		return err
	})
	if st, _, ok := statusOf(err); ok && st == http.StatusConflict {
		if attempts == 1 && !mayBeOurs {
			return false, nil // recorded before, by another attempt or instance
		}
		s.stats.reads.Add(1)
		var got aztables.GetEntityResponse
		if err := s.call(ctx, "read finding", func(ctx context.Context) error {
			var err error
			got, err = s.findings.GetEntity(ctx, pk, id, nil)
			return err
		}); err != nil {
			return false, fmt.Errorf("tablestore: finding %s: %w", id, err)
		}
		var have aztables.EDMEntity
		if err := json.Unmarshal(got.Value, &have); err != nil {
			return false, fmt.Errorf("tablestore: finding %s: %w", id, err)
		}
		return have.Properties[propNonce] == op.nonce, nil
	}
	if err != nil {
		return false, fmt.Errorf("tablestore: record finding %s: %w", id, err)
	}
	return true, nil
}

// Finding returns a recorded finding's body (tests, tools), given its ID
// and the start of its period (zero: recorded by AddFinding); ok is false
// if the ID is not recorded.
func (s *Store) Finding(ctx context.Context, id string, period time.Time) (body []byte, ok bool, err error) {
	if !validKey(id) {
		return nil, false, fmt.Errorf("tablestore: finding ID %q is not a valid row key", id)
	}
	got, found, err := s.get(ctx, s.findings, "read finding", findingPK(id, period), id)
	if err != nil {
		return nil, false, fmt.Errorf("tablestore: read finding %s: %w", id, err)
	}
	if !found {
		return nil, false, nil
	}
	var e aztables.EDMEntity
	if err := json.Unmarshal(got.Value, &e); err != nil {
		return nil, false, err
	}
	data, err := getChunks(e.Properties)
	if err != nil {
		return nil, false, err
	}
	body, err = unpackBytes(data)
	return body, err == nil, err
}

func newNonce() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/state"
)

// Prune implements state.Store. It scans the time blocks (Block ≥ 0; the
// special blocks BlockMeta and BlockRule, negative, are never offered to
// drop) and deletes those drop selects, in transactions per partition,
// each delete conditional on the version scanned: an entity written since
// is kept until a later prune.
func (s *Store) Prune(ctx context.Context, drop func(state.Key) bool) (int, error) {
	type victim struct {
		k    state.Key
		ref  entityRef
		etag string
	}
	byPK := map[string][]victim{}
	var pks []string
	sel := "PartitionKey,RowKey," + propRule + "," + propGroup + "," + propBlock
	err := s.query(ctx, s.state, propBlock+" ge 0L", &sel, func(raw []byte) error {
		var ent aztables.EDMEntity
		if err := json.Unmarshal(raw, &ent); err != nil {
			return fmt.Errorf("decode state entity: %w", err)
		}
		rule, _ := ent.Properties[propRule].(string)
		group, _ := ent.Properties[propGroup].(string)
		block, err := parseRowKey(ent.RowKey)
		if err != nil {
			return err
		}
		k := state.Key{Rule: rule, Group: group, Block: block}
		if !drop(k) {
			return nil
		}
		if _, ok := byPK[ent.PartitionKey]; !ok {
			pks = append(pks, ent.PartitionKey)
		}
		etag := ent.ETag
		if etag == "" {
			etag = "*" // no version given: delete whatever is there
		}
		byPK[ent.PartitionKey] = append(byPK[ent.PartitionKey], victim{k, entityRef{ent.PartitionKey, ent.RowKey}, etag})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("tablestore: prune: %w", err)
	}
	var txs [][]victim
	for _, pk := range pks {
		vs := byPK[pk]
		for len(vs) > 0 {
			n := min(len(vs), maxTxOps)
			txs = append(txs, vs[:n])
			vs = vs[n:]
		}
	}
	deleted := make([]int, len(txs))
	err = s.parallel(ctx, len(txs), func(ctx context.Context, i int) error {
		tx := txs[i]
		for _, v := range tx {
			s.cache.remove(v.k)
		}
		actions := make([]aztables.TransactionAction, len(tx))
		for j, v := range tx {
			body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: v.ref.pk, RowKey: v.ref.rk}})
			if err != nil {
				return err
			}
			etag := azcore.ETag(v.etag)
			actions[j] = aztables.TransactionAction{ActionType: aztables.TransactionTypeDelete, Entity: body, IfMatch: &etag}
		}
		s.stats.transactions.Add(1)
		_, err := s.transact(ctx, s.state, actions)
		if err == nil {
			deleted[i] = len(tx)
			s.stats.deletes.Add(int64(len(tx)))
			return nil
		}
		var f *txFailure
		if !errors.As(err, &f) || (f.status != http.StatusNotFound && f.status != http.StatusPreconditionFailed) {
			return err
		}
		// One of them changed or went (another instance pruning too):
		// delete one by one, keeping what changed.
		s.stats.conflicts.Add(1)
		for _, v := range tx {
			etag := azcore.ETag(v.etag)
			s.stats.inserts.Add(1)
			err := s.call(ctx, "delete state", func(ctx context.Context) error {
				_, err := s.state.DeleteEntity(ctx, v.ref.pk, v.ref.rk, &aztables.DeleteEntityOptions{IfMatch: &etag})
				return err
			})
			if st, _, ok := statusOf(err); ok && (st == http.StatusNotFound || st == http.StatusPreconditionFailed) {
				continue
			}
			if err != nil {
				return err
			}
			deleted[i]++
			s.stats.deletes.Add(1)
		}
		return nil
	})
	n := 0
	for _, d := range deleted {
		n += d
	}
	if err != nil {
		return n, fmt.Errorf("tablestore: prune: %w", err)
	}
	return n, nil
}

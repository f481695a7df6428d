package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/delivery"
)

// Prune implements delivery.Outbox: per partition, queries for entries no
// receiver waits for that were done before before, decisions made before
// it, cooldowns whose last alert was before it and log entries older than
// logKeep, and deletes in entity-group transactions of up to 100. An entry
// or cooldown is deleted only in the version the query read: one written
// since is kept until a later prune.
func (o *Outbox) Prune(ctx context.Context, before time.Time) (delivery.Pruned, error) {
	var p delivery.Pruned
	cut := micros(before)
	if cut <= 0 {
		return p, nil
	}
	var mu sync.Mutex
	var refs []deleteRef
	logCut := micros(time.Now().Add(-logKeep))
	type scan struct {
		pk, filter, sel string
		each            func(pk string, ent *aztables.EDMEntity)
	}
	var scans []scan
	for _, pk := range allPKs() {
		scans = append(scans,
			scan{pk, fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s' and %s eq false and %s gt 0L and %s lt %dL",
				pk, rkEntry, rkEntry[:1]+".", propPending, propDone, propDone, cut), "PartitionKey,RowKey," + propID + "," + propCreated,
				func(pk string, ent *aztables.EDMEntity) {
					id, _ := ent.Properties[propID].(string)
					created, _ := ent.Properties[propCreated].(aztables.EDMInt64)
					refs = append(refs, deleteRef{pk, ent.RowKey, etagOr(ent.ETag), false})
					if id != "" {
						refs = append(refs, deleteRef{pk, recentKey(time.UnixMicro(int64(created)), id), "*", true})
					}
					p.Entries++
				}},
			scan{pk, fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s' and %s lt %dL",
				pk, rkDecision, rkDecision[:1]+".", propAt, cut), "PartitionKey,RowKey",
				func(pk string, ent *aztables.EDMEntity) {
					refs = append(refs, deleteRef{pk, ent.RowKey, "*", false}) // never changed once written
					p.Decisions++
				}},
			scan{pk, fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s' and %s lt %dL",
				pk, rkCooldown, rkCooldown[:1]+".", propLast, cut), "PartitionKey,RowKey",
				func(pk string, ent *aztables.EDMEntity) {
					refs = append(refs, deleteRef{pk, ent.RowKey, etagOr(ent.ETag), false})
					p.Cooldowns++
				}},
			scan{pk, fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s' and %s lt %dL",
				pk, rkLog, rkLog[:1]+".", propAt, logCut), "PartitionKey,RowKey",
				func(pk string, ent *aztables.EDMEntity) {
					refs = append(refs, deleteRef{pk, ent.RowKey, "*", false})
				}})
	}
	err := o.s.parallel(ctx, len(scans), func(ctx context.Context, i int) error {
		sc := scans[i]
		return o.s.query(ctx, o.s.outbox, sc.filter, &sc.sel, func(raw []byte) error {
			var ent aztables.EDMEntity
			if err := json.Unmarshal(raw, &ent); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			sc.each(sc.pk, &ent)
			return nil
		})
	})
	if err != nil {
		return p, fmt.Errorf("tablestore: outbox prune: %w", err)
	}
	// An entry's index row follows it (deleteRef.withPrev): each scan
	// appends the pair under the lock.
	if err := o.s.deleteAll(ctx, o.s.outbox, refs); err != nil {
		return p, fmt.Errorf("tablestore: outbox prune: %w", err)
	}
	return p, nil
}

func etagOr(etag string) string {
	if etag == "" {
		return "*"
	}
	return etag
}

// deleteRef is an entity to delete, in the version etag ("*": any);
// withPrev: only if the one before it in the list was deleted (an entry's
// index row goes only with the entry).
type deleteRef struct {
	pk, rk, etag string
	withPrev     bool
}

// deleteAll deletes entities in transactions of up to 100 per partition;
// a transaction that meets an entity gone or changed is done again one by
// one, leaving those.
func (s *Store) deleteAll(ctx context.Context, c *aztables.Client, refs []deleteRef) error {
	byPK := map[string][]deleteRef{}
	var pks []string
	for _, r := range refs {
		if _, ok := byPK[r.pk]; !ok {
			pks = append(pks, r.pk)
		}
		byPK[r.pk] = append(byPK[r.pk], r)
	}
	var txs [][]deleteRef
	for _, pk := range pks {
		rs := byPK[pk]
		for len(rs) > 0 {
			n := min(len(rs), maxTxOps)
			txs = append(txs, rs[:n])
			rs = rs[n:]
		}
	}
	return s.parallel(ctx, len(txs), func(ctx context.Context, i int) error {
		tx := txs[i]
		actions := make([]aztables.TransactionAction, len(tx))
		for j, r := range tx {
			body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: r.pk, RowKey: r.rk}})
			if err != nil {
				return err
			}
			etag := azcore.ETag(r.etag)
			actions[j] = aztables.TransactionAction{ActionType: aztables.TransactionTypeDelete, Entity: body, IfMatch: &etag}
		}
		s.stats.transactions.Add(1)
		_, err := s.transact(ctx, c, actions)
		if err == nil {
			s.stats.deletes.Add(int64(len(tx)))
			return nil
		}
		var f *txFailure
		if !errors.As(err, &f) || (f.status != http.StatusNotFound && f.status != http.StatusPreconditionFailed) {
			return err
		}
		s.stats.conflicts.Add(1)
		prevDeleted := false
		for _, r := range tx {
			if r.withPrev && !prevDeleted {
				continue
			}
			prevDeleted = false
			etag := azcore.ETag(r.etag)
			s.stats.inserts.Add(1)
			err := s.call(ctx, "delete", func(ctx context.Context) error {
				_, err := c.DeleteEntity(ctx, r.pk, r.rk, &aztables.DeleteEntityOptions{IfMatch: &etag})
				return err
			})
			if isStatus(err, http.StatusNotFound) {
				prevDeleted = true // gone already
				continue
			}
			if isStatus(err, http.StatusPreconditionFailed) {
				continue // changed since: kept
			}
			if err != nil {
				return err
			}
			prevDeleted = true
			s.stats.deletes.Add(1)
		}
		return nil
	})
}

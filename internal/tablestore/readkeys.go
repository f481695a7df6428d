package tablestore

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// pointReads is the most row keys of one partition that readKeys reads
// one by one, in parallel, instead of in one query. In Azure Table
// Storage a filter that joins row keys with "or" is a scan of the whole
// partition (an outbox shard's holds every alert, decision and cooldown
// kept for delivery.retention), while a point read is an index seek; a
// query costs one request for up to 14 keys, point reads one each. Once
// a tenant's first alerts have passed, most reads by key name one or two
// (docs/performance.md).
const pointReads = 2

// keysPerQuery bounds the row keys of one query: the service evaluates at
// most 15 comparisons in a $filter, one of them the PartitionKey's.
const keysPerQuery = 14

// readKeys reads the rows rks (at most keysPerQuery) of the outbox's
// partition pk: with point reads (Outbox.read) when they are at most
// pointReads, else with one query (sel, if not nil, the properties it
// selects; a point read returns them all). each gets every row found, one
// at a time, with its ETag; a row that does not exist is not found.
func (o *Outbox) readKeys(ctx context.Context, pk string, rks []string, sel *string, each func(ent *aztables.EDMEntity) error) error {
	if len(rks) > pointReads {
		or := make([]string, len(rks))
		for i, rk := range rks {
			or[i] = "RowKey eq " + odataQuote(rk)
		}
		filter := "PartitionKey eq " + odataQuote(pk) + " and (" + strings.Join(or, " or ") + ")"
		return o.s.query(ctx, o.s.outbox, filter, sel, func(raw []byte) error {
			var ent aztables.EDMEntity
			if err := json.Unmarshal(raw, &ent); err != nil {
				return err
			}
			return each(&ent)
		})
	}
	got := make([]*aztables.EDMEntity, len(rks))
	err := o.s.parallel(ctx, len(rks), func(ctx context.Context, i int) error {
		props, etag, ok, err := o.read(ctx, "row", pk, rks[i])
		if ok {
			got[i] = &aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: rks[i]}, ETag: etag, Properties: props}
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, ent := range got {
		if ent != nil {
			if err := each(ent); err != nil {
				return err
			}
		}
	}
	return nil
}

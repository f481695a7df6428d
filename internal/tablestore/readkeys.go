package tablestore

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
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

// readKeys reads the rows rks (at most keysPerQuery) of partition pk of
// table c: with point reads when they are at most pointReads, else with
// one query (sel, if not nil, the properties it selects; a point read
// returns them all). each gets every row found, one at a time, as a
// query returns it (JSON with its "odata.etag"); a row that does not
// exist is not found.
func (s *Store) readKeys(ctx context.Context, c *aztables.Client, pk string, rks []string, sel *string, each func(raw []byte) error) error {
	if len(rks) > pointReads {
		or := make([]string, len(rks))
		for i, rk := range rks {
			or[i] = "RowKey eq " + odataQuote(rk)
		}
		return s.query(ctx, c, "PartitionKey eq "+odataQuote(pk)+" and ("+strings.Join(or, " or ")+")", sel, each)
	}
	raws := make([][]byte, len(rks))
	err := s.parallel(ctx, len(rks), func(ctx context.Context, i int) error {
		s.stats.reads.Add(1)
		var resp aztables.GetEntityResponse
		err := s.call(ctx, "read", func(ctx context.Context) error {
			var err error
			resp, err = c.GetEntity(ctx, pk, rks[i], nil)
			return err
		})
		if isStatus(err, http.StatusNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		raws[i], err = withETag(resp.Value, string(resp.ETag))
		return err
	})
	if err != nil {
		return err
	}
	for _, raw := range raws {
		if raw == nil {
			continue
		}
		if err := each(raw); err != nil {
			return err
		}
	}
	return nil
}

// withETag returns an entity's JSON with its ETag as a query's rows carry
// it ("odata.etag"), taken from the answer's header when the body lacks it.
func withETag(raw []byte, etag string) ([]byte, error) {
	if etag == "" || bytes.Contains(raw, []byte(`"odata.etag"`)) {
		return raw, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	q, err := json.Marshal(etag)
	if err != nil {
		return nil, err
	}
	m["odata.etag"] = q
	return json.Marshal(m)
}

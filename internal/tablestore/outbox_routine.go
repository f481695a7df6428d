package tablestore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/delivery"
)

// propOf is a routine decision's delivery.Brief (what was not alerted),
// as JSON: digests and `kvwatch alerts list` report routine findings from
// it. Views and log entries leave it out (deciding needs only that a
// decision exists).
const propOf = "Of"

// maxBriefChars bounds propOf below the 32K characters a string property
// holds: a Brief longer than that (a group of huge values) keeps its rule,
// vault and caller (each cut with a hash suffix, audit.Truncate), not its
// group.
const maxBriefChars = 16 << 10

// briefJSON encodes a Brief for propOf.
func briefJSON(b *delivery.Brief) string {
	js, err := json.Marshal(b)
	if err == nil && len(js) > maxBriefChars {
		c := *b
		c.Group = nil
		c.Caller, _ = audit.Truncate(c.Caller, 1024)
		c.CallerName, _ = audit.Truncate(c.CallerName, 1024)
		c.Vault, _ = audit.Truncate(c.Vault, 1024)
		js, err = json.Marshal(&c)
	}
	if err != nil {
		return ""
	}
	return string(js)
}

// briefOf reads propOf; nil when there is none (a decision that is not
// routine, or one made before briefs were written).
func briefOf(props map[string]any) *delivery.Brief {
	s, _ := props[propOf].(string)
	if s == "" {
		return nil
	}
	var b delivery.Brief
	if err := json.Unmarshal([]byte(s), &b); err != nil {
		return nil
	}
	return &b
}

var _ delivery.RoutineLister = (*Outbox)(nil)

// RoutineDecisions implements delivery.RoutineLister: a query per
// partition over its decision rows, filtered by the service on Routine and
// At (a scan of the partition's decisions, as Prune's: fine for a digest
// a day or a command, not for the hot path).
func (o *Outbox) RoutineDecisions(ctx context.Context, from, to time.Time, limit int) ([]delivery.RoutineDecision, bool, error) {
	if limit <= 0 || !from.Before(to) {
		return nil, false, nil
	}
	lo, hi := micros(from), micros(to)
	pks := allPKs()
	var mu sync.Mutex
	var out []delivery.RoutineDecision
	truncated := false
	// keep bounds what is held while reading: past twice the limit, the
	// newest limit are kept.
	keep := func() {
		if len(out) > 2*limit {
			delivery.SortRoutine(out)
			out, truncated = slices.Clip(out[:limit]), true
		}
	}
	sel := "PartitionKey,RowKey," + propID + "," + propAlert + "," + propSuppressed + "," + propRoutine + "," + propAt + "," + propFacts + "," + propOf
	err := o.s.parallel(ctx, len(pks), func(ctx context.Context, i int) error {
		filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s' and %s eq true and %s ge %dL and %s lt %dL",
			pks[i], rkDecision, rkDecision[:1]+".", propRoutine, propAt, lo, propAt, hi)
		return o.s.query(ctx, o.s.outbox, filter, &sel, func(raw []byte) error {
			var ent aztables.EDMEntity
			if err := json.Unmarshal(raw, &ent); err != nil {
				return err
			}
			id, _ := ent.Properties[propID].(string)
			d, ok, err := decisionOf(ent.Properties, id)
			if err != nil || !ok || !d.Routine || id == "" {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			out = append(out, delivery.RoutineDecision{Finding: id, Decision: d})
			keep()
			return nil
		})
	})
	if err != nil {
		return nil, false, fmt.Errorf("tablestore: outbox routine decisions: %w", err)
	}
	delivery.SortRoutine(out)
	if len(out) > limit {
		out, truncated = out[:limit], true
	}
	return out, truncated, nil
}

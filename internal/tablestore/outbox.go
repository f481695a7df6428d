package tablestore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/delivery"
)

// Outbox is a delivery.Outbox on the store's outbox table (prefix+"outbox"),
// shared by every instance on the same tables. Its entities:
//
//   - PartitionKey "decision", RowKey the finding ID: what delivery decided
//     about the finding (Alert, Suppressed) and when (At, unix
//     microseconds). Written only if absent: the first decision stays.
//   - PartitionKey "cooldown", RowKey the cooldown key: the key (Key), the
//     cooldown as JSON (J) and its last alert's time (Last, unix
//     microseconds). Written with optimistic concurrency.
//   - PartitionKey "alert", RowKey "a-" and the alert ID: the entry, as JSON
//     (deflated when long) in binary properties D0..Dn-1, and beside it
//     what queries filter on, rewritten on every write: Pending (some
//     receiver waits) and NextDue (the earliest Next of the waiting
//     receivers, unix microseconds), Done (when the last receiver was done
//     with it, unix microseconds; 0 while one waits), with ID, Rule and
//     Created. Written
//     with optimistic concurrency: the entry's Version is its ETag.
//   - PartitionKey "alert", RowKey "r-", Created inverted and the alert ID:
//     the index Recent reads, newest first; inserted with the entry in one
//     entity-group transaction, never changed; Prune deletes it with the
//     entry.
//
// Prune goes by At, Done and Last: entities written before they existed
// are not pruned.
//
// Keys that are not plain (letters, digits and . _ : = -; at most 200
// characters) are stored under "~" and a SHA-256 of the key.
//
// Every write carries a fresh nonce, so that a write whose answer was lost
// and that was retried recognises its own entity instead of reporting a
// conflict with itself.
type Outbox struct{ s *Store }

var _ delivery.Outbox = (*Outbox)(nil)

// Outbox returns the store's outbox.
func (s *Store) Outbox() *Outbox { return &Outbox{s} }

// Partitions, row key prefixes and properties of the outbox table.
const (
	pkDecision = "decision"
	pkCooldown = "cooldown"
	pkAlert    = "alert"

	rkEntry  = "a-"
	rkRecent = "r-"

	propID         = "ID"
	propAlert      = "Alert"
	propSuppressed = "Suppressed"
	propKey        = "Key"
	propJSON       = "J"
	propCreated    = "Created"
	propPending    = "Pending"
	propNextDue    = "NextDue"
	propDone       = "Done"
	propAt         = "At"
	propLast       = "Last"
)

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9._:=-]{1,200}$`)

// outboxKey is the row key for an ID or cooldown key.
func outboxKey(s string) string {
	if plainKeyRE.MatchString(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "~" + hex.EncodeToString(sum[:])
}

// micros is t in unix microseconds, 0 for times before 1970 (the zero
// time: due at once). Whole microseconds keep the value exact in the
// float64 some emulators compare with; flooring both sides of NextDue ≤ now
// can only list an entry early, and the dispatcher checks Next itself.
func micros(t time.Time) int64 {
	if t.Unix() < 0 {
		return 0
	}
	return t.UnixMicro()
}

// recentKey orders the index newest first.
func recentKey(created time.Time, id string) string {
	return fmt.Sprintf("%s%020d-%s", rkRecent, uint64(math.MaxInt64-micros(created)), outboxKey(id))
}

// conflict is an ErrConflict for what.
func conflict(what string) error {
	return fmt.Errorf("tablestore: outbox %s: %w", what, delivery.ErrConflict)
}

func isStatus(err error, codes ...int) bool {
	st, _, ok := statusOf(err)
	return ok && slices.Contains(codes, st)
}

// Decision implements delivery.Outbox.
func (o *Outbox) Decision(ctx context.Context, findingID string) (delivery.Decision, bool, error) {
	props, _, ok, err := o.read(ctx, "decision", pkDecision, outboxKey(findingID))
	if err != nil || !ok {
		return delivery.Decision{}, false, err
	}
	return decisionOf(props, findingID)
}

// decisionsPerQuery: the service evaluates at most 15 comparisons in a
// $filter; one is the PartitionKey's.
const decisionsPerQuery = 14

// Decisions implements delivery.DecisionsReader: one query per 14 IDs (in
// parallel) instead of a read each.
func (o *Outbox) Decisions(ctx context.Context, ids []string) (map[string]delivery.Decision, error) {
	byRK := map[string][]string{}
	var rks []string
	for _, id := range ids {
		rk := outboxKey(id)
		if _, ok := byRK[rk]; !ok {
			rks = append(rks, rk)
		}
		byRK[rk] = append(byRK[rk], id)
	}
	out := map[string]delivery.Decision{}
	var mu sync.Mutex
	n := (len(rks) + decisionsPerQuery - 1) / decisionsPerQuery
	err := o.s.parallel(ctx, n, func(ctx context.Context, q int) error {
		part := rks[q*decisionsPerQuery : min(len(rks), (q+1)*decisionsPerQuery)]
		var or []string
		for _, rk := range part {
			or = append(or, "RowKey eq "+odataQuote(rk))
		}
		filter := "PartitionKey eq " + odataQuote(pkDecision) + " and (" + strings.Join(or, " or ") + ")"
		return o.s.query(ctx, o.s.outbox, filter, nil, func(raw []byte) error {
			var ent aztables.EDMEntity
			if err := json.Unmarshal(raw, &ent); err != nil {
				return fmt.Errorf("tablestore: outbox decisions: %w", err)
			}
			for _, id := range byRK[ent.RowKey] {
				if d, ok, err := decisionOf(ent.Properties, id); err == nil && ok {
					mu.Lock()
					out[id] = d
					mu.Unlock()
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("tablestore: outbox decisions: %w", err)
	}
	return out, nil
}

// decisionOf reads a decision row; ok is false when it belongs to another
// finding (a hashed row key shared).
func decisionOf(props map[string]any, findingID string) (delivery.Decision, bool, error) {
	if id, _ := props[propID].(string); id != findingID {
		return delivery.Decision{}, false, nil
	}
	d := delivery.Decision{}
	d.Alert, _ = props[propAlert].(string)
	d.Suppressed, _ = props[propSuppressed].(bool)
	if at, ok := props[propAt].(aztables.EDMInt64); ok && at > 0 {
		d.At = time.UnixMicro(int64(at)).UTC()
	}
	return d, true, nil
}

// Decide implements delivery.Outbox: the decisions are inserted in
// entity-group transactions of up to 100; a transaction that meets a
// decision already there is done again one by one, keeping what exists.
func (o *Outbox) Decide(ctx context.Context, ds map[string]delivery.Decision) error {
	ids := make([]string, 0, len(ds))
	for id := range ds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	bodies := make([][]byte, len(ids))
	for i, id := range ids {
		b, err := json.Marshal(aztables.EDMEntity{
			Entity: aztables.Entity{PartitionKey: pkDecision, RowKey: outboxKey(id)},
			Properties: map[string]any{
				propID: id, propAlert: ds[id].Alert, propSuppressed: ds[id].Suppressed,
				propAt: aztables.EDMInt64(micros(ds[id].At)),
			},
		})
		if err != nil {
			return fmt.Errorf("tablestore: outbox decision: %w", err)
		}
		bodies[i] = b
	}
	var txs [][][]byte
	for len(bodies) > 0 {
		n := min(len(bodies), maxTxOps)
		txs = append(txs, bodies[:n])
		bodies = bodies[n:]
	}
	s := o.s
	return s.parallel(ctx, len(txs), func(ctx context.Context, i int) error {
		tx := txs[i]
		if len(tx) > 1 {
			actions := make([]aztables.TransactionAction, len(tx))
			for j, b := range tx {
				actions[j] = aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: b}
			}
			s.stats.transactions.Add(1)
			s.stats.writes.Add(int64(len(tx)))
			_, err := s.transact(ctx, s.outbox, actions)
			var f *txFailure
			if err == nil {
				return nil
			}
			if !errors.As(err, &f) || f.status != http.StatusConflict {
				return fmt.Errorf("tablestore: outbox decisions: %w", err)
			}
		}
		for _, b := range tx {
			s.stats.inserts.Add(1)
			err := s.call(ctx, "outbox decision", func(ctx context.Context) error {
				_, err := s.outbox.AddEntity(ctx, b, nil)
				return err
			})
			if err != nil && !isStatus(err, http.StatusConflict) { // 409: decided before; the first decision stays
				return fmt.Errorf("tablestore: outbox decision: %w", err)
			}
		}
		return nil
	})
}

// Cooldown implements delivery.Outbox.
func (o *Outbox) Cooldown(ctx context.Context, key string) (delivery.Cooldown, error) {
	props, etag, ok, err := o.read(ctx, "cooldown", pkCooldown, outboxKey(key))
	if err != nil || !ok {
		return delivery.Cooldown{}, err
	}
	if k, _ := props[propKey].(string); k != key {
		return delivery.Cooldown{}, nil
	}
	js, _ := props[propJSON].(string)
	var c delivery.Cooldown
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		return delivery.Cooldown{}, fmt.Errorf("tablestore: outbox cooldown %q: %w", key, err)
	}
	c.Version = etag
	return c, nil
}

// SetCooldown implements delivery.Outbox: with c.Version "" it inserts the
// cooldown if there is none; otherwise it replaces the one of that version.
// Either fails with delivery.ErrConflict if another writer got there first.
func (o *Outbox) SetCooldown(ctx context.Context, key string, c delivery.Cooldown) error {
	js, err := json.Marshal(&c)
	if err != nil {
		return fmt.Errorf("tablestore: outbox cooldown: %w", err)
	}
	props := map[string]any{propKey: key, propJSON: string(js), propLast: aztables.EDMInt64(micros(c.Last))}
	_, err = o.write(ctx, "cooldown", pkCooldown, outboxKey(key), props, c.Version)
	return err
}

// Add implements delivery.Outbox: the entry and its index entity are
// inserted in one transaction; added is false if the entry exists. Like
// Memory, it leaves e.Version alone: Get the entry to write it.
func (o *Outbox) Add(ctx context.Context, e *delivery.Entry) (bool, error) {
	if e == nil || e.Alert == nil {
		return false, errors.New("tablestore: outbox: an entry without an alert")
	}
	s := o.s
	nonce := newNonce()
	body, err := encodeEntry(e, nonce)
	if err != nil {
		return false, err
	}
	index, err := json.Marshal(aztables.EDMEntity{
		Entity:     aztables.Entity{PartitionKey: pkAlert, RowKey: recentKey(e.Alert.Created, e.Alert.ID)},
		Properties: map[string]any{propID: e.Alert.ID},
	})
	if err != nil {
		return false, err
	}
	actions := []aztables.TransactionAction{
		{ActionType: aztables.TransactionTypeAdd, Entity: body},
		{ActionType: aztables.TransactionTypeAdd, Entity: index},
	}
	s.stats.transactions.Add(1)
	s.stats.writes.Add(2)
	_, err = s.transact(ctx, s.outbox, actions)
	var f *txFailure
	if errors.As(err, &f) && f.status == http.StatusConflict {
		// There already: added by another attempt or instance — or by an
		// earlier try of this one whose answer was lost.
		props, _, ok, err := o.read(ctx, "entry", pkAlert, rkEntry+outboxKey(e.Alert.ID))
		if err != nil {
			return false, err
		}
		return ok && props[propNonce] == nonce, nil
	}
	if err != nil {
		return false, fmt.Errorf("tablestore: outbox add %s: %w", e.Alert.ID, err)
	}
	return true, nil
}

// Get implements delivery.Outbox: nil if there is no such entry.
func (o *Outbox) Get(ctx context.Context, id string) (*delivery.Entry, error) {
	props, etag, ok, err := o.read(ctx, "entry", pkAlert, rkEntry+outboxKey(id))
	if err != nil || !ok {
		return nil, err
	}
	if got, _ := props[propID].(string); got != id {
		return nil, nil
	}
	e, err := decodeEntry(props)
	if err != nil {
		return nil, fmt.Errorf("tablestore: outbox entry %s: %w", id, err)
	}
	e.Version = etag
	return e, nil
}

// Put implements delivery.Outbox: it replaces the entry of version
// e.Version (delivery.ErrConflict if it changed or is not there) and sets
// e.Version to the new one.
func (o *Outbox) Put(ctx context.Context, e *delivery.Entry) error {
	if e == nil || e.Alert == nil {
		return errors.New("tablestore: outbox: an entry without an alert")
	}
	if e.Version == "" {
		return conflict("entry " + e.Alert.ID + ": no version")
	}
	props, err := entryProps(e)
	if err != nil {
		return err
	}
	etag, err := o.write(ctx, "entry "+e.Alert.ID, pkAlert, rkEntry+outboxKey(e.Alert.ID), props, e.Version)
	if err != nil {
		return err
	}
	e.Version = etag
	return nil
}

// Due implements delivery.Outbox: the entries with a pending receiver due
// at or before now, oldest (by the alert's Created, then ID) first. A
// server-side filter on Pending and NextDue finds them, reading only their
// IDs and creation times; the first limit are then read in full.
func (o *Outbox) Due(ctx context.Context, now time.Time, limit int) ([]*delivery.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s' and %s eq true and %s le %dL",
		pkAlert, rkEntry, rkEntry[:1]+".", propPending, propNextDue, micros(now))
	type due struct {
		id      string
		created int64
	}
	var ds []due
	sel := propID + "," + propCreated
	err := o.s.query(ctx, o.s.outbox, filter, &sel, func(raw []byte) error {
		var ent aztables.EDMEntity
		if err := json.Unmarshal(raw, &ent); err != nil {
			return err
		}
		id, _ := ent.Properties[propID].(string)
		created, _ := ent.Properties[propCreated].(aztables.EDMInt64)
		if id != "" {
			ds = append(ds, due{id, int64(created)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tablestore: outbox due: %w", err)
	}
	slices.SortFunc(ds, func(a, b due) int { return cmp.Or(cmp.Compare(a.created, b.created), cmp.Compare(a.id, b.id)) })
	ids := make([]string, 0, min(len(ds), limit))
	for _, d := range ds[:min(len(ds), limit)] {
		ids = append(ids, d.id)
	}
	return o.getAll(ctx, ids, func(e *delivery.Entry) bool { // still due: not changed since the query
		for _, a := range e.Receivers {
			if a.State == delivery.Pending && !a.Next.After(now) {
				return true
			}
		}
		return false
	})
}

// Recent implements delivery.Outbox: the newest entries (by the alert's
// Created), newest first, through the index.
func (o *Outbox) Recent(ctx context.Context, limit int) ([]*delivery.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s'", pkAlert, rkRecent, rkRecent[:1]+".")
	sel := propID
	var ids []string
	s := o.s
	var nextPK, nextRK *string
	for len(ids) < limit {
		top := int32(min(limit-len(ids), 1000))
		s.stats.queries.Add(1)
		var page aztables.ListEntitiesResponse
		err := s.call(ctx, "query", func(ctx context.Context) error {
			var err error
			pager := s.outbox.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Select: &sel, Top: &top,
				NextPartitionKey: nextPK, NextRowKey: nextRK})
			page, err = pager.NextPage(ctx)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("tablestore: outbox recent: %w", err)
		}
		for _, raw := range page.Entities {
			var ent aztables.EDMEntity
			if err := json.Unmarshal(raw, &ent); err != nil {
				return nil, fmt.Errorf("tablestore: outbox recent: %w", err)
			}
			if id, _ := ent.Properties[propID].(string); id != "" && len(ids) < limit {
				ids = append(ids, id)
			}
		}
		nextPK, nextRK = page.NextPartitionKey, page.NextRowKey
		if (nextPK == nil || *nextPK == "") && (nextRK == nil || *nextRK == "") {
			break
		}
	}
	return o.getAll(ctx, ids, nil)
}

// getAll reads entries in parallel, in the order of ids, leaving out those
// that are gone or that keep rejects.
func (o *Outbox) getAll(ctx context.Context, ids []string, keep func(*delivery.Entry) bool) ([]*delivery.Entry, error) {
	got := make([]*delivery.Entry, len(ids))
	var mu sync.Mutex
	err := o.s.parallel(ctx, len(ids), func(ctx context.Context, i int) error {
		e, err := o.Get(ctx, ids[i])
		if err != nil {
			return err
		}
		mu.Lock()
		got[i] = e
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*delivery.Entry, 0, len(got))
	for _, e := range got {
		if e != nil && (keep == nil || keep(e)) {
			out = append(out, e)
		}
	}
	return out, nil
}

// read reads one entity of the outbox table: its properties and ETag, ok
// false if it does not exist.
func (o *Outbox) read(ctx context.Context, what, pk, rk string) (map[string]any, string, bool, error) {
	s := o.s
	s.stats.reads.Add(1)
	var resp aztables.GetEntityResponse
	err := s.call(ctx, "outbox read "+what, func(ctx context.Context) error {
		var err error
		resp, err = s.outbox.GetEntity(ctx, pk, rk, nil)
		return err
	})
	if isStatus(err, http.StatusNotFound) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("tablestore: outbox read %s: %w", what, err)
	}
	var ent aztables.EDMEntity
	if err := json.Unmarshal(resp.Value, &ent); err != nil {
		return nil, "", false, fmt.Errorf("tablestore: outbox read %s: %w", what, err)
	}
	etag := string(resp.ETag)
	if etag == "" {
		etag = ent.ETag
	}
	return ent.Properties, etag, true, nil
}

// write inserts an entity (etag "": only if there is none) or replaces the
// one of that ETag, and returns the new ETag; delivery.ErrConflict if
// another writer got there first. props gets a fresh nonce, so that a
// retry after a lost answer that meets its own write (409, 412) succeeds.
func (o *Outbox) write(ctx context.Context, what, pk, rk string, props map[string]any, etag string) (string, error) {
	s := o.s
	nonce := newNonce()
	props[propNonce] = nonce
	body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: rk}, Properties: props})
	if err != nil {
		return "", fmt.Errorf("tablestore: outbox %s: %w", what, err)
	}
	s.stats.inserts.Add(1)
	attempts := 0
	var newETag azcore.ETag
	err = s.call(ctx, "outbox write "+what, func(ctx context.Context) error {
		attempts++
		if etag == "" {
			resp, err := s.outbox.AddEntity(ctx, body, nil)
			newETag = resp.ETag
			return err
		}
		m := azcore.ETag(etag)
		resp, err := s.outbox.UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeReplace, IfMatch: &m})
		newETag = resp.ETag
		return err
	})
	if isStatus(err, http.StatusConflict, http.StatusPreconditionFailed, http.StatusNotFound) {
		s.stats.conflicts.Add(1)
		if attempts > 1 {
			// Maybe an earlier try of this write, whose answer was lost.
			got, cur, ok, rerr := o.read(ctx, what, pk, rk)
			if rerr != nil {
				return "", rerr
			}
			if ok && got[propNonce] == nonce {
				return cur, nil
			}
		}
		return "", conflict(what)
	}
	if err != nil {
		return "", fmt.Errorf("tablestore: outbox write %s: %w", what, err)
	}
	if newETag == "" { // not given: read it
		_, cur, ok, err := o.read(ctx, what, pk, rk)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", conflict(what)
		}
		return cur, nil
	}
	return string(newETag), nil
}

// entryProps returns the properties of an entry's entity.
func entryProps(e *delivery.Entry) (map[string]any, error) {
	js, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("tablestore: outbox entry %s: %w", e.Alert.ID, err)
	}
	next := int64(math.MaxInt64)
	for _, a := range e.Receivers {
		if a != nil && a.State == delivery.Pending {
			next = min(next, micros(a.Next))
		}
	}
	props := map[string]any{
		propID:      e.Alert.ID,
		propRule:    e.Alert.Rule,
		propCreated: aztables.EDMInt64(micros(e.Alert.Created)),
		propPending: next != math.MaxInt64,
		propNextDue: aztables.EDMInt64(next),
		propDone:    aztables.EDMInt64(micros(e.Done())),
	}
	if err := putChunks(props, packBytes(js, true)); err != nil {
		return nil, fmt.Errorf("tablestore: outbox entry %s: %w", e.Alert.ID, err)
	}
	return props, nil
}

// encodeEntry returns the entity of a new entry.
func encodeEntry(e *delivery.Entry, nonce string) ([]byte, error) {
	props, err := entryProps(e)
	if err != nil {
		return nil, err
	}
	props[propNonce] = nonce
	return json.Marshal(aztables.EDMEntity{
		Entity:     aztables.Entity{PartitionKey: pkAlert, RowKey: rkEntry + outboxKey(e.Alert.ID)},
		Properties: props,
	})
}

func decodeEntry(props map[string]any) (*delivery.Entry, error) {
	data, err := getChunks(props)
	if err != nil {
		return nil, err
	}
	js, err := unpackBytes(data)
	if err != nil {
		return nil, err
	}
	e := &delivery.Entry{}
	if err := json.Unmarshal(js, e); err != nil {
		return nil, err
	}
	if e.Alert == nil {
		return nil, errors.New("entry has no alert")
	}
	if e.Receivers == nil {
		e.Receivers = map[string]*delivery.Attempt{}
	}
	for name, a := range e.Receivers {
		if a == nil {
			delete(e.Receivers, name)
		}
	}
	return e, nil
}

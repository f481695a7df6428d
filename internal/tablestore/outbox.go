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
// shared by every instance on the same tables. Its rows are spread over
// outboxShards partitions, "o0" to "o3", by delivery.Shard (the vault of a
// finding's group) hashed: a cooldown key's rows, its findings' decisions
// and the alerts they make share a partition, so that deciding a batch's
// findings is one entity-group transaction or a few per partition (see
// outbox_batch.go). In each partition:
//
//   - RowKey "~head": the partition's head, Seq the number of its last log
//     entry: where an instance's view starts. Every transaction that
//     writes cooldowns or decisions moves it on.
//   - RowKey "l-" and Seq (19 digits): a log entry, what one transaction
//     changed (cooldowns and decisions, deflated JSON in D0..Dn-1) and when
//     (At). Every transaction that writes cooldowns or decisions inserts
//     the entry after the one its view was at, which fails if another
//     transaction wrote it first: that orders, and guards, every
//     read-modify-write of them. Instances fold the entries since they
//     last looked into their view of the partition, reading them with one
//     range query of row keys (an index range in Azure Table Storage, not
//     a scan of the partition). Prune deletes entries older than logKeep;
//     a view that has not looked for resyncAfter reads the head first,
//     and starts again from it if the entries it missed are gone.
//   - RowKey "c-" and the cooldown key: the key (Key), the cooldown as JSON
//     (J) and its last alert's time (Last, unix microseconds): cooldown,
//     group wait and inhibition mark rows.
//   - RowKey "d-" and the finding ID: what delivery decided about the
//     finding (Alert, Suppressed, Routine), the fingerprint of its facts
//     then (Facts) and when (At, unix microseconds); on a routine
//     decision, what was not alerted (Of, outbox_routine.go). Inserted
//     once: the first decision stays.
//   - RowKey "a-" and the alert ID: the entry, as JSON (deflated when
//     long) in binary properties D0..Dn-1, and beside it what queries
//     filter on, rewritten on every write: Pending (some receiver waits)
//     and NextDue (the earliest Next of the waiting receivers, unix
//     microseconds), Done (when the last receiver was done with it, unix
//     microseconds; 0 while one waits), with ID, Rule and Created. Written
//     with optimistic concurrency: the entry's Version is its ETag.
//   - RowKey "r-", Created inverted and the alert ID: the index Recent
//     reads, newest first; inserted with the entry, never changed; Prune
//     deletes it with the entry.
//
// Prune goes by At, Done and Last.
//
// Keys that are not plain (letters, digits and . _ : = -; at most 200
// characters) are stored under "~" and a SHA-256 of the key.
//
// Entries carry a fresh nonce on every write, so that a write whose answer
// was lost and that was retried recognises its own entity instead of
// reporting a conflict with itself; a commit whose answer was lost and
// that was retried fails on the head it moved itself, and the next round
// finds its own decisions.
type Outbox struct {
	s       *Store
	mu      sync.Mutex
	parts   map[string]*outboxPart
	entries *entryCache
}

var _ delivery.Outbox = (*Outbox)(nil)

// Outbox returns the store's outbox (one per store: it holds the
// instance's view of the outbox's partitions).
func (s *Store) Outbox() *Outbox {
	s.outboxOnce.Do(func() { s.outboxV = &Outbox{s: s, parts: map[string]*outboxPart{}, entries: newEntryCache()} })
	return s.outboxV
}

// Row key prefixes and properties of the outbox table.
const (
	rkEntry  = "a-"
	rkRecent = "r-"

	propID         = "ID"
	propAlert      = "Alert"
	propSuppressed = "Suppressed"
	propRoutine    = "Routine"
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

// allPKs are the outbox's partitions.
func allPKs() []string {
	out := make([]string, outboxShards)
	for i := range out {
		out[i] = shardPKn(i)
	}
	return out
}

// Decision implements delivery.Outbox (tools; the dispatcher loads
// decisions with their shard): a read in every partition.
func (o *Outbox) Decision(ctx context.Context, findingID string) (delivery.Decision, bool, error) {
	got, err := o.Decisions(ctx, []string{findingID})
	if err != nil {
		return delivery.Decision{}, false, err
	}
	d, ok := got[findingID]
	return d, ok, nil
}

// Decisions implements delivery.DecisionsReader (tools): one query per 14
// IDs and partition, in parallel.
func (o *Outbox) Decisions(ctx context.Context, ids []string) (map[string]delivery.Decision, error) {
	byRK := map[string][]string{}
	var rks []string
	for _, id := range ids {
		rk := rkDecision + outboxKey(id)
		if _, ok := byRK[rk]; !ok {
			rks = append(rks, rk)
		}
		byRK[rk] = append(byRK[rk], id)
	}
	out := map[string]delivery.Decision{}
	var mu sync.Mutex
	type job struct {
		pk  string
		rks []string
	}
	var jobs []job
	for _, pk := range allPKs() {
		for i := 0; i < len(rks); i += keysPerQuery {
			jobs = append(jobs, job{pk, rks[i:min(len(rks), i+keysPerQuery)]})
		}
	}
	err := o.s.parallel(ctx, len(jobs), func(ctx context.Context, q int) error {
		var or []string
		for _, rk := range jobs[q].rks {
			or = append(or, "RowKey eq "+odataQuote(rk))
		}
		filter := "PartitionKey eq " + odataQuote(jobs[q].pk) + " and (" + strings.Join(or, " or ") + ")"
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
	d.Routine, _ = props[propRoutine].(bool)
	if at, ok := props[propAt].(aztables.EDMInt64); ok && at > 0 {
		d.At = time.UnixMicro(int64(at)).UTC()
	}
	d.Facts, _ = props[propFacts].(string)
	d.Of = briefOf(props)
	return d, true, nil
}

// decisionEntity is a decision's row in partition pk.
func decisionEntity(pk, id string, d delivery.Decision) aztables.EDMEntity {
	ent := aztables.EDMEntity{
		Entity: aztables.Entity{PartitionKey: pk, RowKey: rkDecision + outboxKey(id)},
		Properties: map[string]any{
			propID: id, propAlert: d.Alert, propSuppressed: d.Suppressed, propRoutine: d.Routine,
			propAt: aztables.EDMInt64(micros(d.At)), propFacts: d.Facts,
		},
	}
	if d.Of != nil {
		if js := briefJSON(d.Of); js != "" {
			ent.Properties[propOf] = js
		}
	}
	return ent
}

// Decide implements delivery.Outbox (tools and tests; the dispatcher
// commits decisions with its units): the decisions not made yet are
// inserted in shard "", through the shard's head and log like any commit.
func (o *Outbox) Decide(ctx context.Context, ds map[string]delivery.Decision) error {
	ids := make([]string, 0, len(ds))
	for id := range ds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for try := 0; ; try++ {
		snap := &delivery.Snapshot{}
		q := delivery.Query{}
		for _, id := range ids {
			q.Decisions = append(q.Decisions, delivery.Ref{Key: id})
		}
		if err := o.Load(ctx, snap, q); err != nil {
			return err
		}
		var units []*delivery.Unit
		u := &delivery.Unit{Decisions: map[string]delivery.Decision{}}
		for _, id := range ids {
			if _, ok := snap.Decisions[id]; ok {
				continue // decided before: the first decision stays
			}
			if u.Rows() == delivery.MaxUnitRows {
				units = append(units, u)
				u = &delivery.Unit{Decisions: map[string]delivery.Decision{}}
			}
			u.Decisions[id] = ds[id]
		}
		if len(u.Decisions) > 0 {
			units = append(units, u)
		}
		if len(units) == 0 {
			return nil
		}
		errs, err := o.Commit(ctx, snap, units)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
			return nil
		}
		if try == 50 {
			return conflict("decisions: too many concurrent writers")
		}
	}
}

// Cooldown implements delivery.Outbox (tools and tests): the cooldown of
// key in shard "", its Version the row's ETag.
func (o *Outbox) Cooldown(ctx context.Context, key string) (delivery.Cooldown, error) {
	props, etag, ok, err := o.read(ctx, "cooldown", shardPK(""), rkCooldown+outboxKey(key))
	if err != nil || !ok {
		return delivery.Cooldown{}, err
	}
	c, mine, err := cooldownOf(props, key)
	if err != nil || !mine {
		return delivery.Cooldown{}, err
	}
	c.Version = etag
	return c, nil
}

// SetCooldown implements delivery.Outbox (tools and tests): with c.Version
// "" it inserts the cooldown if there is none; otherwise it replaces the
// one of that version (the row's ETag), through the shard's head and log
// like any commit. Either fails with delivery.ErrConflict if another
// writer got there first.
func (o *Outbox) SetCooldown(ctx context.Context, key string, c delivery.Cooldown) error {
	pk := shardPK("")
	for try := 0; try < 50; try++ {
		snap := &delivery.Snapshot{}
		if err := o.Load(ctx, snap, delivery.Query{Keys: []delivery.Ref{{Key: key}}}); err != nil {
			return err
		}
		// The row as it is now: read after the head, so that a writer
		// changing it since moves the head and fails the commit.
		props, etag, ok, err := o.read(ctx, "cooldown", pk, rkCooldown+outboxKey(key))
		if err != nil {
			return err
		}
		if ok != (c.Version != "") || ok && etag != c.Version {
			return conflict("cooldown " + key)
		}
		w := c
		w.Version = ""
		if ok {
			w.Version = "x"
		}
		errs, err := o.Commit(ctx, snap, []*delivery.Unit{{Cooldowns: map[string]delivery.Cooldown{key: w}}})
		if err != nil {
			return err
		}
		if errs[0] == nil {
			return nil
		}
		// Maybe an earlier try of this very commit, whose answer was lost:
		// the row holds what it wrote.
		props, _, ok, err = o.read(ctx, "cooldown", pk, rkCooldown+outboxKey(key))
		if err != nil {
			return err
		}
		if cur, mine, _ := cooldownOf(props, key); ok && mine && sameCooldown(cur, c) {
			return nil
		}
	}
	return conflict("cooldown " + key + ": too many concurrent writers")
}

func sameCooldown(a, b delivery.Cooldown) bool {
	a.Version, b.Version = "", ""
	ja, _ := json.Marshal(&a)
	jb, _ := json.Marshal(&b)
	return string(ja) == string(jb)
}

// Add implements delivery.Outbox: the entry and its index row are
// inserted in one transaction in the entry's partition; added is false if
// the entry exists. Like Memory, it leaves e.Version alone: Get the entry
// to write it.
func (o *Outbox) Add(ctx context.Context, e *delivery.Entry) (bool, error) {
	if e == nil || e.Alert == nil {
		return false, errors.New("tablestore: outbox: an entry without an alert")
	}
	s := o.s
	pk := shardPK(delivery.EntryShard(e))
	nonce := newNonce()
	body, err := encodeEntry(e, pk, nonce)
	if err != nil {
		return false, err
	}
	index, err := json.Marshal(indexEntity(pk, e))
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
		props, _, ok, err := o.read(ctx, "entry", pk, rkEntry+outboxKey(e.Alert.ID))
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

// indexEntity is an entry's row in the index Recent reads.
func indexEntity(pk string, e *delivery.Entry) aztables.EDMEntity {
	return aztables.EDMEntity{
		Entity:     aztables.Entity{PartitionKey: pk, RowKey: recentKey(e.Alert.Created, e.Alert.ID)},
		Properties: map[string]any{propID: e.Alert.ID},
	}
}

// Get implements delivery.Outbox: nil if there is no such entry. An ID
// alone does not say the entry's partition: it is read in every one (the
// sender reads entries with their shard, GetAll).
func (o *Outbox) Get(ctx context.Context, id string) (*delivery.Entry, error) {
	got := make([]*delivery.Entry, outboxShards)
	err := o.s.parallel(ctx, outboxShards, func(ctx context.Context, i int) error {
		e, err := o.getIn(ctx, shardPKn(i), id)
		got[i] = e
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, e := range got {
		if e != nil {
			return e, nil
		}
	}
	return nil, nil
}

// getIn reads an entry of partition pk.
func (o *Outbox) getIn(ctx context.Context, pk, id string) (*delivery.Entry, error) {
	props, etag, ok, err := o.read(ctx, "entry", pk, rkEntry+outboxKey(id))
	if err != nil || !ok {
		return nil, err
	}
	if got, _ := props[propID].(string); got != id {
		return nil, nil
	}
	e, err := o.entry(pk, rkEntry+outboxKey(id), etag, props)
	if err != nil {
		return nil, fmt.Errorf("tablestore: outbox entry %s: %w", id, err)
	}
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
	etag, err := o.write(ctx, "entry "+e.Alert.ID, shardPK(delivery.EntryShard(e)), rkEntry+outboxKey(e.Alert.ID), props, e.Version)
	if err != nil {
		return err
	}
	e.Version = etag
	o.keep(shardPK(delivery.EntryShard(e)), e, sentBytes(props))
	return nil
}

// Due implements delivery.Outbox: the entries with a pending receiver due
// at or before now, oldest (by the alert's Created, then ID) first, at
// most limit. A query per partition, in parallel, filtering on Pending
// and NextDue, lists the due rows without their bodies (row key, ID,
// Created and ETag); the first limit of them are taken whole from the
// entries this instance keeps decoded (entryCache) where the ETag is the
// same, and the rest are read, 14 to a query. Senders list the same due
// entries round after round while they wait (a group or inhibition wait,
// a receiver that is down, an alert storm's backlog): reading them whole
// each time made the table serialize, and the instance decode, a backlog
// of hundreds of entries every round.
func (o *Outbox) Due(ctx context.Context, now time.Time, limit int) ([]*delivery.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	type row struct {
		pk, rk, id, etag string
		created          int64
	}
	pks := allPKs()
	got := make([][]row, len(pks))
	sel := "PartitionKey,RowKey," + propID + "," + propCreated
	err := o.s.parallel(ctx, len(pks), func(ctx context.Context, i int) error {
		filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s' and %s eq true and %s le %dL",
			pks[i], rkEntry, rkEntry[:1]+".", propPending, propNextDue, micros(now))
		return o.s.query(ctx, o.s.outbox, filter, &sel, func(raw []byte) error {
			var ent aztables.EDMEntity
			if err := json.Unmarshal(raw, &ent); err != nil {
				return err
			}
			id, _ := ent.Properties[propID].(string)
			created, _ := ent.Properties[propCreated].(aztables.EDMInt64)
			if id == "" {
				return fmt.Errorf("entry %s: no %s", ent.RowKey, propID)
			}
			got[i] = append(got[i], row{pk: pks[i], rk: ent.RowKey, id: id, etag: ent.ETag, created: int64(created)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("tablestore: outbox due: %w", err)
	}
	rows := slices.Concat(got...)
	slices.SortFunc(rows, func(a, b row) int { return cmp.Or(cmp.Compare(a.created, b.created), cmp.Compare(a.id, b.id)) })
	rows = rows[:min(len(rows), limit)]
	out := make([]*delivery.Entry, 0, len(rows))
	var missing []entryRow
	for _, r := range rows {
		if e, ok := o.entries.get(r.pk+"/"+r.rk, r.etag); ok {
			out = append(out, e)
			continue
		}
		missing = append(missing, entryRow{pk: r.pk, id: r.id})
	}
	if len(missing) > 0 {
		var mu sync.Mutex
		err := o.entryQueriesIn(ctx, missing, nil, func(id string, ent *aztables.EDMEntity) error {
			e, err := o.entry(ent.PartitionKey, ent.RowKey, ent.ETag, ent.Properties)
			if err != nil {
				return fmt.Errorf("entry %s: %w", ent.RowKey, err)
			}
			mu.Lock()
			out = append(out, e)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("tablestore: outbox due: %w", err)
		}
	}
	// Still due as read whole (it may have changed since it was listed).
	out = slices.DeleteFunc(out, func(e *delivery.Entry) bool {
		for _, a := range e.Receivers {
			if a.State == delivery.Pending && !a.Next.After(now) {
				return false
			}
		}
		return true
	})
	slices.SortFunc(out, func(a, b *delivery.Entry) int {
		return cmp.Or(cmp.Compare(micros(a.Alert.Created), micros(b.Alert.Created)), cmp.Compare(a.Alert.ID, b.Alert.ID))
	})
	return out, nil
}

// Recent implements delivery.Outbox: the newest entries (by the alert's
// Created), newest first, through each partition's index.
func (o *Outbox) Recent(ctx context.Context, limit int) ([]*delivery.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	type ref struct{ pk, rk, id string }
	pks := allPKs()
	got := make([][]ref, len(pks))
	s := o.s
	err := s.parallel(ctx, len(pks), func(ctx context.Context, i int) error {
		filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s'", pks[i], rkRecent, rkRecent[:1]+".")
		sel := "PartitionKey,RowKey," + propID
		var nextPK, nextRK *string
		for len(got[i]) < limit {
			top := int32(min(limit-len(got[i]), 1000))
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
				return err
			}
			for _, raw := range page.Entities {
				var ent aztables.EDMEntity
				if err := json.Unmarshal(raw, &ent); err != nil {
					return err
				}
				if id, _ := ent.Properties[propID].(string); id != "" && len(got[i]) < limit {
					got[i] = append(got[i], ref{pks[i], ent.RowKey, id})
				}
			}
			nextPK, nextRK = page.NextPartitionKey, page.NextRowKey
			if (nextPK == nil || *nextPK == "") && (nextRK == nil || *nextRK == "") {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tablestore: outbox recent: %w", err)
	}
	refs := slices.Concat(got...)
	slices.SortFunc(refs, func(a, b ref) int { return cmp.Or(strings.Compare(a.rk, b.rk), strings.Compare(a.pk, b.pk)) })
	refs = refs[:min(len(refs), limit)]
	es := make([]*delivery.Entry, len(refs))
	err = s.parallel(ctx, len(refs), func(ctx context.Context, i int) error {
		e, err := o.getIn(ctx, refs[i].pk, refs[i].id)
		es[i] = e
		return err
	})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(es, func(e *delivery.Entry) bool { return e == nil }), nil
}

// read reads one entity of the outbox table: its properties and ETag, ok
// false if it does not exist.
func (o *Outbox) read(ctx context.Context, what, pk, rk string) (map[string]any, string, bool, error) {
	resp, found, err := o.s.get(ctx, o.s.outbox, "outbox read "+what, pk, rk)
	if err != nil {
		return nil, "", false, fmt.Errorf("tablestore: outbox read %s: %w", what, err)
	}
	if !found {
		return nil, "", false, nil
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

// encodeEntry returns an entry's entity in partition pk.
func encodeEntry(e *delivery.Entry, pk, nonce string) ([]byte, error) {
	props, err := entryProps(e)
	if err != nil {
		return nil, err
	}
	props[propNonce] = nonce
	return json.Marshal(aztables.EDMEntity{
		Entity:     aztables.Entity{PartitionKey: pk, RowKey: rkEntry + outboxKey(e.Alert.ID)},
		Properties: props,
	})
}

// entry returns the entry of row (in partition pk) from its properties,
// with Version etag: decoded, or as decoded the last time the row had
// that ETag (entryCache).
func (o *Outbox) entry(pk, row, etag string, props map[string]any) (*delivery.Entry, error) {
	key := pk + "/" + row
	if e, ok := o.entries.get(key, etag); ok {
		return e, nil
	}
	e, size, err := decodeEntry(props)
	if err != nil {
		return nil, err
	}
	o.entries.put(key, etag, e, memSize(size))
	e.Version = etag
	return e, nil
}

// decodeEntry decodes an entry's entity, and returns the length of its
// JSON.
func decodeEntry(props map[string]any) (*delivery.Entry, int, error) {
	data, err := getChunks(props)
	if err != nil {
		return nil, 0, err
	}
	js, err := unpackBytes(data)
	if err != nil {
		return nil, 0, err
	}
	e := &delivery.Entry{}
	if err := json.Unmarshal(js, e); err != nil {
		return nil, 0, err
	}
	if e.Alert == nil {
		return nil, 0, errors.New("entry has no alert")
	}
	if e.Receivers == nil {
		e.Receivers = map[string]*delivery.Attempt{}
	}
	for name, a := range e.Receivers {
		if a == nil {
			delete(e.Receivers, name)
		}
	}
	return e, len(js), nil
}

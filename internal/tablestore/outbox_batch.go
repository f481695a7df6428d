package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/delivery"
)

// The outbox's shards, each one table partition ("o0" to "o3"): a
// delivery.Shard (the vault of a finding's group, "" for findings not
// grouped by vault) is hashed onto one. A batch's findings land in at most
// outboxShards partitions, so deciding them costs a query and a
// transaction or two per partition, whatever their number; four partitions
// give the outbox four times one partition's throughput (2,000 entities a
// second each, Microsoft's target).
const outboxShards = 4

// viewRows bounds the rows an instance keeps in its view of one shard
// (cooldowns and decisions); past it the least recently used half is
// forgotten (and read again, or assumed absent and checked, when needed).
const viewRows = 40_000

// logKeep is how long a shard's log entries are kept.
const logKeep = 15 * time.Minute

// resyncAfter is how long a view may go without reading its shard before
// it starts afresh from the head (outboxPart.synced): a catch-up reads only
// the log entries after the view's, so it must come while every entry
// written since the last one is still kept. A third of logKeep leaves the
// rest for instances' clocks to disagree and a slow query to run.
var resyncAfter = logKeep / 3

// listRows bounds the cooldown row keys a view lists when it starts at a
// shard that has a head, to know which exist (outboxPart.complete), and
// listDecisions the decisions it reads then; maxPresent bounds the row
// keys a view keeps without their rows.
var (
	listRows      = 10_000
	listDecisions = 2_000
	maxPresent    = 100_000
)

// Row keys of the rows of a shard partition besides entries (rkEntry) and
// their index (rkRecent).
const (
	rkCooldown = "c-"
	rkDecision = "d-"
	rkLog      = "l-"
	rkHead     = "~head"

	propSeq   = "Seq"
	propFacts = "Facts"
)

// shardPK is the partition of a delivery shard.
func shardPK(shard string) string {
	h := fnv.New32a()
	h.Write([]byte(shard))
	return shardPKn(int(h.Sum32() % outboxShards))
}

func shardPKn(i int) string { return "o" + strconv.Itoa(i) }

func logKey(seq int64) string { return fmt.Sprintf("%s%019d", rkLog, seq) }

// A shard's view: the cooldowns and decisions this instance knows, as of
// the shard's log entry seq.
type outboxPart struct {
	pk string

	mu     sync.Mutex
	loaded bool
	seq    int64
	exists bool // the head exists
	cool   map[string]*viewRow
	dec    map[string]*viewDec
	tick   int64
	// complete: the view knows which cooldown rows of the shard exist —
	// those it holds (cool) and those it knows only by row key (present:
	// listed when it started, or forgotten by evict) — so a key it does
	// not know is absent, without reading it. A view starts complete at
	// a shard with no head (no commit wrote to it yet: cooldowns are
	// written only by commits, which always write the head, and Prune
	// never deletes the head), or by listing the shard's cooldown row
	// keys when they are at most listRows; it stays so while it applies
	// every log entry in turn. A reset ends it, and so does present
	// growing past maxPresent.
	complete bool
	present  map[string]struct{}
	// caught is when a catch-up last brought the view up to the shard's
	// last log entry: a Load within reuseCatchUp of it takes the view's
	// head as its snapshot's, without a query of its own. synced is when
	// the view last read the shard (its head, or its log entries): past
	// resyncAfter it starts afresh.
	caught, synced time.Time
	// quiet: the last catch-up found no entry after the view's. The next
	// one first reads the entry that would follow (a point read, which
	// Azurite serves by walking one partition where a query walks the
	// whole table); only if it exists does it query the entries.
	quiet bool
	// gen counts the log entries (and own commits) applied, resets the
	// times the view was forgotten: a row read outside the lock is older
	// than the view if an entry applied meanwhile changed it (viewRow.gen),
	// and of no known entry if the view was reset meanwhile.
	gen, resets int64
}

type viewRow struct {
	c       delivery.Cooldown // Version "x" when present
	present bool
	used    int64
	gen     int64 // the entry applied that set it (0: read)
}

type viewDec struct {
	d    delivery.Decision
	used int64
}

func newPart(pk string) *outboxPart {
	return &outboxPart{pk: pk, cool: map[string]*viewRow{}, dec: map[string]*viewDec{}}
}

// reset forgets everything (a gap in the log: what it missed is unknown).
func (p *outboxPart) reset() {
	p.cool, p.dec = map[string]*viewRow{}, map[string]*viewDec{}
	p.resets++
	p.complete, p.present = false, nil
}

// known reports whether the view knows key's cooldown row: it holds it,
// or, complete, knows it is absent.
func (p *outboxPart) known(key string) bool {
	if _, ok := p.cool[key]; ok {
		return true
	}
	if !p.complete {
		return false
	}
	_, exists := p.present[rkCooldown+outboxKey(key)]
	return !exists
}

// setCooldown sets a row: from an entry applied (gen, the view's gen
// then) or read (gen 0).
func (p *outboxPart) setCooldown(key string, c delivery.Cooldown, present bool, gen int64) {
	p.tick++
	c.Version = ""
	if present {
		c.Version = "x"
	}
	p.cool[key] = &viewRow{c: c, present: present, used: p.tick, gen: gen}
	p.evict()
}

func (p *outboxPart) setDecision(id string, d delivery.Decision) {
	d.Of = nil // deciding needs only that it exists: the view stays small
	p.tick++
	p.dec[id] = &viewDec{d: d, used: p.tick}
	p.evict()
}

func (p *outboxPart) evict() {
	if len(p.cool)+len(p.dec) <= viewRows {
		return
	}
	ticks := make([]int64, 0, len(p.cool)+len(p.dec))
	for _, r := range p.cool {
		ticks = append(ticks, r.used)
	}
	for _, d := range p.dec {
		ticks = append(ticks, d.used)
	}
	slices.Sort(ticks)
	cut := ticks[len(ticks)/2]
	for k, r := range p.cool {
		if r.used < cut {
			delete(p.cool, k)
			if r.present && p.complete {
				p.present[rkCooldown+outboxKey(k)] = struct{}{} // it exists: read it when needed
			}
		}
	}
	if len(p.present) > maxPresent {
		p.complete, p.present = false, nil
	}
	for k, d := range p.dec {
		if d.used < cut {
			delete(p.dec, k)
		}
	}
}

// apply folds a log entry (or this instance's own commit) into the view.
func (p *outboxPart) apply(le *logEntry) {
	p.gen++
	for _, c := range le.C {
		p.setCooldown(c.Key, c.C, true, p.gen)
	}
	for _, d := range le.D {
		p.setDecision(d.ID, d.D)
	}
}

// logEntry is what one transaction changed of a shard's cooldowns and
// decisions: instances fold it into their views.
type logEntry struct {
	C []logCooldown `json:"c,omitempty"`
	D []logDecision `json:"d,omitempty"`
}

type logCooldown struct {
	Key string            `json:"k"`
	C   delivery.Cooldown `json:"v"`
}

type logDecision struct {
	ID string            `json:"id"`
	D  delivery.Decision `json:"v"`
}

// headTok is a shard's head as a snapshot read it: the last log entry
// (seq) its commits follow.
type headTok struct {
	seq    int64
	exists bool
}

// snapToks are the shard heads a snapshot was read under.
type snapToks struct {
	mu   sync.Mutex
	toks map[string]*headTok
}

func toks(s *delivery.Snapshot) *snapToks {
	if t, ok := s.Token.(*snapToks); ok {
		return t
	}
	t := &snapToks{toks: map[string]*headTok{}}
	s.Token = t
	return t
}

func (t *snapToks) get(pk string) *headTok {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.toks[pk]
}

func (t *snapToks) set(pk string, h *headTok) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.toks[pk] = h
}

func (o *Outbox) part(pk string) *outboxPart {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.parts[pk]
	if p == nil {
		p = newPart(pk)
		o.parts[pk] = p
	}
	return p
}

// catchUp brings a shard's view up to its last log entry: the first time
// it reads the head alone (the view starts empty: everything unknown) and
// lists the shard; then, with one range query, the log entries written
// since (after a catch-up that found none, a point read of the next entry
// first: a shard no one wrote to since costs a point read, not a query).
// Past resyncAfter since it last read the shard it reads the head first:
// entries it missed may be pruned, and if they were it starts again at
// the head. It returns the head the view is now at.
//
// The head is not read again: a commit is guarded by the log entry it
// adds (an insert of the entry after the view's, which fails if another
// commit wrote it first), so the view needs only the entries, and a
// query of one row key range is an index range in Azure Table Storage,
// where the head "or" the entries was a scan of the shard's whole
// partition, every alert, decision and cooldown of it.
func (o *Outbox) catchUp(ctx context.Context, p *outboxPart) (*headTok, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := o.s
	started := time.Now()
	// behind is the head's entry when the view last read the shard before
	// resyncAfter: entries written since may be pruned by now, and the
	// view must not take the next one it sees for the one after its own.
	behind := int64(-1)
	if p.loaded && started.Sub(p.synced) > resyncAfter {
		props, _, ok, err := o.read(ctx, "head", p.pk, rkHead)
		if err != nil {
			return nil, err
		}
		if !ok {
			p.loaded = false // gone: start afresh below
		} else {
			seq, _ := props[propSeq].(aztables.EDMInt64)
			if behind = int64(seq); behind == p.seq {
				// Nothing was written since: the view stands.
				p.exists, p.quiet = true, true
				p.caught, p.synced = started, started
				return &headTok{seq: p.seq, exists: true}, nil
			}
			p.quiet = false // entries were written: query them
		}
	}
	if !p.loaded {
		props, _, ok, err := o.read(ctx, "head", p.pk, rkHead)
		if err != nil {
			return nil, err
		}
		p.reset() // what the view held (nothing, the first time) is of no known entry
		p.seq, p.exists = 0, ok
		if ok {
			seq, _ := props[propSeq].(aztables.EDMInt64)
			p.seq = int64(seq)
		}
		// No head: nothing was ever written to the shard, and the view
		// (empty) holds all of it. Else the cooldown rows that exist now
		// are listed (after the head: a row written since is in an entry
		// the next catch-up applies), if they are few.
		p.complete, p.present = !ok, map[string]struct{}{}
		if ok {
			if err := o.listShard(ctx, p); err != nil {
				return nil, err
			}
		}
		p.loaded = true
		p.caught, p.synced = time.Now(), started
		return &headTok{seq: p.seq, exists: ok}, nil
	}
	if p.quiet {
		// Entries are written in turn (each commit inserts the one after
		// its view's) and pruned only once older than the views that
		// still read them (resyncAfter): with no entry after the view's,
		// there are none later.
		_, _, ok, err := o.read(ctx, "log", p.pk, logKey(p.seq+1))
		if err != nil {
			return nil, fmt.Errorf("tablestore: outbox shard %s: %w", p.pk, err)
		}
		if !ok {
			p.caught, p.synced = started, started
			return &headTok{seq: p.seq, exists: p.exists}, nil
		}
	}
	applied := 0
	filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey gt '%s' and RowKey lt '%s'", p.pk, logKey(p.seq), rkLog[:1]+".")
	err := s.query(ctx, s.outbox, filter, nil, func(raw []byte) error {
		var ent aztables.EDMEntity
		if err := json.Unmarshal(raw, &ent); err != nil {
			return err
		}
		seq, err := strconv.ParseInt(strings.TrimPrefix(ent.RowKey, rkLog), 10, 64)
		if err != nil || seq <= p.seq {
			return nil
		}
		if seq != p.seq+1 {
			p.reset() // entries were pruned before this instance read them
		}
		var le logEntry
		if err := decodeLog(ent.Properties, &le); err != nil {
			return fmt.Errorf("log entry %d: %w", seq, err)
		}
		p.apply(&le)
		p.seq = seq
		p.exists = true // a commit wrote the head with its entry
		applied++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tablestore: outbox shard %s: %w", p.pk, err)
	}
	if p.seq < behind {
		// Entries up to the head were pruned before this view read them:
		// it starts again at the head, knowing nothing (keys are read when
		// needed).
		p.reset()
		p.seq, p.exists = behind, true
	}
	p.caught, p.synced = started, started
	p.quiet = applied == 0
	return &headTok{seq: p.seq, exists: p.exists}, nil
}

// reuseCatchUp is how long after a catch-up a Load takes the view's head
// as its snapshot's instead of catching up again: a snapshot's head may be
// older than the newest one, since a commit against a head that moved
// fails and its units are decided again; rows the view holds are at least
// as new as its head. It lets AddFindings catch the views up (to know what
// delivery decided) for the Found that follows it.
var reuseCatchUp = 200 * time.Millisecond

// headIfFresh returns the view's head if a catch-up brought it there
// within reuseCatchUp.
func (p *outboxPart) headIfFresh() *headTok {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded || p.caught.IsZero() || time.Since(p.caught) >= reuseCatchUp {
		return nil
	}
	return &headTok{seq: p.seq, exists: p.exists}
}

// refresh catches up the views of every shard, if this instance decides
// findings with them (it loaded one).
func (o *Outbox) refresh(ctx context.Context) error {
	o.mu.Lock()
	n := len(o.parts)
	o.mu.Unlock()
	if n == 0 {
		return nil
	}
	pks := allPKs()
	return o.s.parallel(ctx, len(pks), func(ctx context.Context, i int) error {
		_, err := o.catchUp(ctx, o.part(pks[i]))
		return err
	})
}

// Warm loads every shard's view as the first Load would (its head, the
// cooldown rows that exist and the decisions, listed), unless it is
// loaded: a process calls it when it starts, beside its other wiring, so
// that its first batch finds the views ready. A fresh instance's first
// batch hands on every finding its windows hold (its engine has handed on
// nothing yet): without the decisions listed, each was inserted again,
// refused and looked up (a query per 14), and the listing itself waited
// for, about a second after a long history.
func (o *Outbox) Warm(ctx context.Context) error {
	pks := allPKs()
	return o.s.parallel(ctx, len(pks), func(ctx context.Context, i int) error {
		p := o.part(pks[i])
		p.mu.Lock()
		loaded := p.loaded
		p.mu.Unlock()
		if loaded {
			return nil
		}
		_, err := o.catchUp(ctx, p)
		return err
	})
}

var errTooMany = errors.New("too many rows")

// listShard lists, for an empty view, the shard's cooldown rows into the
// view (and their row keys into present, making the view complete),
// unless there are more than listRows; and the decisions that follow them in key order (up to
// listDecisions) into the view: a finding decided before the view started
// and handed on again is then known decided, instead of failing the
// commit that would decide it again (and costing a query per 14 of the
// shard's decisions to find out which).
func (o *Outbox) listShard(ctx context.Context, p *outboxPart) error {
	filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s'", p.pk, rkCooldown, rkDecision[:1]+".")
	sel := strings.Join([]string{"RowKey", propKey, propJSON, propID, propAlert, propSuppressed, propRoutine, propAt, propFacts}, ",")
	present := map[string]struct{}{}
	decs := 0
	err := o.s.query(ctx, o.s.outbox, filter, &sel, func(raw []byte) error {
		var ent aztables.EDMEntity
		if err := json.Unmarshal(raw, &ent); err != nil {
			return err
		}
		if strings.HasPrefix(ent.RowKey, rkCooldown) {
			if len(present) == listRows {
				return errTooMany
			}
			present[ent.RowKey] = struct{}{}
			// Its content too: the first batch of a fresh instance decides
			// findings of most of them (Warm), and reading them then
			// costs a query per 14.
			key, _ := ent.Properties[propKey].(string)
			if c, mine, err := cooldownOf(ent.Properties, key); err == nil && mine && key != "" {
				p.setCooldown(key, c, true, 0)
			}
			return nil
		}
		if !strings.HasPrefix(ent.RowKey, rkDecision) {
			return nil
		}
		// Past the cooldowns (rows come in key order): every one is listed.
		p.complete, p.present = true, present
		if decs == listDecisions {
			return errTooMany
		}
		decs++
		id, _ := ent.Properties[propID].(string)
		if d, ok, err := decisionOf(ent.Properties, id); err == nil && ok && id != "" {
			p.setDecision(id, d) // a decision never changes
		}
		return nil
	})
	if errors.Is(err, errTooMany) {
		return nil // what was listed stands; keys it does not know are read
	}
	if err != nil {
		return fmt.Errorf("tablestore: outbox shard %s: %w", p.pk, err)
	}
	p.complete, p.present = true, present
	return nil
}

func decodeLog(props map[string]any, le *logEntry) error {
	data, err := getChunks(props)
	if err != nil {
		return err
	}
	js, err := unpackBytes(data)
	if err != nil {
		return err
	}
	return json.Unmarshal(js, le)
}

// Load implements delivery.Batch: keys in q.Read the view does not know
// are read first (a query per 14 keys and shard; none when the view is
// complete, outboxPart.complete, and the key absent), then the shards q touches
// are caught up (one query each, once per snapshot), and what q asks for is
// answered from the view. Reading before catching up keeps the time from
// the catch-up (the head a commit is made against) to the commit short.
func (o *Outbox) Load(ctx context.Context, snap *delivery.Snapshot, q delivery.Query) error {
	snap.Init()
	t := toks(snap)
	// Keys to read: those of q.Read the view does not know, and those of
	// q.Keys it knows exist without their rows (a key assumed absent that
	// exists fails its commit).
	unknown := func() map[string][]string {
		out := map[string][]string{}
		seen := map[string]bool{}
		for n, r := range slices.Concat(q.Read, q.Keys) {
			pk := shardPK(r.Shard)
			if seen[pk+"\x00"+r.Key] {
				continue
			}
			seen[pk+"\x00"+r.Key] = true
			p := o.part(pk)
			p.mu.Lock()
			known := p.known(r.Key)
			if n >= len(q.Read) && !known && !p.complete {
				// A key to write, not to read: assumed absent (the
				// commit finds out if it is not) unless the view knows
				// it exists.
				known = true
			}
			p.mu.Unlock()
			if _, have := snap.Cooldowns[r.Key]; !known && !(have && !snap.Unknown[r.Key]) {
				out[pk] = append(out[pk], r.Key) // known to neither the view nor the snapshot
			}
		}
		return out
	}
	// Shards to catch up; those this instance never loaded first (their
	// first load may list which keys exist, so that absent ones need no
	// read).
	var pks, fresh []string
	for _, refs := range [][]delivery.Ref{q.Keys, q.Read, q.Decisions, q.Entries} {
		for _, r := range refs {
			if pk := shardPK(r.Shard); !slices.Contains(pks, pk) && !slices.Contains(fresh, pk) && t.get(pk) == nil {
				p := o.part(pk)
				p.mu.Lock()
				loaded := p.loaded
				p.mu.Unlock()
				if loaded {
					pks = append(pks, pk)
				} else {
					fresh = append(fresh, pk)
				}
			}
		}
	}
	catchUp := func(pks []string) error {
		return o.s.parallel(ctx, len(pks), func(ctx context.Context, i int) error {
			if h := o.part(pks[i]).headIfFresh(); h != nil {
				t.set(pks[i], h)
				return nil
			}
			h, err := o.catchUp(ctx, o.part(pks[i]))
			if err != nil {
				return err
			}
			t.set(pks[i], h)
			return nil
		})
	}
	if err := catchUp(fresh); err != nil {
		return err
	}
	var got *rowsRead
	if toRead := unknown(); len(toRead) > 0 {
		var err error
		if got, err = o.readRows(ctx, toRead, nil); err != nil {
			return err
		}
	}
	if err := catchUp(pks); err != nil {
		return err
	}
	// Rows read before a shard was caught up and not kept by its view (the
	// view was forgotten meanwhile) are read again: after the catch-up, a
	// row is at least as new as the head the snapshot holds.
	if again := unknown(); len(again) > 0 {
		var err error
		if got, err = o.readRows(ctx, again, nil); err != nil {
			return err
		}
	}
	for _, refs := range [][]delivery.Ref{q.Keys, q.Read} {
		for _, r := range refs {
			p := o.part(shardPK(r.Shard))
			p.mu.Lock()
			row, ok := p.cool[r.Key]
			if ok {
				p.tick++
				row.used = p.tick
				snap.Cooldowns[r.Key] = row.c
				delete(snap.Unknown, r.Key)
			} else if p.known(r.Key) {
				// Absent: the view would hold it. (The snapshot's head
				// is at most as new as the view, and a commit against an
				// older head fails.)
				ok = true
				snap.Cooldowns[r.Key] = delivery.Cooldown{}
				delete(snap.Unknown, r.Key)
			}
			p.mu.Unlock()
			if ok {
				continue
			}
			if got != nil {
				if c, read := got.cools[r.Key]; read {
					snap.Cooldowns[r.Key] = delivery.Cooldown{}
					if c != nil {
						snap.Cooldowns[r.Key] = *c
					}
					delete(snap.Unknown, r.Key)
					continue
				}
			}
			if _, have := snap.Cooldowns[r.Key]; !have || snap.Unknown[r.Key] {
				snap.Cooldowns[r.Key] = delivery.Cooldown{}
				snap.Unknown[r.Key] = true
			}
		}
	}
	for _, r := range q.Decisions {
		p := o.part(shardPK(r.Shard))
		p.mu.Lock()
		if d, ok := p.dec[r.Key]; ok {
			p.tick++
			d.used = p.tick
			snap.Decisions[r.Key] = d.d
		}
		p.mu.Unlock()
	}
	if len(q.Entries) > 0 {
		es, err := o.GetAll(ctx, q.Entries)
		if err != nil {
			return err
		}
		for id, e := range es {
			snap.Entries[id] = e
		}
	}
	return nil
}

// rowsRead are rows readRows read: cooldowns (absent ones too) and the
// decisions that exist.
type rowsRead struct {
	mu    sync.Mutex
	cools map[string]*delivery.Cooldown // nil: absent
	decs  map[string]delivery.Decision
}

// readRows reads cooldown rows (keys) and decisions (ids) of partitions,
// 14 to a query; a key not there is absent. What it read goes into the
// partitions' views too, unless a view moved on while it read (then what
// it read may be older than what the view holds).
func (o *Outbox) readRows(ctx context.Context, keys, ids map[string][]string) (*rowsRead, error) {
	out := &rowsRead{cools: map[string]*delivery.Cooldown{}, decs: map[string]delivery.Decision{}}
	type job struct {
		pk   string
		rks  []string
		what map[string]string // row key → cooldown key or finding ID
	}
	var jobs []job
	add := func(pk, prefix string, names []string) {
		for len(names) > 0 {
			part := names[:min(len(names), keysPerQuery)]
			names = names[len(part):]
			j := job{pk: pk, what: map[string]string{}}
			for _, n := range part {
				rk := prefix + outboxKey(n)
				j.rks = append(j.rks, rk)
				j.what[rk] = n
			}
			jobs = append(jobs, j)
		}
	}
	for pk, ks := range keys {
		add(pk, rkCooldown, ks)
	}
	for pk, is := range ids {
		add(pk, rkDecision, is)
	}
	err := o.s.parallel(ctx, len(jobs), func(ctx context.Context, i int) error {
		j := jobs[i]
		p := o.part(j.pk)
		p.mu.Lock()
		gen, resets := p.gen, p.resets
		p.mu.Unlock()
		found := map[string]bool{}
		cools := map[string]delivery.Cooldown{}
		decs := map[string]delivery.Decision{}
		err := o.readKeys(ctx, j.pk, j.rks, nil, func(ent *aztables.EDMEntity) error {
			name, ok := j.what[ent.RowKey]
			if !ok {
				return nil
			}
			if strings.HasPrefix(ent.RowKey, rkCooldown) {
				c, mine, err := cooldownOf(ent.Properties, name)
				if err != nil {
					return err
				}
				if mine {
					found[ent.RowKey], cools[name] = true, c
				}
				return nil
			}
			if d, mine, err := decisionOf(ent.Properties, name); err == nil && mine {
				found[ent.RowKey], decs[name] = true, d
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("tablestore: outbox read: %w", err)
		}
		out.mu.Lock()
		for _, rk := range j.rks {
			name := j.what[rk]
			switch {
			case strings.HasPrefix(rk, rkCooldown) && found[rk]:
				c := cools[name]
				c.Version = "x"
				out.cools[name] = &c
			case strings.HasPrefix(rk, rkCooldown):
				out.cools[name] = nil
			case found[rk]:
				out.decs[name] = decs[name]
			}
		}
		out.mu.Unlock()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, rk := range j.rks {
			name := j.what[rk]
			switch {
			case strings.HasPrefix(rk, rkCooldown):
				// Kept unless an entry applied while it was read changed
				// it (the view holds newer), or the view was forgotten
				// meanwhile (the row is of no known entry).
				if row, ok := p.cool[name]; (ok && row.gen > gen) || p.resets != resets {
					continue
				}
				p.setCooldown(name, cools[name], found[rk], 0)
			case found[rk]:
				p.setDecision(name, decs[name]) // a decision never changes
			}
		}
		return nil
	})
	return out, err
}

// cooldownOf reads a cooldown row; mine is false when it belongs to
// another key (a hashed row key shared).
func cooldownOf(props map[string]any, key string) (delivery.Cooldown, bool, error) {
	if k, _ := props[propKey].(string); k != key {
		return delivery.Cooldown{}, false, nil
	}
	js, _ := props[propJSON].(string)
	var c delivery.Cooldown
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		return delivery.Cooldown{}, false, fmt.Errorf("tablestore: outbox cooldown %q: %w", key, err)
	}
	return c, true, nil
}

// An op is one row a commit writes.
type op struct {
	action aztables.TransactionAction
	size   int
	entry  *delivery.Entry // an entry written: its Version is set after
}

// Commit implements delivery.Batch: each shard's units are written in
// entity-group transactions (at most 100 entities, 3.5 MB), each
// transaction inserting the log entry after the snapshot's (what it
// changed) and moving the shard's head on, so a transaction whose shard
// changed since the snapshot (the entry exists) writes nothing
// (delivery.ErrConflict for its units and the shard's later ones). Rows
// the view did not know are inserted, so that one that exists fails its
// transaction too; they are then read, for the next round to know them.
func (o *Outbox) Commit(ctx context.Context, snap *delivery.Snapshot, units []*delivery.Unit) ([]error, error) {
	t := toks(snap)
	errs := make([]error, len(units))
	byPK := map[string][]int{}
	var pks []string
	for i, u := range units {
		if u.Rows() > delivery.MaxUnitRows {
			return nil, fmt.Errorf("tablestore: outbox: a unit of %d rows", u.Rows())
		}
		pk := shardPK(u.Shard)
		if _, ok := byPK[pk]; !ok {
			pks = append(pks, pk)
			if t.get(pk) == nil { // not loaded: catch up now
				h, err := o.catchUp(ctx, o.part(pk))
				if err != nil {
					return nil, err
				}
				t.set(pk, h)
			}
		}
		byPK[pk] = append(byPK[pk], i)
	}
	err := o.s.parallel(ctx, len(pks), func(ctx context.Context, n int) error {
		pk := pks[n]
		return o.commitShard(ctx, t, pk, units, byPK[pk], errs)
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// commitShard writes the units idx (of one shard), transaction by
// transaction.
func (o *Outbox) commitShard(ctx context.Context, t *snapToks, pk string, units []*delivery.Unit, idx []int, errs []error) error {
	type txu struct {
		units []int
		ops   []op
		le    logEntry
		size  int
		rows  int
	}
	var txs []*txu
	for _, i := range idx {
		ops, le, err := o.unitOps(pk, units[i])
		if err != nil {
			return err
		}
		size := 0
		for _, op := range ops {
			size += op.size
		}
		cur := (*txu)(nil)
		if len(txs) > 0 {
			cur = txs[len(txs)-1]
		}
		if cur == nil || cur.rows+len(ops) > delivery.MaxUnitRows || cur.size+2*size > maxTxBytes {
			cur = &txu{}
			txs = append(txs, cur)
		}
		cur.units = append(cur.units, i)
		cur.ops = append(cur.ops, ops...)
		cur.le.C = append(cur.le.C, le.C...)
		cur.le.D = append(cur.le.D, le.D...)
		cur.size += size
		cur.rows += len(ops)
	}
	s := o.s
	p := o.part(pk)
	for n, tx := range txs {
		base := t.get(pk)
		conflict := func() {
			for _, later := range txs[n:] {
				for _, i := range later.units {
					errs[i] = delivery.ErrConflict
				}
			}
		}
		if base == nil { // not caught up
			conflict()
			return nil
		}
		logBody, err := o.logRow(pk, base.seq+1, &tx.le)
		if err != nil {
			return err
		}
		head, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: rkHead},
			Properties: map[string]any{propSeq: aztables.EDMInt64(base.seq + 1)}})
		if err != nil {
			return err
		}
		// The log entry after the snapshot's is inserted: if another
		// commit wrote it first, the transaction fails (409) and writes
		// nothing. The head moves on with it, and is inserted by the
		// shard's first commit (which fails if another made it first).
		// An instance of an earlier version guards its commits with
		// If-Match on the head's ETag, which this write changes: the two
		// exclude each other either way.
		actions := make([]aztables.TransactionAction, 0, len(tx.ops)+2)
		if base.exists {
			exists := azcore.ETagAny // it must exist: gone, the view starts afresh
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeUpdateReplace, Entity: head, IfMatch: &exists})
		} else {
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: head})
		}
		actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: logBody})
		for _, op := range tx.ops {
			actions = append(actions, op.action)
		}
		s.stats.transactions.Add(1)
		s.stats.writes.Add(int64(len(actions)))
		etags, err := s.transact(ctx, s.outbox, actions)
		if err != nil {
			var f *txFailure
			if !errors.As(err, &f) || (f.status != http.StatusConflict && f.status != http.StatusPreconditionFailed && f.status != http.StatusNotFound) {
				return fmt.Errorf("tablestore: outbox commit: %w", err)
			}
			s.stats.conflicts.Add(1)
			conflict()
			p.mu.Lock()
			p.caught = time.Time{} // behind: the next round catches up
			if f.status == http.StatusNotFound {
				p.loaded = false // the head is gone: start afresh
			}
			p.mu.Unlock()
			if f.status == http.StatusConflict && f.op != 1 {
				// A row the view did not know exists (or another instance
				// made the shard's first head), not another commit's log
				// entry (operation 1): read what this transaction
				// and the shard's later ones assumed absent, so the next
				// round knows.
				var rest []int
				for _, later := range txs[n:] {
					rest = append(rest, later.units...)
				}
				return o.resolve(ctx, pk, units, rest)
			}
			return nil
		}
		next := &headTok{seq: base.seq + 1, exists: true}
		if len(etags) == len(actions) {
			for k, op := range tx.ops {
				if op.entry != nil {
					op.entry.Version = etags[k+2]
					o.keep(pk, op.entry, len(op.action.Entity))
				}
			}
		}
		p.mu.Lock()
		if p.loaded && p.seq == base.seq {
			p.apply(&tx.le)
			p.seq, p.exists = next.seq, true
		}
		p.mu.Unlock()
		t.set(pk, next)
	}
	return nil
}

// resolve reads the rows units assumed absent (cooldowns of Version "",
// decisions) into the view.
func (o *Outbox) resolve(ctx context.Context, pk string, units []*delivery.Unit, idx []int) error {
	keys, ids := map[string][]string{}, map[string][]string{}
	for _, i := range idx {
		u := units[i]
		for k, c := range u.Cooldowns {
			if c.Version == "" {
				keys[pk] = append(keys[pk], k)
			}
		}
		for id := range u.Decisions {
			ids[pk] = append(ids[pk], id)
		}
	}
	_, err := o.readRows(ctx, keys, ids)
	return err
}

// unitOps returns the rows a unit writes, and the log entry of them.
func (o *Outbox) unitOps(pk string, u *delivery.Unit) ([]op, logEntry, error) {
	var ops []op
	var le logEntry
	add := func(kind aztables.TransactionType, ifMatch string, ent aztables.EDMEntity, e *delivery.Entry) error {
		b, err := json.Marshal(ent)
		if err != nil {
			return err
		}
		a := aztables.TransactionAction{ActionType: kind, Entity: b}
		if ifMatch != "" {
			etag := azcore.ETag(ifMatch)
			a.IfMatch = &etag
		}
		ops = append(ops, op{action: a, size: len(b) + opOverhead, entry: e})
		return nil
	}
	keys := make([]string, 0, len(u.Cooldowns))
	for k := range u.Cooldowns {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c := u.Cooldowns[k]
		js, err := json.Marshal(&c)
		if err != nil {
			return nil, le, fmt.Errorf("tablestore: outbox cooldown: %w", err)
		}
		kind := aztables.TransactionTypeInsertReplace // the shard's head guards it
		if c.Version == "" {
			kind = aztables.TransactionTypeAdd // assumed absent: fails if it is not
		}
		ent := aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: rkCooldown + outboxKey(k)},
			Properties: map[string]any{propKey: k, propJSON: string(js), propLast: aztables.EDMInt64(micros(c.Last))}}
		if err := add(kind, "", ent, nil); err != nil {
			return nil, le, err
		}
		c.Version = ""
		le.C = append(le.C, logCooldown{Key: k, C: c})
	}
	ids := make([]string, 0, len(u.Decisions))
	for id := range u.Decisions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		d := u.Decisions[id]
		if err := add(aztables.TransactionTypeAdd, "", decisionEntity(pk, id, d), nil); err != nil {
			return nil, le, err
		}
		d.Of = nil // views do not keep it (setDecision): the log need not carry it
		le.D = append(le.D, logDecision{ID: id, D: d})
	}
	for _, e := range u.Add {
		if pk != shardPK(delivery.EntryShard(e)) {
			return nil, le, fmt.Errorf("tablestore: outbox: entry %s is not of shard %q", e.Alert.ID, u.Shard)
		}
		body, err := encodeEntry(e, pk, newNonce())
		if err != nil {
			return nil, le, err
		}
		ops = append(ops, op{action: aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: body},
			size: len(body) + opOverhead, entry: e})
		if err := add(aztables.TransactionTypeAdd, "", indexEntity(pk, e), nil); err != nil {
			return nil, le, err
		}
	}
	for _, e := range u.Put {
		if e.Version == "" {
			return nil, le, fmt.Errorf("tablestore: outbox: entry %s written back without a version", e.Alert.ID)
		}
		body, err := encodeEntry(e, pk, newNonce())
		if err != nil {
			return nil, le, err
		}
		etag := azcore.ETag(e.Version)
		ops = append(ops, op{action: aztables.TransactionAction{ActionType: aztables.TransactionTypeUpdateReplace, Entity: body, IfMatch: &etag},
			size: len(body) + opOverhead, entry: e})
	}
	return ops, le, nil
}

// logRow is the log entry row seq of a shard.
func (o *Outbox) logRow(pk string, seq int64, le *logEntry) ([]byte, error) {
	js, err := json.Marshal(le)
	if err != nil {
		return nil, err
	}
	props := map[string]any{propAt: aztables.EDMInt64(micros(time.Now()))}
	if err := putChunks(props, packBytes(js, true)); err != nil {
		return nil, fmt.Errorf("tablestore: outbox log entry: %w", err)
	}
	return json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: logKey(seq)}, Properties: props})
}

// PutAll implements delivery.Batch: the entries of a partition are written
// in transactions, each If-Match on its entry's ETag; a transaction that
// meets a changed entry is done again without the entries that changed
// (found by one query per 14), which conflict.
func (o *Outbox) PutAll(ctx context.Context, es []*delivery.Entry) ([]error, error) {
	errs := make([]error, len(es))
	type item struct {
		i    int
		body []byte
	}
	byPK := map[string][]item{}
	var pks []string
	for i, e := range es {
		if e == nil || e.Alert == nil {
			return nil, errors.New("tablestore: outbox: an entry without an alert")
		}
		if e.Version == "" {
			errs[i] = conflict("entry " + e.Alert.ID + ": no version")
			continue
		}
		pk := shardPK(delivery.EntryShard(e))
		body, err := encodeEntry(e, pk, newNonce())
		if err != nil {
			return nil, err
		}
		if _, ok := byPK[pk]; !ok {
			pks = append(pks, pk)
		}
		byPK[pk] = append(byPK[pk], item{i, body})
	}
	var chunks [][]item
	for _, pk := range pks {
		its := byPK[pk]
		for len(its) > 0 {
			n, size := 0, 0
			for n < len(its) && n < maxTxOps && (n == 0 || size+len(its[n].body)+opOverhead < maxTxBytes) {
				size += len(its[n].body) + opOverhead
				n++
			}
			chunks = append(chunks, its[:n])
			its = its[n:]
		}
	}
	s := o.s
	err := s.parallel(ctx, len(chunks), func(ctx context.Context, c int) error {
		its := chunks[c]
		for try := 0; len(its) > 0; try++ {
			if len(its) == 1 || try == 2 {
				for _, it := range its { // one by one
					err := o.Put(ctx, es[it.i])
					if errors.Is(err, delivery.ErrConflict) {
						errs[it.i] = err
					} else if err != nil {
						return err
					}
				}
				return nil
			}
			actions := make([]aztables.TransactionAction, len(its))
			for k, it := range its {
				etag := azcore.ETag(es[it.i].Version)
				actions[k] = aztables.TransactionAction{ActionType: aztables.TransactionTypeUpdateReplace, Entity: it.body, IfMatch: &etag}
			}
			s.stats.transactions.Add(1)
			s.stats.writes.Add(int64(len(actions)))
			etags, err := s.transact(ctx, s.outbox, actions)
			if err == nil {
				for k, it := range its {
					if len(etags) == len(actions) {
						es[it.i].Version = etags[k]
						o.keep(shardPK(delivery.EntryShard(es[it.i])), es[it.i], len(it.body))
					} else {
						es[it.i].Version = "" // unknown: read it again to write it
					}
				}
				return nil
			}
			var f *txFailure
			if !errors.As(err, &f) || (f.status != http.StatusPreconditionFailed && f.status != http.StatusNotFound) {
				return fmt.Errorf("tablestore: outbox write: %w", err)
			}
			s.stats.conflicts.Add(1)
			// Which changed? Their current ETags say.
			refs := make([]delivery.Ref, len(its))
			for k, it := range its {
				refs[k] = delivery.Ref{Shard: delivery.EntryShard(es[it.i]), Key: es[it.i].Alert.ID}
			}
			cur, err := o.etags(ctx, refs)
			if err != nil {
				return err
			}
			kept := its[:0]
			for _, it := range its {
				if cur[es[it.i].Alert.ID] == es[it.i].Version {
					kept = append(kept, it)
				} else {
					errs[it.i] = conflict("entry " + es[it.i].Alert.ID)
				}
			}
			its = kept
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// GetAll implements delivery.Batch: a query per 14 entries of a
// partition.
func (o *Outbox) GetAll(ctx context.Context, refs []delivery.Ref) (map[string]*delivery.Entry, error) {
	out := map[string]*delivery.Entry{}
	var mu sync.Mutex
	err := o.entryQueries(ctx, refs, nil, func(id string, ent *aztables.EDMEntity) error {
		e, err := o.entry(ent.PartitionKey, ent.RowKey, ent.ETag, ent.Properties)
		if err != nil {
			return fmt.Errorf("tablestore: outbox entry %s: %w", id, err)
		}
		mu.Lock()
		out[id] = e
		mu.Unlock()
		return nil
	})
	return out, err
}

// etags returns the current ETags of entries.
func (o *Outbox) etags(ctx context.Context, refs []delivery.Ref) (map[string]string, error) {
	out := map[string]string{}
	var mu sync.Mutex
	sel := "PartitionKey,RowKey," + propID
	err := o.entryQueries(ctx, refs, &sel, func(id string, ent *aztables.EDMEntity) error {
		mu.Lock()
		out[id] = ent.ETag
		mu.Unlock()
		return nil
	})
	return out, err
}

// entryQueries reads entries by ID, 14 to a query and partition.
func (o *Outbox) entryQueries(ctx context.Context, refs []delivery.Ref, sel *string, each func(id string, ent *aztables.EDMEntity) error) error {
	rows := make([]entryRow, len(refs))
	for i, r := range refs {
		rows[i] = entryRow{pk: shardPK(r.Shard), id: r.Key}
	}
	return o.entryQueriesIn(ctx, rows, sel, each)
}

// entryRow names an entry by its partition and ID.
type entryRow struct{ pk, id string }

// entryQueriesIn is entryQueries for entries whose partitions are known.
func (o *Outbox) entryQueriesIn(ctx context.Context, rows []entryRow, sel *string, each func(id string, ent *aztables.EDMEntity) error) error {
	byPK := map[string][]string{}
	var pks []string
	seen := map[string]bool{}
	for _, r := range rows {
		pk := r.pk
		if seen[pk+"/"+r.id] {
			continue
		}
		seen[pk+"/"+r.id] = true
		if _, ok := byPK[pk]; !ok {
			pks = append(pks, pk)
		}
		byPK[pk] = append(byPK[pk], r.id)
	}
	type job struct {
		pk  string
		ids []string
	}
	var jobs []job
	for _, pk := range pks {
		ids := byPK[pk]
		for len(ids) > 0 {
			part := ids[:min(len(ids), keysPerQuery)]
			ids = ids[len(part):]
			jobs = append(jobs, job{pk, part})
		}
	}
	return o.s.parallel(ctx, len(jobs), func(ctx context.Context, i int) error {
		j := jobs[i]
		want := map[string]bool{}
		rks := make([]string, len(j.ids))
		for k, id := range j.ids {
			want[id] = true
			rks[k] = rkEntry + outboxKey(id)
		}
		return o.readKeys(ctx, j.pk, rks, sel, func(ent *aztables.EDMEntity) error {
			id, _ := ent.Properties[propID].(string)
			if !want[id] {
				return nil
			}
			return each(id, ent)
		})
	})
}

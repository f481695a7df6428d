// Package tablestore keeps kvwatch's detection state, findings, dead
// letters and delivery outbox (Outbox) in Azure Table Storage. It is the
// only package that imports the aztables SDK.
//
// State entities: one per (rule, group, block). PartitionKey is a hash of
// the rule and the group, so a group's blocks share a partition (a batch
// writes them in one entity-group transaction) and groups spread over
// partitions; RowKey is the block, encoded to sort as blocks do. The
// state.Entity itself is stored as JSON (deflated when long) in binary
// properties D0..Dn-1, with Rule, Group and Block beside it.
//
// Exactly once: every write is conditional — Insert for an entity read as
// absent (409 if another writer created it meanwhile), Update with the
// ETag read for an existing one (412 if another writer changed it). A
// failed transaction's entities are read again and the batch's ApplyFunc
// applied again to what is there now; the entity's Applied marks make
// applying input that another attempt already applied a no-op. So no
// update is lost and none is applied twice, across retries, redeliveries
// and instances.
package tablestore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/state"
)

// Options configure a Store. Zero values take the defaults shown.
type Options struct {
	// Prefix is put before the table names (state, findings, deadletters,
	// outbox),
	// so deployments can share a storage account. Letters and digits,
	// starting with a letter.
	Prefix string
	// CacheEntries and CacheBytes bound the per-instance cache of entities
	// and their ETags (default 20000 entities and about 64 MiB of memory,
	// estimated from the entities' size). A negative CacheEntries turns the
	// cache off.
	CacheEntries int
	CacheBytes   int
	// Concurrency bounds parallel requests of one call (default 16).
	Concurrency int
	// TryTimeout bounds one request (default 15s).
	TryTimeout time.Duration
	// RetryBudget bounds the time spent retrying one request after
	// throttling, server errors, timeouts or broken connections (default
	// 45s); RetryDelay and MaxRetryDelay shape the backoff (default 200ms,
	// 8s).
	RetryBudget   time.Duration
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxConflictRounds bounds how often Update re-reads and re-applies
	// entities that other writers changed first (default 50).
	MaxConflictRounds int
}

func (o *Options) defaults() {
	if o.CacheEntries == 0 {
		o.CacheEntries = 20000
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 64 << 20
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.TryTimeout <= 0 {
		o.TryTimeout = 15 * time.Second
	}
	if o.RetryBudget <= 0 {
		o.RetryBudget = 45 * time.Second
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 200 * time.Millisecond
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = 8 * time.Second
	}
	if o.MaxConflictRounds <= 0 {
		o.MaxConflictRounds = 50
	}
}

// Table name suffixes.
const (
	StateTable       = "state"
	FindingsTable    = "findings"
	DeadLettersTable = "deadletters"
	OutboxTable      = "outbox"
)

// Store is a state.Store on Table Storage. It is safe for concurrent use;
// each instance of kvwatch has its own (its own cache).
type Store struct {
	opts        Options
	state       *aztables.Client
	findings    *aztables.Client
	deadletters *aztables.Client
	outbox      *aztables.Client
	cache       *cache[state.Key, *stored]
	stats       counters
	outboxOnce  sync.Once
	outboxV     *Outbox

	// testBeforeTx, when set (tests), runs before each transaction is
	// submitted; an error from it fails the transaction as a permanent
	// error would.
	testBeforeTx func(n int) error
}

var _ state.Store = (*Store)(nil)

var tableNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)

// TableNames returns the names of the tables a prefix gives, or an error
// if they break Table Storage's rules: letters and digits, starting with
// a letter, 3 to 63 characters, not "tables".
func TableNames(prefix string) (stateT, findingsT, deadLettersT string, err error) {
	names := [3]string{prefix + StateTable, prefix + FindingsTable, prefix + DeadLettersTable}
	for _, n := range names {
		if !tableNameRE.MatchString(n) || strings.EqualFold(n, "tables") {
			return "", "", "", fmt.Errorf("table prefix %q: table name %q is not valid (letters and digits, "+
				"starting with a letter, 3-63 characters)", prefix, n)
		}
	}
	return names[0], names[1], names[2], nil
}

// New returns a store on the tables named by opts.Prefix (TableNames,
// and the outbox's, prefix+"outbox"), creating those that are missing.
func New(ctx context.Context, client *aztables.ServiceClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("tablestore: no client")
	}
	opts.defaults()
	st, fi, dl, err := TableNames(opts.Prefix)
	if err != nil {
		return nil, err
	}
	ob := opts.Prefix + OutboxTable // valid when the others are: shorter than deadletters
	s := &Store{opts: opts, cache: newCache[state.Key, *stored](opts.CacheEntries, opts.CacheBytes)}
	// The tables are created in parallel: a cold start waits for one round
	// trip, not four.
	tables := []struct {
		name string
		c    **aztables.Client
	}{{st, &s.state}, {fi, &s.findings}, {dl, &s.deadletters}, {ob, &s.outbox}}
	errs := make([]error, len(tables))
	var wg sync.WaitGroup
	for i, t := range tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.call(ctx, "create table "+t.name, func(ctx context.Context) error {
				_, err := client.CreateTable(ctx, t.name, nil)
				return err
			})
			if code, ok := errorCode(err); ok && code == string(aztables.TableAlreadyExists) {
				err = nil
			}
			if err != nil {
				errs[i] = fmt.Errorf("tablestore: create table %s: %w", t.name, err)
				return
			}
			*t.c = client.NewClient(t.name)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// errorCode returns the service's error code, if err is a service error.
func errorCode(err error) (string, bool) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode, true
	}
	return "", false
}

type counters struct {
	reads, queries, transactions, writes, inserts, deletes, conflicts, retries atomic.Int64
}

// Stats counts a store's requests since it was made.
type Stats struct {
	// Reads are point reads; Queries are query pages (range reads and
	// prune scans); Transactions are entity-group transactions, carrying
	// Writes entity writes; Inserts are single-entity requests (finding
	// and dead-letter inserts, one-by-one prune deletes, the outbox's
	// cooldown and entry writes and one-by-one decisions); Deletes count
	// the entities prune deleted.
	Reads, Queries, Transactions, Writes, Inserts, Deletes int64
	// Conflicts are transactions that failed because another writer got
	// there first (412, 409, 404 inside); Retries are requests repeated
	// after throttling or transient failures.
	Conflicts, Retries int64
}

// RoundTrips is the number of requests sent to the service.
func (s Stats) RoundTrips() int64 {
	return s.Reads + s.Queries + s.Transactions + s.Inserts + s.Retries
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Reads: s.stats.reads.Load(), Queries: s.stats.queries.Load(),
		Transactions: s.stats.transactions.Load(), Writes: s.stats.writes.Load(),
		Inserts: s.stats.inserts.Load(), Deletes: s.stats.deletes.Load(),
		Conflicts: s.stats.conflicts.Load(), Retries: s.stats.retries.Load(),
	}
}

// CachedEntities returns how many entities the instance cache holds.
func (s *Store) CachedEntities() int { return s.cache.len() }

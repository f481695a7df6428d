package tablestore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/state"
)

// item is one entity of an Update.
type item struct {
	k     state.Key
	ref   entityRef
	base  *stored // what the write is conditional on; base.e nil: absent
	fresh bool    // base was read by this Update, not taken from the cache
	next  *state.Entity
	body  []byte // the encoded next
	size  int    // next's estimated memory
}

// Update implements state.Store. Entities are read (unless cached),
// changed by fn, and written back in entity-group transactions, one or
// more per partition; a transaction that another writer beat is re-read
// and re-applied, as often as needed up to MaxConflictRounds.
func (s *Store) Update(ctx context.Context, keys []state.Key, fn state.ApplyFunc) (map[state.Key]*state.Entity, error) {
	out := make(map[state.Key]*state.Entity, len(keys))
	pending := make([]state.Key, 0, len(keys))
	seen := make(map[state.Key]bool, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			pending = append(pending, k)
		}
	}
	fresh := map[state.Key]bool{} // keys to read from the table, not the cache
	for round := 0; len(pending) > 0; round++ {
		if round >= s.opts.MaxConflictRounds {
			return nil, fmt.Errorf("%w: %d entities still conflicting after %d rounds", ErrContention, len(pending), round)
		}
		if round > 0 {
			// Let the writer that beat us finish; spread competing retries.
			if err := sleep(ctx, jitter(min(time.Duration(round)*5*time.Millisecond, 200*time.Millisecond))); err != nil {
				return nil, err
			}
		}
		items := make([]*item, 0, len(pending))
		var toRead []state.Key
		for _, k := range pending {
			it := &item{k: k, ref: refOf(k)}
			if !fresh[k] {
				if st, ok := s.cache.get(k); ok {
					it.base = st
				}
			}
			if it.base == nil {
				toRead = append(toRead, k)
			}
			items = append(items, it)
		}
		if len(toRead) > 0 {
			got, err := s.read(ctx, toRead)
			if err != nil {
				return nil, fmt.Errorf("tablestore: update: %w", err)
			}
			for _, it := range items {
				if it.base == nil {
					it.base, it.fresh = got[it.k], true
				}
			}
		}

		var writes []*item
		var next []state.Key
		for _, it := range items {
			e := it.base.e.Clone()
			if e == nil {
				e = &state.Entity{}
			}
			if !fn(it.k, e) {
				if !it.fresh {
					// Nothing to apply, by the cached copy: the input was
					// applied before. Confirm on the table, which may hold
					// more (another instance's writes) for the caller to see.
					fresh[it.k] = true
					next = append(next, it.k)
					continue
				}
				if it.base.e != nil {
					out[it.k] = it.base.e
				} else {
					out[it.k] = e
				}
				continue
			}
			body, jsonLen, err := encodeState(it.k, it.ref, e)
			if err != nil {
				return nil, fmt.Errorf("tablestore: update: %w", err)
			}
			it.next, it.body, it.size = e, body, memSize(jsonLen)
			writes = append(writes, it)
		}

		txs := groupTransactions(writes)
		var mu sync.Mutex
		err := s.parallel(ctx, len(txs), func(ctx context.Context, i int) error {
			tx := txs[i]
			etags, err := s.submit(ctx, tx)
			if errors.Is(err, errConflict) {
				mu.Lock()
				for _, it := range tx {
					s.cache.remove(it.k)
					fresh[it.k] = true
					next = append(next, it.k)
				}
				mu.Unlock()
				return nil
			}
			if err != nil {
				for _, it := range tx {
					s.cache.remove(it.k) // the write may or may not have happened
				}
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for j, it := range tx {
				if etags != nil && etags[j] != "" {
					s.cache.put(it.k, &stored{key: it.k, etag: etags[j], e: it.next, size: it.size}, it.size)
				} else {
					s.cache.remove(it.k)
				}
				out[it.k] = it.next
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("tablestore: update: %w", err)
		}
		pending = next
	}
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// groupTransactions splits writes into entity-group transactions: one
// PartitionKey each (the service's rule, which Azurite does not enforce),
// at most maxTxOps entities and maxTxBytes of request. Order within a
// partition is kept.
func groupTransactions(writes []*item) [][]*item {
	byPK := map[string]int{} // partition → index of its open transaction
	var txs [][]*item
	var sizes []int
	for _, it := range writes {
		n := len(it.body) + opOverhead
		i, ok := byPK[it.ref.pk]
		if !ok || len(txs[i]) >= maxTxOps || sizes[i]+n > maxTxBytes {
			txs = append(txs, nil)
			sizes = append(sizes, 0)
			i = len(txs) - 1
			byPK[it.ref.pk] = i
		}
		txs[i] = append(txs[i], it)
		sizes[i] += n
	}
	return txs
}

// errConflict marks a transaction another writer beat: an entity to insert
// exists (409), one to update changed (412) or is gone (404).
var errConflict = errors.New("conflict")

// txFailure is a transaction the service refused: the batch answers 202
// with the failing operation's response inside.
type txFailure struct {
	status int
	code   string
	// op is the index of the operation the service refused, from its
	// message ("3:The specified entity already exists..."); -1 when the
	// message does not say.
	op int
}

func (f *txFailure) Error() string {
	return fmt.Sprintf("entity group transaction failed: %d %s", f.status, f.code)
}

// submit sends one transaction and returns the new ETags of its entities
// (nil if the answer did not give them all); errConflict if another writer
// got there first.
func (s *Store) submit(ctx context.Context, tx []*item) ([]string, error) {
	actions := make([]aztables.TransactionAction, len(tx))
	pk := tx[0].ref.pk
	for i, it := range tx {
		if it.ref.pk != pk {
			return nil, fmt.Errorf("tablestore: internal error: transaction mixes partitions %s and %s", pk, it.ref.pk)
		}
		actions[i] = aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: it.body}
		if it.base != nil && it.base.e != nil {
			etag := azcore.ETag(it.base.etag)
			actions[i] = aztables.TransactionAction{ActionType: aztables.TransactionTypeUpdateReplace, Entity: it.body, IfMatch: &etag}
		}
	}
	n := s.stats.transactions.Add(1)
	s.stats.writes.Add(int64(len(tx)))
	if s.testBeforeTx != nil {
		if err := s.testBeforeTx(int(n)); err != nil {
			return nil, err
		}
	}
	etags, err := s.transact(ctx, s.state, actions)
	if err != nil {
		var f *txFailure
		if errors.As(err, &f) && (f.status == http.StatusConflict || f.status == http.StatusPreconditionFailed || f.status == http.StatusNotFound) {
			s.stats.conflicts.Add(1)
			return nil, errConflict
		}
		return nil, err
	}
	return etags, nil
}

// transact submits a transaction, retrying transient failures, and returns
// the ETags the service gave each operation (nil if it did not give all).
// A refused transaction's error is a *txFailure.
func (s *Store) transact(ctx context.Context, c *aztables.Client, actions []aztables.TransactionAction) ([]string, error) {
	var etags []string
	err := s.call(ctx, "transaction", func(ctx context.Context) error {
		var raw *http.Response
		_, err := c.SubmitTransaction(policy.WithCaptureResponse(ctx, &raw), actions, nil)
		if err != nil {
			var re *azcore.ResponseError
			if errors.As(err, &re) && re.StatusCode == http.StatusAccepted {
				// The service's way to refuse a transaction: 202, the
				// failing operation's own status inside.
				if f := transactionFailure(re.RawResponse); f != nil {
					return f
				}
			}
			return err
		}
		etags = transactionETags(raw, len(actions))
		return nil
	})
	return etags, err
}

// parts returns the HTTP responses inside a batch response, in order.
func parts(resp *http.Response) ([]*http.Response, error) {
	if resp == nil {
		return nil, errors.New("no response")
	}
	body, err := runtime.Payload(resp)
	if err != nil {
		return nil, err
	}
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return nil, fmt.Errorf("batch response is not multipart: %v", err)
	}
	var out []*http.Response
	var walk func(r io.Reader, boundary string, depth int) error
	walk = func(r io.Reader, boundary string, depth int) error {
		mr := multipart.NewReader(r, boundary)
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			ct, ps, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			if strings.HasPrefix(ct, "multipart/") && depth == 0 {
				if err := walk(p, ps["boundary"], depth+1); err != nil {
					return err
				}
				continue
			}
			b, err := io.ReadAll(p)
			if err != nil {
				return err
			}
			r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
	}
	if err := walk(bytes.NewReader(body), params["boundary"], 0); err != nil {
		return nil, err
	}
	return out, nil
}

// transactionFailure finds the failed operation in a refused batch.
func transactionFailure(resp *http.Response) *txFailure {
	ps, err := parts(resp)
	if err != nil {
		return nil
	}
	for _, p := range ps {
		if p.StatusCode < 400 {
			continue
		}
		f := &txFailure{status: p.StatusCode, op: -1}
		var e struct {
			OData struct {
				Code    string `json:"code"`
				Message struct {
					Value string `json:"value"`
				} `json:"message"`
			} `json:"odata.error"`
		}
		if b, err := io.ReadAll(p.Body); err == nil && json.Unmarshal(b, &e) == nil {
			f.code = e.OData.Code
			if n, _, ok := strings.Cut(e.OData.Message.Value, ":"); ok {
				if i, err := strconv.Atoi(n); err == nil && i >= 0 {
					f.op = i
				}
			}
		}
		return f
	}
	return nil
}

func transactionETags(resp *http.Response, n int) []string {
	ps, err := parts(resp)
	if err != nil || len(ps) != n {
		return nil
	}
	etags := make([]string, n)
	for i, p := range ps {
		if p.StatusCode >= 300 || p.Header.Get("ETag") == "" {
			return nil
		}
		etags[i] = p.Header.Get("ETag")
	}
	return etags
}

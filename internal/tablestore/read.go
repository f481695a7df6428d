package tablestore

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/state"
)

// Get implements state.Store: it always reads (another instance may have
// written since this one cached), in parallel, one point read per lone
// key and one range query per run of neighbouring blocks of a group.
func (s *Store) Get(ctx context.Context, keys []state.Key) (map[state.Key]*state.Entity, error) {
	got, err := s.read(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[state.Key]*state.Entity, len(got))
	for k, st := range got {
		if st.e != nil {
			out[k] = st.e
		}
	}
	return out, nil
}

// maxRunGap is the widest gap between two wanted blocks of a group that a
// range query still spans instead of two reads.
const maxRunGap = 3

// read returns, for every key, the entity as stored now (e nil when it
// does not exist), and refreshes the cache with what it learnt.
func (s *Store) read(ctx context.Context, keys []state.Key) (map[state.Key]*stored, error) {
	type want struct {
		k   state.Key
		ref entityRef
	}
	byPK := map[string][]want{}
	var pks []string
	seen := make(map[state.Key]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		ref := refOf(k)
		if _, ok := byPK[ref.pk]; !ok {
			pks = append(pks, ref.pk)
		}
		byPK[ref.pk] = append(byPK[ref.pk], want{k, ref})
	}
	// Jobs: a lone key, or a run of keys of one group close enough that
	// one query reads them all.
	type job struct{ ws []want }
	var jobs []job
	for _, pk := range pks {
		ws := byPK[pk]
		slices.SortFunc(ws, func(a, b want) int {
			return cmp.Or(cmp.Compare(a.k.Rule, b.k.Rule), cmp.Compare(a.k.Group, b.k.Group), cmp.Compare(a.k.Block, b.k.Block))
		})
		start := 0
		for i := 1; i <= len(ws); i++ {
			if i == len(ws) || ws[i].k.Rule != ws[i-1].k.Rule || ws[i].k.Group != ws[i-1].k.Group ||
				ws[i].k.Block-ws[i-1].k.Block > maxRunGap {
				jobs = append(jobs, job{ws[start:i]})
				start = i
			}
		}
	}

	out := make(map[state.Key]*stored, len(seen))
	var mu sync.Mutex
	err := s.parallel(ctx, len(jobs), func(ctx context.Context, j int) error {
		ws := jobs[j].ws
		found := map[state.Key]*stored{}
		if len(ws) == 1 {
			st, err := s.pointRead(ctx, ws[0].k, ws[0].ref)
			if err != nil {
				return err
			}
			if st != nil {
				found[ws[0].k] = st
			}
		} else {
			filter := "PartitionKey eq " + odataQuote(ws[0].ref.pk) +
				" and RowKey ge " + odataQuote(ws[0].ref.rk) + " and RowKey le " + odataQuote(ws[len(ws)-1].ref.rk)
			err := s.query(ctx, s.state, filter, nil, func(raw []byte) error {
				st, err := decodeState(raw)
				if err != nil {
					return err
				}
				if st.key.Rule == ws[0].k.Rule && st.key.Group == ws[0].k.Group { // not another group hashed alike
					found[st.key] = st
					s.cache.put(st.key, st, st.size) // fresh, wanted or not
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, w := range ws {
			st := found[w.k]
			if st == nil {
				st = &stored{key: w.k, size: 64} // absent now: an insert will tell if that changes
			}
			s.cache.put(st.key, st, st.size)
			out[w.k] = st
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// get reads the entity pk, rk of table c (one request, retried as call
// retries), counting the read; found is false when it does not exist.
func (s *Store) get(ctx context.Context, c *aztables.Client, what, pk, rk string) (resp aztables.GetEntityResponse, found bool, err error) {
	s.stats.reads.Add(1)
	err = s.call(ctx, what, func(ctx context.Context) error {
		var err error
		resp, err = c.GetEntity(ctx, pk, rk, nil)
		return err
	})
	if isStatus(err, http.StatusNotFound) {
		return resp, false, nil
	}
	return resp, err == nil, err
}

// pointRead reads one state entity; nil if it does not exist.
func (s *Store) pointRead(ctx context.Context, k state.Key, ref entityRef) (*stored, error) {
	resp, found, err := s.get(ctx, s.state, "read state", ref.pk, ref.rk)
	if err != nil || !found {
		return nil, err
	}
	got, err := decodeState(resp.Value)
	if err != nil {
		return nil, err
	}
	if got.key != k {
		return nil, nil // another key hashed to the same place: k's entity does not exist
	}
	if got.etag == "" {
		got.etag = string(resp.ETag)
	}
	return got, nil
}

// query runs a filtered query over a table, page by page. Each page is
// fetched by a pager of its own, started at the previous page's
// continuation, so a failed page can be fetched again (a pager is done
// after an error).
func (s *Store) query(ctx context.Context, c *aztables.Client, filter string, sel *string, each func(raw []byte) error) error {
	var nextPK, nextRK *string
	for {
		s.stats.queries.Add(1)
		var page aztables.ListEntitiesResponse
		err := s.call(ctx, "query", func(ctx context.Context) error {
			var err error
			pager := c.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Select: sel,
				NextPartitionKey: nextPK, NextRowKey: nextRK})
			page, err = pager.NextPage(ctx)
			return err
		})
		if err != nil {
			return err
		}
		for _, raw := range page.Entities {
			if err := each(raw); err != nil {
				return err
			}
		}
		nextPK, nextRK = page.NextPartitionKey, page.NextRowKey
		if (nextPK == nil || *nextPK == "") && (nextRK == nil || *nextRK == "") {
			return nil
		}
	}
}

// parallel runs f(0..n-1) with at most opts.Concurrency at a time and
// returns the first error; after one, no new ones start.
func (s *Store) parallel(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	if n == 1 {
		return f(ctx, 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, s.opts.Concurrency)
	var (
		wg      sync.WaitGroup
		once    sync.Once
		first   error
		started int
	)
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		started++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && started < n {
		return context.Cause(ctx) // the caller's context ended before every job started
	}
	return first
}

package tablestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// AddFinding implements state.Store: it inserts the finding into the
// findings table (PartitionKey the ID's first two characters, RowKey the
// ID); if the ID is there already, added is false. An insert whose answer
// was lost (a timeout, a broken connection) and that is retried finds its
// own entity: a nonce written with it tells it apart from another
// attempt's, so the finding is reported added exactly once.
func (s *Store) AddFinding(ctx context.Context, id string, body []byte) (bool, error) {
	if !validKey(id) {
		return false, fmt.Errorf("tablestore: finding ID %q is not a valid row key", id)
	}
	pk := id[:min(2, len(id))]
	nonce := newNonce()
	props := map[string]any{propNonce: nonce}
	if err := putChunks(props, packBytes(body, true)); err != nil {
		return false, fmt.Errorf("tablestore: finding %s: %w", id, err)
	}
	ent, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: id}, Properties: props})
	if err != nil {
		return false, err
	}
	s.stats.inserts.Add(1)
	attempts := 0
	err = s.call(ctx, "record finding", func(ctx context.Context) error {
		attempts++
		_, err := s.findings.AddEntity(ctx, ent, nil)
		return err
	})
	if st, _, ok := statusOf(err); ok && st == http.StatusConflict {
		if attempts == 1 {
			return false, nil // recorded before, by another attempt or instance
		}
		// An earlier try of ours may have been the one that recorded it.
		s.stats.reads.Add(1)
		var got aztables.GetEntityResponse
		if err := s.call(ctx, "read finding", func(ctx context.Context) error {
			var err error
			got, err = s.findings.GetEntity(ctx, pk, id, nil)
			return err
		}); err != nil {
			return false, fmt.Errorf("tablestore: finding %s: %w", id, err)
		}
		var e aztables.EDMEntity
		if err := json.Unmarshal(got.Value, &e); err != nil {
			return false, fmt.Errorf("tablestore: finding %s: %w", id, err)
		}
		return e.Properties[propNonce] == nonce, nil
	}
	if err != nil {
		return false, fmt.Errorf("tablestore: record finding %s: %w", id, err)
	}
	return true, nil
}

// Finding returns a recorded finding's body (tests, tools); ok is false if
// the ID is not recorded.
func (s *Store) Finding(ctx context.Context, id string) (body []byte, ok bool, err error) {
	if !validKey(id) {
		return nil, false, fmt.Errorf("tablestore: finding ID %q is not a valid row key", id)
	}
	s.stats.reads.Add(1)
	var got aztables.GetEntityResponse
	err = s.call(ctx, "read finding", func(ctx context.Context) error {
		var err error
		got, err = s.findings.GetEntity(ctx, id[:min(2, len(id))], id, nil)
		return err
	})
	if st, _, isResp := statusOf(err); isResp && st == http.StatusNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("tablestore: read finding %s: %w", id, err)
	}
	var e aztables.EDMEntity
	if err := json.Unmarshal(got.Value, &e); err != nil {
		return nil, false, err
	}
	data, err := getChunks(e.Properties)
	if err != nil {
		return nil, false, err
	}
	body, err = unpackBytes(data)
	return body, err == nil, err
}

func newNonce() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

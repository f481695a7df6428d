package tablestore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/delivery"
)

// SilencesTable is the suffix of the table of silences added at run time.
const SilencesTable = "silences"

// Silences is a delivery.SilenceStore on a table of its own
// (prefix+"silences"): one entity per silence, PartitionKey "silence",
// RowKey its ID, the silence as JSON in J. One query lists them all;
// expiring one is a replace with the ETag read.
type Silences struct {
	s *Store
	c *aztables.Client
}

var _ delivery.SilenceStore = (*Silences)(nil)

const pkSilence = "silence"

// Silences returns the store's silences, creating their table if it is
// missing.
func (s *Store) Silences(ctx context.Context, client *aztables.ServiceClient) (*Silences, error) {
	name := s.opts.Prefix + SilencesTable
	err := s.call(ctx, "create table "+name, func(ctx context.Context) error {
		_, err := client.CreateTable(ctx, name, nil)
		return err
	})
	if code, ok := errorCode(err); ok && code == string(aztables.TableAlreadyExists) {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("tablestore: create table %s: %w", name, err)
	}
	return &Silences{s: s, c: client.NewClient(name)}, nil
}

// AddSilence implements delivery.SilenceStore.
func (t *Silences) AddSilence(ctx context.Context, sl delivery.Silence) error {
	if !plainKeyRE.MatchString(sl.ID) {
		return fmt.Errorf("tablestore: silence ID %q is not plain", sl.ID)
	}
	js, err := json.Marshal(&sl)
	if err != nil {
		return err
	}
	body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pkSilence, RowKey: sl.ID},
		Properties: map[string]any{propJSON: string(js)}})
	if err != nil {
		return err
	}
	t.s.stats.inserts.Add(1)
	err = t.s.call(ctx, "silence add", func(ctx context.Context) error {
		_, err := t.c.AddEntity(ctx, body, nil)
		return err
	})
	if isStatus(err, http.StatusConflict) {
		return fmt.Errorf("silence %s exists", sl.ID)
	}
	if err != nil {
		return fmt.Errorf("tablestore: silence add: %w", err)
	}
	return nil
}

// Silences implements delivery.SilenceStore.
func (t *Silences) Silences(ctx context.Context) ([]delivery.Silence, error) {
	var out []delivery.Silence
	filter := fmt.Sprintf("PartitionKey eq '%s'", pkSilence)
	err := t.s.query(ctx, t.c, filter, nil, func(raw []byte) error {
		sl, err := decodeSilence(raw)
		if err != nil {
			return err
		}
		out = append(out, sl)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tablestore: silences: %w", err)
	}
	slices.SortFunc(out, func(a, b delivery.Silence) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func decodeSilence(raw []byte) (delivery.Silence, error) {
	var ent aztables.EDMEntity
	if err := json.Unmarshal(raw, &ent); err != nil {
		return delivery.Silence{}, err
	}
	js, _ := ent.Properties[propJSON].(string)
	var sl delivery.Silence
	if err := json.Unmarshal([]byte(js), &sl); err != nil {
		return sl, fmt.Errorf("silence %s: %w", ent.RowKey, err)
	}
	sl.ID = ent.RowKey
	return sl, nil
}

// ExpireSilence implements delivery.SilenceStore.
func (t *Silences) ExpireSilence(ctx context.Context, id string, at time.Time) (delivery.Silence, bool, error) {
	if !plainKeyRE.MatchString(id) {
		return delivery.Silence{}, false, nil
	}
	for try := 0; try < 8; try++ {
		resp, found, err := t.s.get(ctx, t.c, "silence read", pkSilence, id)
		if err != nil {
			return delivery.Silence{}, false, fmt.Errorf("tablestore: silence %s: %w", id, err)
		}
		if !found {
			return delivery.Silence{}, false, nil
		}
		sl, err := decodeSilence(resp.Value)
		if err != nil {
			return sl, false, fmt.Errorf("tablestore: %w", err)
		}
		if !sl.Ends.IsZero() && !sl.Ends.After(at) {
			return sl, true, nil // over already
		}
		sl.Ends = delivery.ExpiredAt(sl, at)
		js, err := json.Marshal(&sl)
		if err != nil {
			return sl, false, err
		}
		body, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pkSilence, RowKey: id},
			Properties: map[string]any{propJSON: string(js)}})
		if err != nil {
			return sl, false, err
		}
		etag := resp.ETag
		if etag == "" {
			etag = azcore.ETagAny
		}
		t.s.stats.inserts.Add(1)
		err = t.s.call(ctx, "silence expire", func(ctx context.Context) error {
			_, err := t.c.UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeReplace, IfMatch: &etag})
			return err
		})
		if isStatus(err, http.StatusPreconditionFailed) {
			continue // changed meanwhile: read again
		}
		if err != nil {
			return sl, false, fmt.Errorf("tablestore: silence %s: %w", id, err)
		}
		return sl, true, nil
	}
	return delivery.Silence{}, false, errors.New("tablestore: silence " + id + ": too many concurrent writers")
}

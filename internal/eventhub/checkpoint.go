package eventhub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// CheckpointsTable is the suffix of the checkpoint table's name: the table
// is <prefix>checkpoints.
const CheckpointsTable = "checkpoints"

// StoreOptions configure a CheckpointStore. Zero values take the defaults
// shown.
type StoreOptions struct {
	// Prefix is put before the table name, as for kvwatch's other tables
	// (KVWATCH_TABLE_PREFIX): letters and digits, starting with a letter.
	Prefix string
	// TryTimeout bounds one request (default 15s).
	TryTimeout time.Duration
	// RetryBudget bounds the time spent retrying one request after
	// throttling, server errors, timeouts or broken connections (default
	// 30s, well under the Processor's 60s ownership expiry); RetryDelay and
	// MaxRetryDelay shape the backoff (default 200ms, 5s).
	RetryBudget   time.Duration
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
}

func (o *StoreOptions) defaults() {
	if o.TryTimeout <= 0 {
		o.TryTimeout = 15 * time.Second
	}
	if o.RetryBudget <= 0 {
		o.RetryBudget = 30 * time.Second
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 200 * time.Millisecond
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = 5 * time.Second
	}
}

// CheckpointStore is an azeventhubs.CheckpointStore on Azure Table Storage,
// following the contract of the SDK's blob checkpoint store:
//
//   - one table, <prefix>checkpoints; PartitionKey the namespace, event hub
//     and consumer group (lower-cased: Event Hubs names are not case
//     sensitive), RowKey "o:<partition>" for an ownership and
//     "c:<partition>" for a checkpoint;
//   - an ownership claim without an ETag inserts (and fails if another
//     processor created the entity first); a claim with an ETag replaces
//     the entity only if it still has that ETag. Claims that lose are left
//     out of ClaimOwnership's result, which is not an error; the claims
//     that win come back with their new ETag and LastModifiedTime;
//   - LastModifiedTime is the service's Timestamp of the entity, which the
//     Processor compares with its own clock to expire ownerships (as it
//     does with the blob store's Last-Modified);
//   - SetCheckpoint overwrites the checkpoint unconditionally: the caller is
//     assumed to own the partition.
//
// It is safe for concurrent use.
type CheckpointStore struct {
	table *aztables.Client
	opts  StoreOptions
}

var _ azeventhubs.CheckpointStore = (*CheckpointStore)(nil)

var tableNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)

// TableName returns the checkpoint table's name for a prefix, or an error
// if it breaks Table Storage's rules.
func TableName(prefix string) (string, error) {
	n := prefix + CheckpointsTable
	if !tableNameRE.MatchString(n) {
		return "", fmt.Errorf("table prefix %q: table name %q is not valid (letters and digits, "+
			"starting with a letter, 3-63 characters)", prefix, n)
	}
	return n, nil
}

// NewCheckpointStore returns a checkpoint store on the table opts.Prefix
// names, creating it if it is missing.
func NewCheckpointStore(ctx context.Context, client *aztables.ServiceClient, opts StoreOptions) (*CheckpointStore, error) {
	if client == nil {
		return nil, errors.New("checkpoint store: no Table Storage client")
	}
	opts.defaults()
	name, err := TableName(opts.Prefix)
	if err != nil {
		return nil, err
	}
	s := &CheckpointStore{table: client.NewClient(name), opts: opts}
	err = s.call(ctx, "create table "+name, func(ctx context.Context) error {
		_, err := client.CreateTable(ctx, name, nil)
		return err
	})
	if _, code, ok := status(err); ok && code == string(aztables.TableAlreadyExists) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Row key prefixes.
const (
	ownershipRow  = "o:"
	checkpointRow = "c:"
)

// keyPart escapes s for use in a Table key: bytes other than ASCII letters,
// digits and . _ $ - become ~xx (hex), so the parts joined with | never
// contain a character Table Storage refuses (/ \ # ? and control
// characters), a quote, or the separator.
func keyPart(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '$', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "~%02x", c)
		}
	}
	return b.String()
}

// partitionKey is the PartitionKey of a hub's consumer group.
func partitionKey(namespace, hub, group string) (string, error) {
	if namespace == "" || hub == "" || group == "" {
		return "", errors.New("checkpoint store: namespace, event hub and consumer group must all be given")
	}
	return keyPart(strings.ToLower(namespace)) + "|" + keyPart(strings.ToLower(hub)) + "|" +
		keyPart(strings.ToLower(group)), nil
}

func rowKey(kind, partition string) (string, error) {
	if partition == "" {
		return "", errors.New("checkpoint store: partition ID must be given")
	}
	return kind + keyPart(partition), nil
}

// entity is a stored ownership or checkpoint as the service returns it.
type entity struct {
	ETag           string          `json:"odata.etag"`
	PartitionKey   string          `json:"PartitionKey"`
	RowKey         string          `json:"RowKey"`
	Timestamp      time.Time       `json:"Timestamp"`
	PartitionID    *string         `json:"PartitionID"`
	OwnerID        *string         `json:"OwnerID"`
	Offset         *string         `json:"Offset"`
	SequenceNumber json.RawMessage `json:"SequenceNumber"`
}

func (e *entity) partition(kind string) string {
	if e.PartitionID != nil && *e.PartitionID != "" {
		return *e.PartitionID
	}
	p, _ := url.PathUnescape(strings.ReplaceAll(strings.TrimPrefix(e.RowKey, kind), "~", "%"))
	return p
}

// ClaimOwnership implements azeventhubs.CheckpointStore: it tries every
// claim and returns those that succeeded, with their new ETag and
// LastModifiedTime. A claim that another processor beat (the entity was
// created, changed or deleted since the caller read it) is left out; an
// error is returned only when the service could not be reached or refused
// the request for another reason.
func (s *CheckpointStore) ClaimOwnership(ctx context.Context, partitionOwnership []azeventhubs.Ownership, _ *azeventhubs.ClaimOwnershipOptions) ([]azeventhubs.Ownership, error) {
	var claimed []azeventhubs.Ownership
	for _, o := range partitionOwnership {
		pk, err := partitionKey(o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup)
		if err != nil {
			return nil, err
		}
		rk, err := rowKey(ownershipRow, o.PartitionID)
		if err != nil {
			return nil, err
		}
		body, err := json.Marshal(map[string]any{
			"PartitionKey":  pk,
			"RowKey":        rk,
			"Namespace":     o.FullyQualifiedNamespace,
			"EventHub":      o.EventHubName,
			"ConsumerGroup": o.ConsumerGroup,
			"PartitionID":   o.PartitionID,
			"OwnerID":       o.OwnerID,
		})
		if err != nil {
			return nil, err
		}
		var etag azcore.ETag
		var resp *http.Response
		cctx := policy.WithCaptureResponse(ctx, &resp)
		what := "claim partition " + o.PartitionID
		if o.ETag == nil || *o.ETag == "" {
			err = s.call(cctx, what, func(ctx context.Context) error {
				r, err := s.table.AddEntity(ctx, body, nil)
				etag = r.ETag
				return err
			})
		} else {
			err = s.call(cctx, what, func(ctx context.Context) error {
				r, err := s.table.UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{
					IfMatch: o.ETag, UpdateMode: aztables.UpdateModeReplace})
				etag = r.ETag
				return err
			})
		}
		if st, _, ok := status(err); ok && (st == http.StatusConflict || st == http.StatusPreconditionFailed || st == http.StatusNotFound) {
			// Another processor created, changed or deleted it first.
			continue
		}
		if err != nil {
			return nil, err
		}
		o.ETag = &etag
		o.LastModifiedTime = modified(etag, resp)
		claimed = append(claimed, o)
	}
	return claimed, nil
}

// modified returns when an entity was written: the Timestamp that Table
// Storage encodes in its ETag (W/"datetime'2026-11-24T10%3A00%3A00.1234567Z'"),
// else the answer's Date, else now.
func modified(etag azcore.ETag, resp *http.Response) time.Time {
	s := string(etag)
	if i := strings.Index(s, "datetime'"); i >= 0 {
		s = s[i+len("datetime'"):]
		if j := strings.IndexByte(s, '\''); j >= 0 {
			if u, err := url.QueryUnescape(s[:j]); err == nil {
				if t, err := time.Parse(time.RFC3339Nano, u); err == nil {
					return t.UTC()
				}
			}
		}
	}
	if resp != nil {
		if t, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
			return t.UTC()
		}
	}
	return time.Now().UTC()
}

// ListOwnership implements azeventhubs.CheckpointStore.
func (s *CheckpointStore) ListOwnership(ctx context.Context, fullyQualifiedNamespace string, eventHubName string, consumerGroup string, _ *azeventhubs.ListOwnershipOptions) ([]azeventhubs.Ownership, error) {
	ents, err := s.list(ctx, fullyQualifiedNamespace, eventHubName, consumerGroup, ownershipRow)
	if err != nil {
		return nil, err
	}
	out := make([]azeventhubs.Ownership, 0, len(ents))
	for _, e := range ents {
		o := azeventhubs.Ownership{
			FullyQualifiedNamespace: fullyQualifiedNamespace,
			EventHubName:            eventHubName,
			ConsumerGroup:           consumerGroup,
			PartitionID:             e.partition(ownershipRow),
			LastModifiedTime:        e.Timestamp.UTC(),
		}
		if e.OwnerID != nil {
			o.OwnerID = *e.OwnerID // "" : relinquished
		}
		if e.ETag != "" {
			etag := azcore.ETag(e.ETag)
			o.ETag = &etag
		}
		out = append(out, o)
	}
	return out, nil
}

// ListCheckpoints implements azeventhubs.CheckpointStore.
func (s *CheckpointStore) ListCheckpoints(ctx context.Context, fullyQualifiedNamespace string, eventHubName string, consumerGroup string, _ *azeventhubs.ListCheckpointsOptions) ([]azeventhubs.Checkpoint, error) {
	ents, err := s.list(ctx, fullyQualifiedNamespace, eventHubName, consumerGroup, checkpointRow)
	if err != nil {
		return nil, err
	}
	out := make([]azeventhubs.Checkpoint, 0, len(ents))
	for _, e := range ents {
		cp := azeventhubs.Checkpoint{
			FullyQualifiedNamespace: fullyQualifiedNamespace,
			EventHubName:            eventHubName,
			ConsumerGroup:           consumerGroup,
			PartitionID:             e.partition(checkpointRow),
			Offset:                  e.Offset,
		}
		if len(e.SequenceNumber) > 0 && string(e.SequenceNumber) != "null" {
			raw := strings.Trim(string(e.SequenceNumber), `"`)
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("checkpoint store: checkpoint of partition %s: sequence number %q is not a number",
					cp.PartitionID, raw)
			}
			cp.SequenceNumber = &n
		}
		out = append(out, cp)
	}
	return out, nil
}

// SetCheckpoint implements azeventhubs.CheckpointStore. Like the blob
// store, it does not guard against a processor that lost the partition:
// ownership is assumed.
func (s *CheckpointStore) SetCheckpoint(ctx context.Context, checkpoint azeventhubs.Checkpoint, _ *azeventhubs.SetCheckpointOptions) error {
	pk, err := partitionKey(checkpoint.FullyQualifiedNamespace, checkpoint.EventHubName, checkpoint.ConsumerGroup)
	if err != nil {
		return err
	}
	rk, err := rowKey(checkpointRow, checkpoint.PartitionID)
	if err != nil {
		return err
	}
	m := map[string]any{
		"PartitionKey":  pk,
		"RowKey":        rk,
		"Namespace":     checkpoint.FullyQualifiedNamespace,
		"EventHub":      checkpoint.EventHubName,
		"ConsumerGroup": checkpoint.ConsumerGroup,
		"PartitionID":   checkpoint.PartitionID,
	}
	if checkpoint.Offset != nil {
		m["Offset"] = *checkpoint.Offset
	}
	if checkpoint.SequenceNumber != nil {
		m["SequenceNumber"] = strconv.FormatInt(*checkpoint.SequenceNumber, 10)
		m["SequenceNumber@odata.type"] = "Edm.Int64"
	}
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.call(ctx, "checkpoint partition "+checkpoint.PartitionID, func(ctx context.Context) error {
		_, err := s.table.UpsertEntity(ctx, body, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
		return err
	})
}

// list returns the entities of one kind (ownership or checkpoint) of a
// hub's consumer group.
func (s *CheckpointStore) list(ctx context.Context, namespace, hub, group, kind string) ([]entity, error) {
	pk, err := partitionKey(namespace, hub, group)
	if err != nil {
		return nil, err
	}
	// kind is "o:" or "c:"; the next character after ':' is ';'.
	filter := fmt.Sprintf("PartitionKey eq '%s' and RowKey ge '%s' and RowKey lt '%s;'",
		pk, kind, strings.TrimSuffix(kind, ":"))
	var out []entity
	var nextPK, nextRK *string
	for {
		// A pager that failed cannot be asked again: each page, and each
		// retry of it, gets a new pager starting at the continuation.
		var page aztables.ListEntitiesResponse
		err := s.call(ctx, "list "+map[string]string{ownershipRow: "ownerships", checkpointRow: "checkpoints"}[kind],
			func(ctx context.Context) error {
				pager := s.table.NewListEntitiesPager(&aztables.ListEntitiesOptions{
					Filter: &filter, NextPartitionKey: nextPK, NextRowKey: nextRK})
				var err error
				page, err = pager.NextPage(ctx)
				return err
			})
		if err != nil {
			return nil, err
		}
		for _, raw := range page.Entities {
			var e entity
			if err := json.Unmarshal(raw, &e); err != nil {
				return nil, fmt.Errorf("checkpoint store: an entity does not decode: %w", err)
			}
			out = append(out, e)
		}
		if (page.NextPartitionKey == nil || *page.NextPartitionKey == "") &&
			(page.NextRowKey == nil || *page.NextRowKey == "") {
			break
		}
		nextPK, nextRK = page.NextPartitionKey, page.NextRowKey
	}
	return out, nil
}

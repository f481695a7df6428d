package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// DigestSchemaVersion is the version of a digest's JSON form (the
// "schema" field of the body and the X-Kvwatch-Schema header).
const DigestSchemaVersion = "kvwatch.digest/v1"

// Digest is a digest as this receiver sends it, already encoded
// (internal/digest depends on this package through delivery and config,
// so it cannot be passed the report itself).
type Digest struct {
	// ID names the digest, e.g. "daily-2026-11-23"; sent as
	// X-Kvwatch-Digest-Id, the same for every attempt, so the endpoint
	// can drop a second delivery.
	ID string
	// JSON is the body: an object whose "schema" is DigestSchemaVersion.
	JSON []byte
}

// SendDigest posts a digest as JSON, with the same headers, signature and
// error classes as Notify.
func (n *Notifier) SendDigest(ctx context.Context, d Digest) error {
	if len(d.JSON) == 0 {
		return notify.Wrap("webhook "+n.name, notify.Permanent(errors.New("digest "+d.ID+" has no body")))
	}
	timeout, _ := time.ParseDuration(n.cfg.Timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(d.JSON))
	if err != nil {
		return notify.Wrap("webhook "+n.name, notify.Permanent(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "kvwatch")
	req.Header.Set("X-Kvwatch-Digest-Id", d.ID)
	req.Header.Set("X-Kvwatch-Schema", DigestSchemaVersion)
	for k, v := range n.cfg.Headers {
		req.Header.Set(k, v)
	}
	if n.cfg.Secret != "" {
		ts := n.now().Unix()
		req.Header.Set("X-Kvwatch-Timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("X-Kvwatch-Signature", Sign(n.cfg.Secret, ts, d.JSON))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return notify.Wrap("webhook "+n.name, notify.Temporary(fmt.Errorf("digest %s: %w", d.ID, err), 0))
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err := notify.FromStatus(resp, string(excerpt), n.now()); err != nil {
		return notify.Wrap("webhook "+n.name, err)
	}
	return nil
}

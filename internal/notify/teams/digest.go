package teams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// DigestMaxBytes is the largest digest message sent: Teams' limit
// (MaxMaxBytes). digest.Card keeps a card within 27 KB, which leaves room
// for the envelope; the receiver's max_bytes bounds alerts only, since a
// digest card cannot be trimmed here.
const DigestMaxBytes = MaxMaxBytes

// Digest is a digest as this receiver sends it: the Adaptive Card
// (digest.Card) and an id for errors. The receiver takes it rendered
// because internal/digest depends on this package (through delivery and
// config).
type Digest struct {
	// ID names the digest in errors, e.g. "daily-2026-11-23".
	ID string
	// Card is the Adaptive Card, a JSON object.
	Card map[string]any
}

// DigestMessage renders the webhook body for a digest: the message
// envelope Workflows expects around the card, as compact JSON. A body
// over DigestMaxBytes is an error.
func DigestMessage(d Digest) ([]byte, error) {
	if d.Card == nil {
		return nil, fmt.Errorf("teams: digest %s has no card", d.ID)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(digestEnvelope{Type: "message", Attachments: []digestAttachment{{ContentType: ContentType, Content: d.Card}}})
	if err != nil {
		return nil, fmt.Errorf("teams: encode digest %s: %w", d.ID, err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > DigestMaxBytes {
		return nil, fmt.Errorf("teams: digest %s is %d bytes, over Teams' limit of %d", d.ID, len(b), DigestMaxBytes)
	}
	return b, nil
}

type digestEnvelope struct {
	Type        string             `json:"type"`
	Attachments []digestAttachment `json:"attachments"`
}

type digestAttachment struct {
	ContentType string         `json:"contentType"`
	ContentURL  *string        `json:"contentUrl"`
	Content     map[string]any `json:"content"`
}

// SendDigest posts a digest card, paced with the alerts to the same
// webhook. Errors are classified as Notify's: temporary for 408, 425, 429,
// 5xx, timeouts and connection failures; permanent for other answers and
// for a card over Teams' limit. No error quotes the webhook's query.
func (n *Notifier) SendDigest(ctx context.Context, d Digest) error {
	body, err := DigestMessage(d)
	if err != nil {
		return notify.Wrap(n.name, notify.Permanent(err))
	}
	return notify.Wrap(n.name, n.postBody(ctx, body))
}

// postBody sends one rendered body (an alert's or a digest's message)
// through the pace: 2xx is accepted; timeouts, 429 and 5xx are temporary;
// no error quotes the webhook's query.
func (n *Notifier) postBody(ctx context.Context, body []byte) error {
	if err := n.pace.wait(ctx); err != nil {
		return notify.Temporary(fmt.Errorf("waiting for the webhook's pace: %w", err), 0)
	}
	rctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(fmt.Errorf("request to %s: %s", notify.RedactURL(n.url), notify.Redact(err.Error())))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "kvwatch")
	resp, err := n.client.Do(req)
	if err != nil {
		// net/http quotes the whole URL, signature included.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = notify.RedactURL(n.url)
		}
		if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
			return notify.Temporary(fmt.Errorf("no answer from %s within %s", notify.RedactURL(n.url), n.timeout), 0)
		}
		return notify.Temporary(err, 0)
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	return notify.FromStatus(resp, string(excerpt), n.now())
}

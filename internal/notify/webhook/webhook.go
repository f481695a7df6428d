// Package webhook sends alerts as JSON to any HTTP endpoint: PagerDuty,
// Opsgenie, a Logic App, a SIEM. The payload is the alert itself, with a
// versioned schema (alert.SchemaVersion), optionally signed with
// HMAC-SHA256.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/notify"
)

// Config configures a webhook receiver.
type Config struct {
	// URL receives a POST of the alert as JSON. It may carry secrets
	// (tokens in the query): it never appears in logs or errors.
	URL string `yaml:"url"`
	// Secret, when set, signs each request: header
	// X-Kvwatch-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">
	// with X-Kvwatch-Timestamp: <unix seconds>.
	Secret string `yaml:"secret"`
	// Headers are added to every request (for example an API key header).
	Headers map[string]string `yaml:"headers"`
	// Timeout per request, a Go duration; default 10s.
	Timeout string `yaml:"timeout"`
}

// Defaults fills in unset values.
func (c *Config) Defaults() {
	if c.Timeout == "" {
		c.Timeout = "10s"
	}
}

// Validate reports every problem.
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		errs = append(errs, errors.New("url is required"))
	case err != nil || u.Host == "":
		errs = append(errs, errors.New("url is not a valid URL"))
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		errs = append(errs, fmt.Errorf("url %s must use https", notify.RedactURL(c.URL)))
	}
	if c.Timeout != "" {
		if d, err := time.ParseDuration(c.Timeout); err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("timeout %q is not a positive duration", c.Timeout))
		}
	}
	for k := range c.Headers {
		if k == "" || http.CanonicalHeaderKey(k) == "Content-Type" {
			errs = append(errs, fmt.Errorf("headers: %q cannot be set", k))
		}
	}
	return errors.Join(errs...)
}

func isLoopback(h string) bool { return h == "127.0.0.1" || h == "localhost" || h == "::1" }

// Notifier posts alerts to one webhook.
type Notifier struct {
	name   string
	cfg    Config
	client *http.Client
	now    func() time.Time
}

// New returns a notifier; client may be shared.
func New(name string, cfg Config, client *http.Client, now func() time.Time) (*Notifier, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook %s: %w", name, err)
	}
	if now == nil {
		now = time.Now
	}
	return &Notifier{name: name, cfg: cfg, client: client, now: now}, nil
}

// Payload is the JSON body: the alert.
func Payload(a *alert.Alert) ([]byte, error) { return json.Marshal(a) }

// Sign returns the signature header value for body at ts.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Notify implements delivery's Notifier.
func (n *Notifier) Notify(ctx context.Context, a *alert.Alert) error {
	body, err := Payload(a)
	if err != nil {
		return notify.Permanent(fmt.Errorf("webhook %s: encode: %w", n.name, err))
	}
	timeout, _ := time.ParseDuration(n.cfg.Timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return notify.Wrap("webhook "+n.name, notify.Permanent(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "kvwatch")
	req.Header.Set("X-Kvwatch-Alert-Id", a.ID)
	req.Header.Set("X-Kvwatch-Schema", alert.SchemaVersion)
	for k, v := range n.cfg.Headers {
		req.Header.Set(k, v)
	}
	if n.cfg.Secret != "" {
		ts := n.now().Unix()
		req.Header.Set("X-Kvwatch-Timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("X-Kvwatch-Signature", Sign(n.cfg.Secret, ts, body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return notify.Wrap("webhook "+n.name, notify.Temporary(err, 0))
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err := notify.FromStatus(resp, string(excerpt), n.now()); err != nil {
		return notify.Wrap("webhook "+n.name, err)
	}
	return nil
}

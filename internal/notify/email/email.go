// Package email is the email receiver: one mail per alert, with a plain
// text and an HTML part, sent over SMTP (submission with STARTTLS or
// implicit TLS, AUTH PLAIN or LOGIN) or through the Azure Communication
// Services Email REST API (HMAC-signed with the resource's access key, or
// with a Microsoft Entra ID token).
//
// Every value taken from a log record is treated as hostile: it never
// reaches a header raw (no CR/LF, no control characters, no fake encoded
// words), and the HTML body is rendered with html/template.
//
// Errors are classified for delivery with the notify package: SMTP 4xx
// replies, connection failures and timeouts are temporary, 5xx replies
// permanent; ACS 429 and 5xx are temporary (with Retry-After), other 4xx
// and a Failed operation permanent.
package email

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/notify"
)

// Deps are what a Notifier borrows from its caller.
type Deps struct {
	// HTTPClient sends ACS requests; nil means a client with a 30s timeout
	// (using TLSConfig when given).
	HTTPClient *http.Client
	// Now is the clock (Date header, x-ms-date); nil means time.Now.
	Now func() time.Time
	// Credential gets Entra ID tokens for ACS when acs.use_identity is
	// set; nil means azidentity's DefaultAzureCredential. Tests pass a fake.
	Credential azcore.TokenCredential
	// TLSConfig is the base TLS configuration for SMTP (and for the
	// default HTTP client); tests set RootCAs to trust their own server.
	TLSConfig *tls.Config
}

// Notifier sends alerts by email.
type Notifier struct {
	name string
	cfg  Config
	now  func() time.Time

	// SMTP
	smtpTimeout time.Duration
	tlsConfig   *tls.Config

	// ACS
	http         *http.Client
	endpoint     *url.URL
	key          []byte
	cred         azcore.TokenCredential
	pollInterval time.Duration
	pollTimeout  time.Duration
	// sleep waits between polls; tests replace it to record the waits.
	sleep func(ctx context.Context, d time.Duration) error
}

// New validates cfg (with defaults applied) and builds a Notifier.
func New(name string, cfg Config, deps Deps) (*Notifier, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("email receiver %q: %w", name, err)
	}
	n := &Notifier{name: name, cfg: cfg, now: deps.Now, sleep: sleepCtx}
	if n.now == nil {
		n.now = time.Now
	}
	if deps.TLSConfig != nil {
		n.tlsConfig = deps.TLSConfig.Clone()
	} else {
		n.tlsConfig = &tls.Config{}
	}
	if n.tlsConfig.MinVersion == 0 {
		n.tlsConfig.MinVersion = tls.VersionTLS12
	}

	switch cfg.Transport {
	case TransportSMTP:
		n.smtpTimeout, _ = time.ParseDuration(cfg.SMTP.Timeout)
		n.tlsConfig.ServerName = cfg.SMTP.Host
		n.tlsConfig.InsecureSkipVerify = cfg.SMTP.InsecureSkipVerify // loopback only, by Validate
	case TransportACS:
		n.endpoint, _ = parseEndpoint(cfg.ACS.Endpoint)
		n.pollInterval, _ = time.ParseDuration(cfg.ACS.PollInterval)
		n.pollTimeout, _ = time.ParseDuration(cfg.ACS.PollTimeout)
		n.http = deps.HTTPClient
		if n.http == nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = n.tlsConfig
			n.http = &http.Client{Timeout: 30 * time.Second, Transport: tr}
		}
		if cfg.ACS.AccessKey != "" {
			n.key, _ = base64.StdEncoding.DecodeString(cfg.ACS.AccessKey)
		} else {
			n.cred = deps.Credential
			if n.cred == nil {
				c, err := azidentity.NewDefaultAzureCredential(nil)
				if err != nil {
					return nil, fmt.Errorf("email receiver %q: acs.use_identity: %w", name, err)
				}
				n.cred = c
			}
		}
	}
	return n, nil
}

// Name is the receiver's name.
func (n *Notifier) Name() string { return n.name }

// Notify sends one mail for a. The error, if any, is a *notify.Error
// telling delivery whether a retry can help; it never quotes the SMTP
// password or the ACS access key.
func (n *Notifier) Notify(ctx context.Context, a *alert.Alert) error {
	if a == nil || len(a.Findings) == 0 {
		return notify.Wrap(n.label(), notify.Permanent(errors.New("alert without findings")))
	}
	m, err := n.newMessage(a)
	if err != nil {
		return notify.Wrap(n.label(), notify.Permanent(fmt.Errorf("render: %w", err)))
	}
	switch n.cfg.Transport {
	case TransportACS:
		err = n.sendACS(ctx, m)
	default:
		err = n.sendSMTP(ctx, m)
	}
	return notify.Wrap(n.label(), n.scrub(err))
}

func (n *Notifier) label() string { return "email " + n.name }

// scrub removes secrets from an error message should any layer below have
// quoted them, keeping the error's retry class.
func (n *Notifier) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range n.secrets() {
		clean = strings.ReplaceAll(clean, s, "REDACTED")
	}
	if clean == msg {
		return err
	}
	retry, after := notify.Retryable(err)
	if retry {
		return notify.Temporary(errors.New(clean), after)
	}
	return notify.Permanent(errors.New(clean))
}

func (n *Notifier) secrets() []string {
	var out []string
	if p := n.cfg.SMTP.Password; p != "" {
		out = append(out, p,
			base64.StdEncoding.EncodeToString([]byte(p)),
			base64.StdEncoding.EncodeToString([]byte("\x00"+n.cfg.SMTP.Username+"\x00"+p)))
	}
	if k := n.cfg.ACS.AccessKey; k != "" {
		out = append(out, k)
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

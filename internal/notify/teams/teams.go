// Package teams sends alerts to a Microsoft Teams channel as Adaptive Cards,
// through a Workflows webhook (Power Automate "When a Teams webhook request
// is received"; Office 365 connectors are retired).
//
// Workflows answers 202 once the flow has taken the request, before the card
// is posted: a card that is too large or invalid fails later, in the flow's
// run history, never back to us. So cards are valid and small by
// construction (Message), and everything taken from a log record is escaped
// so that it cannot become a link, an image, a mention or formatting (see
// escape.go). 429 and 5xx come back: they are temporary, honouring
// Retry-After, and requests to one webhook are paced.
package teams

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/notify"
)

// Notifier posts alerts to one webhook. It is safe for concurrent use.
type Notifier struct {
	name     string
	url      string
	timeout  time.Duration
	maxBytes int
	client   *http.Client
	now      func() time.Time
	pace     *limiter
}

// New makes a Notifier called name (the name errors carry). client nil means
// a plain http.Client; now (nil: time.Now) is the clock Retry-After dates
// are read against; pacing uses the real clock. Redirects are not followed:
// a webhook that redirects is misconfigured, and following it would send
// the card somewhere else.
func New(name string, cfg Config, client *http.Client, now func() time.Time) (*Notifier, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	timeout, _ := time.ParseDuration(cfg.Timeout) // checked by Validate
	if client == nil {
		client = &http.Client{}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if now == nil {
		now = time.Now
	}
	return &Notifier{
		name: name, url: cfg.URL, timeout: timeout, maxBytes: cfg.MaxBytes, client: &c, now: now,
		pace: newLimiter(cfg.RatePerSecond, time.Now),
	}, nil
}

// Name is the notifier's name.
func (n *Notifier) Name() string { return n.name }

// String names the notifier and its webhook without the secret.
func (n *Notifier) String() string { return "teams " + n.name + " (" + notify.RedactURL(n.url) + ")" }

// Notify posts one alert. nil means Workflows accepted it (2xx, normally
// 202). Errors are *notify.Error: temporary for 408, 425, 429, 5xx (with the
// Retry-After asked for), timeouts and connection failures, and a caller's
// cancelled context; permanent for other answers and for an alert that
// cannot be rendered. No error quotes the webhook's query.
func (n *Notifier) Notify(ctx context.Context, a *alert.Alert) error {
	return notify.Wrap(n.name, n.send(ctx, a))
}

func (n *Notifier) send(ctx context.Context, a *alert.Alert) error {
	body, err := Message(a, n.maxBytes)
	if err != nil {
		return notify.Permanent(err)
	}
	return n.postBody(ctx, body)
}

// limiter is a token bucket holding one token, refilled at rate per second:
// requests to one webhook go out at most rate per second, the first at once.
// A wait honours its context and gives its slot back when cancelled.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time // when the next token is there
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
}

func newLimiter(rate float64, now func() time.Time) *limiter {
	return &limiter{interval: time.Duration(float64(time.Second) / rate), now: now, sleep: sleepCtx}
}

func (l *limiter) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	now := l.now()
	at := l.next
	if at.Before(now) {
		at = now
	}
	l.next = at.Add(l.interval)
	l.mu.Unlock()
	d := at.Sub(now)
	if d <= 0 {
		return nil
	}
	if err := l.sleep(ctx, d); err != nil {
		l.mu.Lock()
		if l.next.Equal(at.Add(l.interval)) { // nobody queued behind us
			l.next = at
		}
		l.mu.Unlock()
		return err
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

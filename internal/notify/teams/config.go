package teams

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// Defaults and limits of Config.
const (
	DefaultTimeout       = "10s"
	DefaultRatePerSecond = 2.0
	// DefaultMaxBytes leaves room under Teams' limit of about 28 KB for a
	// message, which counts more than the JSON we send.
	DefaultMaxBytes = 26000
	// MaxMaxBytes is Teams' limit; MinMaxBytes leaves room for a minimal card.
	MaxMaxBytes = 28000
	MinMaxBytes = 4096
)

// Config is one Teams channel, reached through a Workflows webhook ("When a
// Teams webhook request is received"). The URL is a secret: it carries the
// flow's signature (sig=), so nothing kvwatch prints shows its query.
type Config struct {
	URL string `yaml:"url"`
	// Timeout bounds one request (a Go duration; default 10s).
	Timeout string `yaml:"timeout"`
	// RatePerSecond paces requests to this webhook (default 2).
	RatePerSecond float64 `yaml:"rate_per_second"`
	// MaxBytes bounds the JSON body; cards are trimmed to fit (default
	// 26000, at most 28000).
	MaxBytes int `yaml:"max_bytes"`
}

// Defaults fills in what was left out.
func (c *Config) Defaults() {
	if c.Timeout == "" {
		c.Timeout = DefaultTimeout
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = DefaultRatePerSecond
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
}

// Validate reports what is wrong with c, taking left-out values as their
// defaults. No error quotes the URL's query or user info.
func (c Config) Validate() error {
	c.Defaults()
	var errs []error
	if err := validURL(c.URL); err != nil {
		errs = append(errs, err)
	}
	if d, err := time.ParseDuration(c.Timeout); err != nil || d <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %q is not a positive duration such as 10s", c.Timeout))
	}
	if !(c.RatePerSecond > 0) || c.RatePerSecond > 1000 {
		errs = append(errs, fmt.Errorf("rate_per_second: %v must be above 0 and at most 1000", c.RatePerSecond))
	}
	if c.MaxBytes < MinMaxBytes || c.MaxBytes > MaxMaxBytes {
		errs = append(errs, fmt.Errorf("max_bytes: %d must be between %d and %d (Teams takes about 28 KB)", c.MaxBytes, MinMaxBytes, MaxMaxBytes))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("teams: %w", errors.Join(errs...))
}

// validURL accepts https, and http to a loopback host (tests). Errors quote
// the URL through notify.RedactURL only: the query holds the signature.
func validURL(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return errors.New("url: missing (the Workflows webhook URL, \"When a Teams webhook request is received\")")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("url: %s is not an absolute URL", notify.RedactURL(raw))
	}
	if u.User != nil {
		return fmt.Errorf("url: %s must not carry user info", notify.RedactURL(raw))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		switch u.Hostname() {
		case "127.0.0.1", "localhost", "::1":
			return nil
		}
	}
	return fmt.Errorf("url: %s must be https (http only to 127.0.0.1 or localhost, for tests)", notify.RedactURL(raw))
}

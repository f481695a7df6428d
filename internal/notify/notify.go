// Package notify holds what every receiver shares: the error that tells
// delivery whether a retry can help, and the redaction of secrets in URLs
// and errors. Each receiver lives in its own sub-package with its config,
// defaults, validation and tests.
package notify

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"
)

// Error is a receiver's failure to deliver.
type Error struct {
	// Retry says whether trying again later can help (429, 5xx, timeouts,
	// connection errors) or not (400, 401, 403, 404, a card too large).
	Retry bool
	// After is how long the receiver asked us to wait (Retry-After), if it did.
	After time.Duration
	Err   error
}

func (e *Error) Error() string {
	kind := "permanent"
	if e.Retry {
		kind = "temporary"
	}
	return fmt.Sprintf("%s failure: %v", kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary wraps err as worth retrying, after at least after.
func Temporary(err error, after time.Duration) error {
	return &Error{Retry: true, After: after, Err: err}
}

// Permanent wraps err as not worth retrying.
func Permanent(err error) error { return &Error{Err: err} }

// Retryable reports whether err is worth retrying, and after how long the
// receiver asked to wait. Errors that are not *Error (a context deadline, a
// network error) are retryable.
func Retryable(err error) (bool, time.Duration) {
	var e *Error
	if errors.As(err, &e) {
		return e.Retry, e.After
	}
	return err != nil, 0
}

// FromStatus classifies an HTTP answer: nil for 2xx; temporary for 408,
// 425, 429 and 5xx (honouring Retry-After, in seconds or as a date);
// permanent otherwise. body is a short excerpt for the message.
func FromStatus(resp *http.Response, body string, now time.Time) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err := fmt.Errorf("HTTP %d: %s", resp.StatusCode, Redact(truncate(body, 300)))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout,
		resp.StatusCode == http.StatusTooEarly, resp.StatusCode >= 500:
		return Temporary(err, RetryAfter(resp.Header.Get("Retry-After"), now))
	}
	return Permanent(err)
}

// RetryAfter reads a Retry-After header: seconds, or an HTTP date.
func RetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

var secretParams = regexp.MustCompile(`(?i)((?:sig|signature|code|key|token|password|secret|sv|se|sp)=)[^&\s"']+`)
var userinfo = regexp.MustCompile(`(?i)(https?://)[^/@\s]+@`)

// Redact hides what could be a secret in a URL or an error message: query
// parameters such as sig=, code= or key=, and user:password@ in URLs.
func Redact(s string) string {
	s = secretParams.ReplaceAllString(s, "${1}REDACTED")
	return userinfo.ReplaceAllString(s, "${1}REDACTED@")
}

// RedactURL returns a URL fit for logs: scheme, host and path only.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	out := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		out += "?REDACTED"
	}
	return out
}

// Wrap adds a receiver's name to an error, keeping its retry class and
// redacting any URL the underlying error quotes (net/http errors quote the
// whole request URL, secrets included).
func Wrap(name string, err error) error {
	if err == nil {
		return nil
	}
	retry, after := Retryable(err)
	inner := err
	var e0 *Error
	if errors.As(err, &e0) {
		inner = e0.Err
	}
	msg := Redact(inner.Error())
	e := &Error{Retry: retry, After: after, Err: fmt.Errorf("%s: %s", name, msg)}
	return e
}

package tablestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// ErrTooLarge is returned when an entity would exceed Table Storage's
// entity size limit.
var ErrTooLarge = errors.New("entity too large for Table Storage")

// ErrContention is returned when other writers keep changing the same
// entities faster than this instance can apply a batch to them.
var ErrContention = errors.New("table storage: too much contention, giving up")

var (
	keyRE = regexp.MustCompile(`(?i)\b(AccountKey|SharedAccessSignature)=([^;]*)`)
	sigRE = regexp.MustCompile(`(?i)\b(sig)=([^;&\s"']*)`)
)

// Redact hides account keys and shared access signatures in s.
func Redact(s string) string {
	s = keyRE.ReplaceAllString(s, "${1}=REDACTED")
	return sigRE.ReplaceAllString(s, "${1}=REDACTED")
}

// redactedError shows its cause with secrets hidden and unwraps to it, so
// errors.As still finds *azcore.ResponseError and errors.Is context errors.
type redactedError struct{ err error }

func (r *redactedError) Error() string { return Redact(r.err.Error()) }
func (r *redactedError) Unwrap() error { return r.err }

func redact(err error) error {
	if err == nil {
		return nil
	}
	var r *redactedError
	if errors.As(err, &r) {
		return err
	}
	return &redactedError{err}
}

// statusOf returns the HTTP status of a service error.
func statusOf(err error) (int, string, bool) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode, re.ErrorCode, true
	}
	return 0, "", false
}

// transient reports whether err is worth retrying: throttling, a server
// error, a timeout or a broken connection, while ctx is still live.
func transient(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	st, _, ok := statusOf(err)
	var f *txFailure
	if errors.As(err, &f) {
		st, ok = f.status, true
	}
	if ok {
		switch st {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return false // no such host: a wrong endpoint, not a passing failure
	}
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, context.DeadlineExceeded) // a try's own timeout; ctx itself is live
}

// retryAfter returns the delay a throttling answer asks for, if any.
func retryAfter(err error) time.Duration {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.RawResponse == nil {
		return 0
	}
	if s, err := strconv.Atoi(re.RawResponse.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// call runs one request, retrying transient failures with exponential
// backoff and jitter while the retry budget and ctx allow. The SDK's own
// retries are turned off for the call so that this is the only policy.
func (s *Store) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	rctx := policy.WithRetryOptions(ctx, policy.RetryOptions{MaxRetries: -1, TryTimeout: s.opts.TryTimeout})
	start := time.Now()
	delay := s.opts.RetryDelay
	for attempt := 1; ; attempt++ {
		err := f(rctx)
		if err == nil || !transient(ctx, err) {
			if err != nil && ctx.Err() != nil {
				return redact(fmt.Errorf("table storage %s: %w (last failure: %v)", what, ctx.Err(), err))
			}
			return redact(err)
		}
		s.stats.retries.Add(1)
		wait := max(retryAfter(err), jitter(delay))
		if time.Since(start)+wait > s.opts.RetryBudget {
			return redact(fmt.Errorf("table storage %s: giving up after %d attempts in %v: %w",
				what, attempt, time.Since(start).Round(time.Millisecond), err))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return redact(fmt.Errorf("table storage %s: %w (last failure: %v)", what, ctx.Err(), err))
		case <-t.C:
		}
		delay = min(2*delay, s.opts.MaxRetryDelay)
	}
}

// jitter returns a random duration in [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d)
}

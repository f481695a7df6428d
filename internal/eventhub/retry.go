package eventhub

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

var secretRE = regexp.MustCompile(`(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|sig)=([^;&\s"']*)`)

// Redact hides account keys, shared access keys and shared access
// signatures in s.
func Redact(s string) string {
	return secretRE.ReplaceAllString(s, "${1}=REDACTED")
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

// status returns the HTTP status and error code of a service error.
func status(err error) (int, string, bool) {
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
	if st, _, ok := status(err); ok {
		switch st {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
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

// call runs one Table Storage request, retrying transient failures with
// exponential backoff and jitter while the retry budget and ctx allow. The
// SDK's own retries are turned off for the call so that this is the only
// policy. The error it returns never shows a key or a signature.
func (s *CheckpointStore) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	rctx := policy.WithRetryOptions(ctx, policy.RetryOptions{MaxRetries: -1, TryTimeout: s.opts.TryTimeout})
	start := time.Now()
	delay := s.opts.RetryDelay
	for attempt := 1; ; attempt++ {
		err := f(rctx)
		if err == nil || !transient(ctx, err) {
			if err != nil && ctx.Err() != nil {
				return redact(fmt.Errorf("checkpoint store: %s: %w (last failure: %v)", what, ctx.Err(), err))
			}
			if err != nil {
				return redact(fmt.Errorf("checkpoint store: %s: %w", what, err))
			}
			return nil
		}
		wait := max(retryAfter(err), jitter(delay))
		if time.Since(start)+wait > s.opts.RetryBudget {
			return redact(fmt.Errorf("checkpoint store: %s: giving up after %d attempts in %v: %w",
				what, attempt, time.Since(start).Round(time.Millisecond), err))
		}
		if serr := sleep(ctx, wait); serr != nil {
			return redact(fmt.Errorf("checkpoint store: %s: %w (last failure: %v)", what, serr, err))
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

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package tablestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/kvwatch/kvwatch/internal/secret"
	"github.com/kvwatch/kvwatch/internal/state"
)

// ErrTooLarge is returned when an entity would exceed Table Storage's
// entity size limit.
// It is unstorable (state.ErrUnstorable): the data, not the service, is
// the problem.
var ErrTooLarge = state.Unstorable(errors.New("entity too large for Table Storage"))

// ErrContention is returned when other writers keep changing the same
// entities faster than this instance can apply a batch to them.
var ErrContention = errors.New("table storage: too much contention, giving up")

// statusOf returns the HTTP status of a service error.
func statusOf(err error) (int, string, bool) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode, re.ErrorCode, true
	}
	return 0, "", false
}

// Class is what a Table Storage error says about retrying.
type Class int

// Classes of errors.
const (
	// Other: neither passing nor caused by the data (a wrong key, a
	// missing table, a conflict): the caller decides; a batch fails.
	Other Class = iota
	// Transient: throttling, a server error, a timeout or a broken
	// connection; a retry can succeed.
	Transient
	// Unstorable: the service refused the data itself (a property or an
	// entity over its limits, a value it rejects); the same data will be
	// refused again however often it is sent.
	Unstorable
)

// unstorableCodes are the service's error codes for data it will never
// accept (learn.microsoft.com, "Table service error codes"). They come
// with 400 Bad Request, or 413 for a request body over the limit.
var unstorableCodes = map[string]bool{
	"PropertyValueTooLarge": true, // a string over 32 K characters, binary over 64 KiB
	"EntityTooLarge":        true, // an entity over 1 MiB
	"RequestBodyTooLarge":   true, // a request over 4 MiB
	"InvalidInput":          true, // e.g. a value of the wrong form
	"InvalidValueType":      true,
	"PropertyNameTooLong":   true,
	"TooManyProperties":     true,
	"KeyValueTooLarge":      true, // a PartitionKey or RowKey over 1 KiB
	"OutOfRangeInput":       true, // e.g. a key with a forbidden character
}

// Classify says whether err is worth retrying (Transient), was caused by
// the data sent (Unstorable), or neither. It reads the service's answer
// (*azcore.ResponseError, or the failed operation of an entity-group
// transaction) by status and error code, never by message text. A
// transient failure counts as one only while ctx is live. This is the one
// classification of Table Storage errors: the state store and the Event
// Hubs checkpoint store both use it.
func Classify(ctx context.Context, err error) Class {
	if err == nil {
		return Other
	}
	if errors.Is(err, ErrTooLarge) || state.IsUnstorable(err) {
		return Unstorable
	}
	st, code, ok := statusOf(err)
	var f *txFailure
	if errors.As(err, &f) {
		st, code, ok = f.status, f.code, true
	}
	if ok {
		switch {
		case st == http.StatusRequestEntityTooLarge,
			st == http.StatusBadRequest && unstorableCodes[code]:
			return Unstorable
		}
	}
	if ctx.Err() != nil {
		return Other
	}
	if ok {
		switch st {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return Transient
		}
		return Other
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return Other // no such host: a wrong endpoint, not a passing failure
	}
	var ne net.Error
	if errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, context.DeadlineExceeded) { // a try's own timeout; ctx itself is live
		return Transient
	}
	return Other
}

// transient reports whether err is worth retrying while ctx is live.
func transient(ctx context.Context, err error) bool { return Classify(ctx, err) == Transient }

// IsTransient reports whether err is worth retrying: throttling, a server
// error, a timeout or a broken connection, while ctx is still live.
func IsTransient(ctx context.Context, err error) bool { return transient(ctx, err) }

// RetryAfter returns the delay a throttling answer asks for, if any.
func RetryAfter(err error) time.Duration { return retryAfter(err) }

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
		class := Classify(ctx, err)
		if err == nil || class != Transient {
			if err != nil && ctx.Err() != nil {
				return secret.Error(fmt.Errorf("table storage %s: %w (last failure: %v)", what, ctx.Err(), err))
			}
			if class == Unstorable {
				// Said once, here, for every request: the pipeline reads it.
				return state.Unstorable(secret.Error(err))
			}
			return secret.Error(err)
		}
		s.stats.retries.Add(1)
		wait := max(retryAfter(err), jitter(delay))
		if time.Since(start)+wait > s.opts.RetryBudget {
			return secret.Error(fmt.Errorf("table storage %s: giving up after %d attempts in %v: %w",
				what, attempt, time.Since(start).Round(time.Millisecond), err))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return secret.Error(fmt.Errorf("table storage %s: %w (last failure: %v)", what, ctx.Err(), err))
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

package eventhub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/kvwatch/kvwatch/internal/secret"
	"github.com/kvwatch/kvwatch/internal/tablestore"
)

// status returns the HTTP status and error code of a service error.
func status(err error) (int, string, bool) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode, re.ErrorCode, true
	}
	return 0, "", false
}

// transient reports whether err is worth retrying: tablestore.Classify,
// the one classification of Azure Table Storage errors, shared with the
// state store; there is no copy of it here.
func transient(ctx context.Context, err error) bool {
	return tablestore.Classify(ctx, err) == tablestore.Transient
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
				return secret.Error(fmt.Errorf("checkpoint store: %s: %w (last failure: %v)", what, ctx.Err(), err))
			}
			if err != nil {
				return secret.Error(fmt.Errorf("checkpoint store: %s: %w", what, err))
			}
			return nil
		}
		wait := max(tablestore.RetryAfter(err), jitter(delay))
		if time.Since(start)+wait > s.opts.RetryBudget {
			return secret.Error(fmt.Errorf("checkpoint store: %s: giving up after %d attempts in %v: %w",
				what, attempt, time.Since(start).Round(time.Millisecond), err))
		}
		if serr := sleep(ctx, wait); serr != nil {
			return secret.Error(fmt.Errorf("checkpoint store: %s: %w (last failure: %v)", what, serr, err))
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

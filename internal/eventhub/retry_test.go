package eventhub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/kvwatch/kvwatch/internal/tablestore"
)

// The checkpoint store retries exactly the errors tablestore.Classify
// calls transient (one classification of Azure errors): throttling,
// server errors and broken connections are retried, a missing table, a
// conflict, an unknown host or data the service refuses are not.
func TestCallRetriesWhatTablestoreClassifiesTransient(t *testing.T) {
	resp := func(status int, code string) error {
		return &azcore.ResponseError{StatusCode: status, ErrorCode: code, RawResponse: &http.Response{StatusCode: status, Header: http.Header{}}}
	}
	for _, tc := range []struct {
		name  string
		err   error
		retry bool
	}{
		{"503", resp(http.StatusServiceUnavailable, "ServerBusy"), true},
		{"429", resp(http.StatusTooManyRequests, ""), true},
		{"500", resp(http.StatusInternalServerError, "InternalError"), true},
		{"connection reset", fmt.Errorf("post: %w", io.ErrUnexpectedEOF), true},
		{"404", resp(http.StatusNotFound, "TableNotFound"), false},
		{"409", resp(http.StatusConflict, "EntityAlreadyExists"), false},
		{"403", resp(http.StatusForbidden, "AuthorizationFailure"), false},
		{"entity too large", resp(http.StatusBadRequest, "EntityTooLarge"), false},
		{"no such host", &net.DNSError{Err: "no such host", Name: "x.table.core.windows.net", IsNotFound: true}, false},
		{"other", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if got := tablestore.Classify(ctx, tc.err) == tablestore.Transient; got != tc.retry {
				t.Fatalf("tablestore.Classify: transient %v, the table says %v", got, tc.retry)
			}
			s := &CheckpointStore{opts: StoreOptions{RetryBudget: time.Second, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond}}
			s.opts.defaults()
			calls := 0
			err := s.call(ctx, "test", func(context.Context) error {
				calls++
				if calls == 1 {
					return tc.err
				}
				return nil
			})
			if tc.retry && (err != nil || calls != 2) {
				t.Errorf("transient: %d calls, %v; want retried and through", calls, err)
			}
			if !tc.retry && (err == nil || calls != 1) {
				t.Errorf("not transient: %d calls, %v; want one call and the error", calls, err)
			}
		})
	}
}

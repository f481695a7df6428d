package tablestore

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/state"
)

// Classify reads the service's status and error code, never the message:
// data the service refuses is Unstorable, passing failures Transient,
// anything else Other.
func TestClassify(t *testing.T) {
	ctx := context.Background()
	resp := func(st int, code string) error {
		return fmt.Errorf("wrapped: %w", &azcore.ResponseError{StatusCode: st, ErrorCode: code})
	}
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"property too large", resp(400, "PropertyValueTooLarge"), Unstorable},
		{"entity too large", resp(400, "EntityTooLarge"), Unstorable},
		{"invalid input", resp(400, "InvalidInput"), Unstorable},
		{"invalid value type", resp(400, "InvalidValueType"), Unstorable},
		{"request body too large", resp(413, "RequestBodyTooLarge"), Unstorable},
		{"inside a transaction", fmt.Errorf("x: %w", &txFailure{status: 400, code: "PropertyValueTooLarge"}), Unstorable},
		{"too large before sending", fmt.Errorf("state entity: %w", ErrTooLarge), Unstorable},
		{"marked by a store", state.Unstorable(errors.New("no")), Unstorable},
		{"throttled", resp(429, ""), Transient},
		{"server busy", resp(503, "ServerBusy"), Transient},
		{"internal error", resp(500, "InternalError"), Transient},
		{"timeout", resp(408, ""), Transient},
		{"transaction throttled", &txFailure{status: 503}, Transient},
		{"connection reset", fmt.Errorf("post: %w", syscall.ECONNRESET), Transient},
		{"cut short", io.ErrUnexpectedEOF, Transient},
		{"another 400", resp(400, "OutOfRangeQueryParameterValue"), Other},
		{"forbidden", resp(403, "AuthorizationFailure"), Other},
		{"not found", resp(404, "TableNotFound"), Other},
		{"message text is not read", errors.New("PropertyValueTooLarge 400"), Other},
	}
	for _, c := range cases {
		if got := Classify(ctx, c.err); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if Classify(done, resp(503, "")) != Other {
		t.Error("a passing failure after the caller gave up is not worth a retry")
	}
	if Classify(done, resp(400, "EntityTooLarge")) != Unstorable {
		t.Error("unstorable data stays unstorable whatever the context")
	}
}

// Against the emulator: what the service answers for a property over its
// limit is classified unstorable, and the store's errors carry it to the
// pipeline (state.ErrUnstorable) through the retry wrapper.
func TestUnstorableOnTheService(t *testing.T) {
	s := newStore(t, testPrefix(), Options{})
	ctx := context.Background()
	long := strings.Repeat("u", 40000)
	ent, err := json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "p", RowKey: "r"},
		Properties: map[string]any{"Group": long}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.call(ctx, "insert", func(ctx context.Context) error {
		_, err := s.findings.AddEntity(ctx, ent, nil)
		return err
	})
	if err == nil {
		t.Skip("this emulator accepts a 40,000-character property")
	}
	if !state.IsUnstorable(err) || Classify(ctx, err) != Unstorable {
		t.Fatalf("a 40,000-character property: %v (class %v), want unstorable", err, Classify(ctx, err))
	}

	// A finding body over the entity limit is refused before it is sent.
	big := make([]byte, 2<<20)
	crand.Read(big) // incompressible
	if _, err := s.AddFinding(ctx, "ff00", big); !state.IsUnstorable(err) {
		t.Fatalf("a 2 MiB finding: %v, want unstorable", err)
	}
}

package tablestore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
	"github.com/kvwatch/kvwatch/internal/state"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// serviceClient returns a client on the test Table endpoint.
func serviceClient(t testing.TB) *aztables.ServiceClient {
	t.Helper()
	c, err := aztables.NewServiceClientFromConnectionString(azuritetest.Start(t), ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testPrefix returns a table prefix no other test uses.
func testPrefix() string {
	var b [5]byte
	rand.Read(b[:])
	return fmt.Sprintf("t%x", b)
}

// newStore returns a store on fresh tables, deleted when the test ends.
func newStore(t testing.TB, prefix string, opts Options) *Store {
	t.Helper()
	c := serviceClient(t)
	opts.Prefix = prefix
	if opts.RetryBudget == 0 {
		opts.RetryBudget = 20 * time.Second
	}
	s, err := New(context.Background(), c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, fi, dl, _ := TableNames(prefix)
		for _, n := range []string{st, fi, dl, prefix + OutboxTable} {
			c.DeleteTable(ctx, n, nil)
		}
	})
	return s
}

// storeVia returns two stores on fresh tables of prefix (deleted when the
// test ends): the first sends its requests through transport, the second
// (which made the tables) straight to the service.
func storeVia(t testing.TB, prefix string, transport policy.Transporter, opts Options) (via, plain *Store) {
	t.Helper()
	co := ClientOptions()
	co.Transport = transport
	client, err := aztables.NewServiceClientFromConnectionString(azuritetest.Start(t), co)
	if err != nil {
		t.Fatal(err)
	}
	plain = newStore(t, prefix, Options{})
	opts.Prefix = prefix
	if via, err = New(context.Background(), client, opts); err != nil {
		t.Fatal(err)
	}
	return via, plain
}

// allState reads every state entity of a store's table.
func allState(t testing.TB, s *Store) map[state.Key]*state.Entity {
	t.Helper()
	out := map[state.Key]*state.Entity{}
	err := s.query(context.Background(), s.state, "PartitionKey ne ''", nil, func(raw []byte) error {
		st, err := decodeState(raw)
		if err != nil {
			return err
		}
		out[st.key] = st.e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// canon is an entity's canonical JSON: nil and empty maps alike.
func canon(e *state.Entity) string {
	if e == nil {
		return "<nil>"
	}
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return string(b)
}

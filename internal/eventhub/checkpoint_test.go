package eventhub

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"

	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const (
	testNS    = "kvwatch-test.servicebus.windows.net"
	testHub   = "insights-logs-auditevent"
	testGroup = "$Default"
)

// newTestStore returns a checkpoint store on a fresh table, deleted when
// the test ends.
func newTestStore(t *testing.T) *CheckpointStore {
	t.Helper()
	c, err := aztables.NewServiceClientFromConnectionString(azuritetest.Start(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var b [5]byte
	rand.Read(b[:])
	prefix := fmt.Sprintf("t%x", b)
	ctx := context.Background()
	s, err := NewCheckpointStore(ctx, c, StoreOptions{Prefix: prefix, RetryBudget: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A second store on the same table: creating it again is not an error.
	if _, err := NewCheckpointStore(ctx, c, StoreOptions{Prefix: prefix}); err != nil {
		t.Fatalf("second NewCheckpointStore on an existing table: %v", err)
	}
	t.Cleanup(func() {
		name, _ := TableName(prefix)
		c.DeleteTable(context.Background(), name, nil)
	})
	return s
}

func own(partition, owner string, etag *azcore.ETag) azeventhubs.Ownership {
	return azeventhubs.Ownership{FullyQualifiedNamespace: testNS, EventHubName: testHub, ConsumerGroup: testGroup,
		PartitionID: partition, OwnerID: owner, ETag: etag}
}

func listOwnership(t *testing.T, s *CheckpointStore) map[string]azeventhubs.Ownership {
	t.Helper()
	os, err := s.ListOwnership(context.Background(), testNS, testHub, testGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]azeventhubs.Ownership{}
	for _, o := range os {
		if _, dup := out[o.PartitionID]; dup {
			t.Fatalf("partition %s listed twice", o.PartitionID)
		}
		if o.FullyQualifiedNamespace != testNS || o.EventHubName != testHub || o.ConsumerGroup != testGroup {
			t.Errorf("listed ownership %+v does not name the hub asked for", o)
		}
		out[o.PartitionID] = o
	}
	return out
}

// TestClaimNewPartitions: claims without an ETag create ownerships; the
// result carries an ETag and the service's time; the list shows them.
func TestClaimNewPartitions(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	before := time.Now().Add(-5 * time.Second)
	got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "a", nil), own("1", "a", nil)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("claimed %d of 2 new partitions: %+v", len(got), got)
	}
	for _, o := range got {
		if o.ETag == nil || *o.ETag == "" {
			t.Errorf("partition %s claimed without an ETag", o.PartitionID)
		}
		if o.LastModifiedTime.Before(before) || o.LastModifiedTime.After(time.Now().Add(5*time.Second)) {
			t.Errorf("partition %s LastModifiedTime %v is not now", o.PartitionID, o.LastModifiedTime)
		}
		if o.OwnerID != "a" {
			t.Errorf("partition %s owner %q", o.PartitionID, o.OwnerID)
		}
	}
	list := listOwnership(t, s)
	if len(list) != 2 {
		t.Fatalf("listed %d ownerships, want 2: %+v", len(list), list)
	}
	for _, o := range got {
		l := list[o.PartitionID]
		if l.OwnerID != "a" || l.ETag == nil || *l.ETag != *o.ETag {
			t.Errorf("partition %s listed as %+v (etag %v), claimed with etag %s", o.PartitionID, l, deref(l.ETag), *o.ETag)
		}
		if d := l.LastModifiedTime.Sub(o.LastModifiedTime); d < -time.Second || d > time.Second {
			t.Errorf("partition %s: listed LastModifiedTime %v, claim said %v", o.PartitionID, l.LastModifiedTime, o.LastModifiedTime)
		}
	}
}

func deref(e *azcore.ETag) string {
	if e == nil {
		return "<nil>"
	}
	return string(*e)
}

// TestCompetingClaims: processors racing for the same partitions, each with
// the ETag it listed (or none for a partition nobody owned): for every
// partition exactly one claim wins, and the list shows the winner.
func TestCompetingClaims(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	parts := []string{"0", "1", "2", "3"}

	for round, etags := range []map[string]*azcore.ETag{nil, {}} {
		if round == 1 {
			// Round two: everyone competes for the existing ownerships,
			// each with the ETag it listed.
			for p, o := range listOwnership(t, s) {
				etags[p] = o.ETag
			}
		}
		const claimers = 4
		results := make([][]azeventhubs.Ownership, claimers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range claimers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var os []azeventhubs.Ownership
				for _, p := range parts {
					os = append(os, own(p, fmt.Sprintf("owner-%d", i), etags[p]))
				}
				<-start
				got, err := s.ClaimOwnership(ctx, os, nil)
				if err != nil {
					t.Errorf("claimer %d: %v", i, err)
				}
				results[i] = got
			}()
		}
		close(start)
		wg.Wait()
		winners := map[string]azeventhubs.Ownership{}
		for _, got := range results {
			for _, o := range got {
				if w, ok := winners[o.PartitionID]; ok {
					t.Fatalf("round %d: partition %s claimed by both %s and %s", round, o.PartitionID, w.OwnerID, o.OwnerID)
				}
				winners[o.PartitionID] = o
			}
		}
		list := listOwnership(t, s)
		for _, p := range parts {
			w, ok := winners[p]
			if !ok {
				t.Fatalf("round %d: nobody won partition %s", round, p)
			}
			if l := list[p]; l.OwnerID != w.OwnerID || *l.ETag != *w.ETag {
				t.Errorf("round %d: partition %s won by %s (etag %s), listed as %s (etag %s)",
					round, p, w.OwnerID, *w.ETag, l.OwnerID, deref(l.ETag))
			}
		}
	}
}

// TestStaleETagRefused: a claim with an ETag that is no longer current is
// left out of the result (not an error), and changes nothing; the other
// claims of the same call still succeed.
func TestStaleETagRefused(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	first, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "a", nil), own("1", "a", nil)}, nil)
	if err != nil || len(first) != 2 {
		t.Fatalf("claims: %v %+v", err, first)
	}
	stale := first[0].ETag
	// a renews partition 0: its ETag changes.
	renewed, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "a", stale)}, nil)
	if err != nil || len(renewed) != 1 {
		t.Fatalf("renewal: %v %+v", err, renewed)
	}
	if *renewed[0].ETag == *stale {
		t.Fatal("renewal kept the ETag")
	}
	// b claims 0 with the stale ETag (refused) and 1 with the current one.
	got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "b", stale), own("1", "b", first[1].ETag)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].PartitionID != "1" || got[0].OwnerID != "b" {
		t.Fatalf("claims with a stale and a current ETag returned %+v, want only partition 1", got)
	}
	// A claim without an ETag for an existing ownership is refused too.
	if got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "c", nil)}, nil); err != nil || len(got) != 0 {
		t.Fatalf("claim without ETag of an owned partition: %v %+v", err, got)
	}
	// A made-up ETag is refused.
	bogus := azcore.ETag(`W/"datetime'2001-01-01T00%3A00%3A00.0000000Z'"`)
	if got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "c", &bogus)}, nil); err != nil || len(got) != 0 {
		t.Fatalf("claim with a made-up ETag: %v %+v", err, got)
	}
	list := listOwnership(t, s)
	if list["0"].OwnerID != "a" || *list["0"].ETag != *renewed[0].ETag {
		t.Errorf("partition 0 is %+v, want still a's renewal", list["0"])
	}
	if list["1"].OwnerID != "b" {
		t.Errorf("partition 1 is owned by %q, want b", list["1"].OwnerID)
	}
}

// TestExpiredOwnershipTakenOver does what the SDK's load balancer does with
// a short expiry: an owner that stops renewing is seen as expired by the
// service's Timestamp, another processor claims the partition with the
// listed ETag, and the old owner's late renewal is refused. A relinquished
// ownership (empty owner) is listed as such and taken over too.
func TestExpiredOwnershipTakenOver(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	if got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "a", nil), own("1", "a", nil)}, nil); err != nil || len(got) != 2 {
		t.Fatalf("claims: %v %+v", err, got)
	}
	aClaims := listOwnership(t, s)
	const expiry = time.Second
	time.Sleep(expiry + 200*time.Millisecond)
	// a renews partition 1 only.
	if got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("1", "a", aClaims["1"].ETag)}, nil); err != nil || len(got) != 1 {
		t.Fatalf("renewal: %v %+v", err, got)
	}
	list := listOwnership(t, s)
	expired := func(o azeventhubs.Ownership) bool { return time.Since(o.LastModifiedTime.UTC()) > expiry }
	if !expired(list["0"]) {
		t.Fatalf("partition 0 last modified %v, not expired after %v without renewal", list["0"].LastModifiedTime, expiry)
	}
	if expired(list["1"]) {
		t.Fatalf("partition 1 last modified %v: renewed, but looks expired", list["1"].LastModifiedTime)
	}
	got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "b", list["0"].ETag)}, nil)
	if err != nil || len(got) != 1 || got[0].OwnerID != "b" {
		t.Fatalf("taking over the expired partition: %v %+v", err, got)
	}
	if got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "a", aClaims["0"].ETag)}, nil); err != nil || len(got) != 0 {
		t.Fatalf("the old owner's late renewal: %v %+v, want refused", err, got)
	}
	// a shuts down: it relinquishes partition 1 (empty owner), as the
	// Processor does; the list says so and b takes it.
	cur := listOwnership(t, s)
	if got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("1", "", cur["1"].ETag)}, nil); err != nil || len(got) != 1 {
		t.Fatalf("relinquish: %v %+v", err, got)
	}
	cur = listOwnership(t, s)
	if cur["1"].OwnerID != "" {
		t.Fatalf("relinquished partition listed with owner %q", cur["1"].OwnerID)
	}
	if got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("1", "b", cur["1"].ETag)}, nil); err != nil || len(got) != 1 {
		t.Fatalf("claiming the relinquished partition: %v %+v", err, got)
	}
	cur = listOwnership(t, s)
	if cur["0"].OwnerID != "b" || cur["1"].OwnerID != "b" {
		t.Errorf("owners after takeover: %+v", cur)
	}
}

// TestCheckpointRoundTrip: checkpoints set, listed, updated; offsets kept
// as strings; one per partition.
func TestCheckpointRoundTrip(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	cp := func(p string, offset string, seq int64) azeventhubs.Checkpoint {
		return azeventhubs.Checkpoint{FullyQualifiedNamespace: testNS, EventHubName: testHub, ConsumerGroup: testGroup,
			PartitionID: p, Offset: to.Ptr(offset), SequenceNumber: to.Ptr(seq)}
	}
	list := func() map[string]azeventhubs.Checkpoint {
		t.Helper()
		cps, err := s.ListCheckpoints(ctx, testNS, testHub, testGroup, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]azeventhubs.Checkpoint{}
		for _, c := range cps {
			if c.FullyQualifiedNamespace != testNS || c.EventHubName != testHub || c.ConsumerGroup != testGroup {
				t.Errorf("checkpoint %+v does not name the hub asked for", c)
			}
			out[c.PartitionID] = c
		}
		if len(out) != len(cps) {
			t.Fatalf("a partition listed twice: %+v", cps)
		}
		return out
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("new store lists checkpoints %+v", got)
	}
	const big = int64(1) << 53 // beyond a float64's exact integers
	for _, c := range []azeventhubs.Checkpoint{cp("0", "4294967296", 41), cp("1", "g1:0:123", big+1)} {
		if err := s.SetCheckpoint(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Ownerships in the same partition key are not checkpoints.
	if _, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{own("0", "a", nil)}, nil); err != nil {
		t.Fatal(err)
	}
	check := func(want map[string][2]any) {
		t.Helper()
		got := list()
		if len(got) != len(want) {
			t.Fatalf("listed %d checkpoints, want %d: %+v", len(got), len(want), got)
		}
		for p, w := range want {
			c := got[p]
			if c.Offset == nil || *c.Offset != w[0].(string) || c.SequenceNumber == nil || *c.SequenceNumber != w[1].(int64) {
				t.Errorf("partition %s: offset %v sequence %v, want %v %v", p, strp(c.Offset), int64p(c.SequenceNumber), w[0], w[1])
			}
		}
	}
	check(map[string][2]any{"0": {"4294967296", int64(41)}, "1": {"g1:0:123", big + 1}})
	if err := s.SetCheckpoint(ctx, cp("0", "4294968320", 42), nil); err != nil {
		t.Fatal(err)
	}
	check(map[string][2]any{"0": {"4294968320", int64(42)}, "1": {"g1:0:123", big + 1}})
	// Ownership listing is not disturbed by checkpoints.
	if os := listOwnership(t, s); len(os) != 1 || os["0"].OwnerID != "a" {
		t.Errorf("ownerships %+v", os)
	}
	// A checkpoint with only a sequence number (no offset) comes back so.
	if err := s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: testNS, EventHubName: testHub,
		ConsumerGroup: testGroup, PartitionID: "2", SequenceNumber: to.Ptr(int64(7))}, nil); err != nil {
		t.Fatal(err)
	}
	if c := list()["2"]; c.Offset != nil || c.SequenceNumber == nil || *c.SequenceNumber != 7 {
		t.Errorf("sequence-only checkpoint listed as offset %v sequence %v", strp(c.Offset), int64p(c.SequenceNumber))
	}
}

func strp(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func int64p(p *int64) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}

// TestListFiltering: ownerships and checkpoints of other namespaces, hubs
// and consumer groups are not listed; names differing only in case are the
// same hub (Event Hubs names are not case sensitive); names with
// characters Table keys refuse still work.
func TestListFiltering(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	type hub struct{ ns, name, group string }
	hubs := []hub{
		{testNS, testHub, testGroup},
		{"other.servicebus.windows.net", testHub, testGroup},
		{testNS, "insights-logs-auditevent2", testGroup},
		{testNS, testHub, "kvwatch"},
		{testNS, testHub, "$Default2"},
		{"localhost:5672", "hub/with?odd#chars'", "group|x"},
	}
	for i, h := range hubs {
		p := fmt.Sprint(i)
		if _, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{{FullyQualifiedNamespace: h.ns, EventHubName: h.name,
			ConsumerGroup: h.group, PartitionID: p, OwnerID: "owner-" + p}}, nil); err != nil {
			t.Fatalf("claim on %+v: %v", h, err)
		}
		if err := s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: h.ns, EventHubName: h.name,
			ConsumerGroup: h.group, PartitionID: p, SequenceNumber: to.Ptr(int64(i)), Offset: to.Ptr(fmt.Sprint(i * 100))}, nil); err != nil {
			t.Fatalf("checkpoint on %+v: %v", h, err)
		}
	}
	for i, h := range hubs {
		for _, q := range []hub{h, {strings.ToUpper(h.ns), strings.ToUpper(h.name), strings.ToUpper(h.group)}} {
			os, err := s.ListOwnership(ctx, q.ns, q.name, q.group, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(os) != 1 || os[0].PartitionID != fmt.Sprint(i) || os[0].OwnerID != "owner-"+fmt.Sprint(i) {
				t.Errorf("ListOwnership(%+v) = %+v, want only partition %d", q, os, i)
			}
			cps, err := s.ListCheckpoints(ctx, q.ns, q.name, q.group, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(cps) != 1 || cps[0].PartitionID != fmt.Sprint(i) || *cps[0].SequenceNumber != int64(i) {
				t.Errorf("ListCheckpoints(%+v) = %+v, want only partition %d", q, cps, i)
			}
		}
	}
	if os, err := s.ListOwnership(ctx, testNS, "nohub", testGroup, nil); err != nil || len(os) != 0 {
		t.Errorf("unknown hub: %v %+v", err, os)
	}
}

// TestManyPartitions: a list spanning more than one page of results.
func TestManyPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := newTestStore(t)
	ctx := context.Background()
	var os []azeventhubs.Ownership
	var want []string
	for i := range 1005 { // the service pages at 1000 entities
		os = append(os, own(fmt.Sprint(i), "a", nil))
		want = append(want, fmt.Sprint(i))
	}
	got, err := s.ClaimOwnership(ctx, os, nil)
	if err != nil || len(got) != len(os) {
		t.Fatalf("claimed %d of %d: %v", len(got), len(os), err)
	}
	var listed []string
	for p := range listOwnership(t, s) {
		listed = append(listed, p)
	}
	slices.Sort(listed)
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("listed %d partitions, want %d", len(listed), len(want))
	}
}

// TestValidation: missing names are errors, not entities with empty keys.
func TestValidation(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	if _, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{{FullyQualifiedNamespace: testNS, EventHubName: testHub,
		ConsumerGroup: testGroup}}, nil); err == nil {
		t.Error("claim without a partition ID: no error")
	}
	if err := s.SetCheckpoint(ctx, azeventhubs.Checkpoint{EventHubName: testHub, ConsumerGroup: testGroup, PartitionID: "0"}, nil); err == nil {
		t.Error("checkpoint without a namespace: no error")
	}
	if _, err := s.ListCheckpoints(ctx, testNS, "", testGroup, nil); err == nil {
		t.Error("list without a hub: no error")
	}
	if _, err := TableName("9bad"); err == nil {
		t.Error("prefix starting with a digit accepted")
	}
	if n, err := TableName("kvwatch"); err != nil || n != "kvwatchcheckpoints" {
		t.Errorf("TableName(kvwatch) = %q, %v", n, err)
	}
}

func TestModifiedFromETag(t *testing.T) {
	got := modified(azcore.ETag(`W/"datetime'2026-11-24T10%3A11%3A12.1234567Z'"`), nil)
	want := time.Date(2026, 11, 24, 10, 11, 12, 123456700, time.UTC)
	if !got.Equal(want) {
		t.Errorf("modified = %v, want %v", got, want)
	}
	if got := modified("not-a-table-etag", nil); time.Since(got) > time.Minute {
		t.Errorf("fallback = %v, want now", got)
	}
}

package stats_test

import (
	"testing"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// Two hubs' partitions with the same id and sequence numbers are two
// streams: both count. The same hub's batch again counts nothing.
func TestTwoHubsSamePartitionBothCounted(t *testing.T) {
	batches, _ := demoBatches(t, demo.Options{})
	on := func(ns string) []audit.Event {
		evs := append([]audit.Event(nil), batches[0]...)
		for i := range evs {
			s := &evs[i].Source
			s.Namespace, s.Hub, s.Partition, s.Sequence, s.HasSequence = ns, "insights-logs-auditevent", "0", int64(i+1), true
		}
		return evs
	}
	west, east := on("kv-west.servicebus.windows.net"), on("kv-east.servicebus.windows.net")
	st := state.NewMemory()
	c := stats.New(st)
	requests := func() int64 {
		var n int64
		for _, e := range snapshot(t, st, vaults, []int64{stats.Day(demoDay)}) {
			for _, h := range stats.ReadDay(e).Hours {
				n += h.Requests
			}
		}
		return n
	}
	collect(t, c, [][]audit.Event{west})
	one := requests()
	if one == 0 {
		t.Fatal("the batch counted nothing")
	}
	collect(t, c, [][]audit.Event{east})
	if n := requests(); n != 2*one {
		t.Fatalf("two hubs: %d requests, want %d", n, 2*one)
	}
	collect(t, c, [][]audit.Event{west, east[len(east)/2:]})
	if n := requests(); n != 2*one {
		t.Fatalf("redelivered: %d requests, want %d", n, 2*one)
	}
}

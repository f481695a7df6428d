package audit_test

import (
	"testing"

	"github.com/kvwatch/kvwatch/internal/audit"
)

func TestPosition(t *testing.T) {
	for _, tc := range []struct {
		s      audit.Source
		stream string
		pos    int64
	}{
		{audit.Source{Partition: "0", Sequence: 7, HasSequence: true}, "p:0", 7},
		{audit.Source{Namespace: "ns1.servicebus.windows.net", Hub: "insights-logs-auditevent", Partition: "0", Sequence: 7, HasSequence: true},
			"p:ns1.servicebus.windows.net/insights-logs-auditevent/0", 7},
		{audit.Source{Namespace: "NS1.ServiceBus.Windows.Net", Hub: "Insights-Logs-AuditEvent", Partition: "3", Sequence: 9, HasSequence: true, Event: 4},
			"p:ns1.servicebus.windows.net/insights-logs-auditevent/3", 9},
		{audit.Source{File: "a/PT1H.json", Line: 12, Event: 3}, "f:a/PT1H.json", 12},
		{audit.Source{File: "a/body.json", Event: 3}, "f:a/body.json", 3},
		{audit.Source{Partition: "0", Event: 3}, "", 0}, // no sequence number, no file
	} {
		s, p := tc.s.Position()
		if s != tc.stream || p != tc.pos {
			t.Errorf("%+v: (%q, %d), want (%q, %d)", tc.s, s, p, tc.stream, tc.pos)
		}
	}
}

func TestStreamsIsPosition(t *testing.T) {
	srcs := []audit.Source{
		{Partition: "0", Sequence: 1, HasSequence: true},
		{Partition: "0", Sequence: 2, HasSequence: true},
		{Namespace: "a.servicebus.windows.net", Hub: "h", Partition: "0", Sequence: 2, HasSequence: true},
		{Namespace: "b.servicebus.windows.net", Hub: "h", Partition: "0", Sequence: 2, HasSequence: true},
		{Namespace: "b.servicebus.windows.net", Hub: "h2", Partition: "0", Sequence: 2, HasSequence: true},
		{Namespace: "b.servicebus.windows.net", Hub: "h2", Partition: "1", Sequence: 2, HasSequence: true},
		{File: "x", Line: 1},
		{File: "x", Line: 2},
		{File: "y"},
		{},
		{Partition: "0", Sequence: 3, HasSequence: true},
	}
	var c audit.Streams
	for _, s := range srcs {
		gs, gp := c.Position(&s)
		ws, wp := s.Position()
		if gs != ws || gp != wp {
			t.Errorf("%+v: Streams gives (%q, %d), Position (%q, %d)", s, gs, gp, ws, wp)
		}
	}
	s := srcs[2]
	c.Position(&s)
	if n := testing.AllocsPerRun(100, func() { c.Position(&s) }); n != 0 {
		t.Errorf("Streams.Position allocates %.0f times for the stream it just made", n)
	}
}

func TestIPPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.77": "198.51.100.0/24", "198.51.100.77:443": "198.51.100.0/24",
		"::ffff:198.51.100.7": "198.51.100.0/24", "2001:DB8:1:2::5": "2001:db8:1::/48",
		"": "", "not-an-ip": "",
	} {
		if got := audit.IPPrefix(in); got != want {
			t.Errorf("IPPrefix(%q) = %q, want %q", in, got, want)
		}
	}
	e := &audit.Event{Vault: "kv1", ObjectType: "secret", ObjectName: "db"}
	if got := e.Field("vault_object"); got != "kv1/secret/db" {
		t.Errorf("vault_object = %q", got)
	}
}

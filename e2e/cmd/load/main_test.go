package main

import (
	"strings"
	"testing"
	"time"
)

// txRows names the rows of an outbox transaction as the SDK frames it:
// one part per operation, the row key in the URL of updates and deletes
// and in the body of inserts, a cooldown row's kind in its Key.
func TestTxRows(t *testing.T) {
	part := func(line, body string) string {
		return "--changeset_1\r\nContent-Transfer-Encoding: binary\r\nContent-Type: application/http\r\n\r\n" +
			line + " HTTP/1.1\r\nAccept: application/json;odata=minimalmetadata\r\nContent-Type: application/json\r\n\r\n" + body + "\r\n"
	}
	url := "http://127.0.0.1:10002/devstoreaccount1/kvwoutbox"
	body := "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n" +
		part("POST "+url+"?%24format=application%2Fjson%3Bodata%3Dminimalmetadata", `{"PartitionKey":"o1","RowKey":"a-1a2b","ID":"1a2b"}`) +
		part("POST "+url, `{"PartitionKey":"o1","RowKey":"r-0001-1a2b"}`) +
		part("PUT "+url+"(PartitionKey='o1',RowKey='c-~ff00')", `{"PartitionKey":"o1","RowKey":"c-~ff00","Key":"inhibit|2|\"kv1\"","J":"{}"}`) +
		part("PUT "+url+"(PartitionKey='o1',RowKey='c-~ee00')", `{"PartitionKey":"o1","RowKey":"c-~ee00","Key":"burst|kv1|app","J":"{}"}`) +
		part("PUT "+url+"(PartitionKey='o1',RowKey='c-~dd00')", `{"PartitionKey":"o1","RowKey":"c-~dd00","Key":"group|burst|kv1","J":"{}"}`) +
		part("POST "+url, `{"PartitionKey":"o1","RowKey":"d-f00","Alert":"1a2b"}`) +
		part("PUT "+url+"(PartitionKey='o1',RowKey='~head')", `{"PartitionKey":"o1","RowKey":"~head","Seq":3}`) +
		part("DELETE "+url+"(PartitionKey='o1',RowKey='l-0000000000000000001')", "") +
		"--changeset_1--\r\n--batch_1--\r\n"
	got := strings.Join(txRows([]byte(body)), " ")
	if want := "a- r- inhibit cooldown group d- ~h delete"; got != want {
		t.Fatalf("rows %q, want %q", got, want)
	}
}

// The sweep tells an outbox query's purpose by its filter: Azurite's time
// is reported per kind.
func TestQueryKind(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"GET /devstoreaccount1/kvoutbox()?$filter=PartitionKey%20eq%20%27o1%27%20and%20RowKey%20gt%20%27l-0000000000000000007%27%20and%20RowKey%20lt%20%27l.%27 HTTP/1.1", " (log)"},
		{"GET /devstoreaccount1/kvoutbox()?%24filter=PartitionKey+eq+%27o1%27+and+RowKey+gt+%27l-0000000000000000007%27 HTTP/1.1", " (log)"},
		{"GET /devstoreaccount1/kvoutbox()?$filter=PartitionKey%20eq%20%27o2%27%20and%20(RowKey%20eq%20%27a-x%27%20or%20RowKey%20eq%20%27a-y%27) HTTP/1.1", " (by key a-)"},
		{"GET /devstoreaccount1/kvoutbox()?$filter=PartitionKey%20eq%20%27o2%27%20and%20Pending%20eq%20true HTTP/1.1", " (due)"},
		{"GET /devstoreaccount1/kvoutbox()?$filter=PartitionKey%20eq%20%27o2%27%20and%20RowKey%20ge%20%27c-%27 HTTP/1.1", ""},
	} {
		if got := queryKind([]byte(c.line)); got != c.want {
			t.Errorf("%s: %q, want %q", c.line, got, c.want)
		}
	}
}

// What the sweep says about reads by key: keys and queries per 1,000
// records, by table and row kind, between two readings.
func TestKeysPerK(t *testing.T) {
	k0 := map[string]int64{"outbox query (by key a-)": 10}
	q0 := map[string]int64{"outbox query (by key a-)": 1}
	k1 := map[string]int64{"outbox query (by key a-)": 38, "outbox query (by key c-)": 5, "findings query (by key 4e)": 3, "findings query (by key 0a)": 1}
	q1 := map[string]int64{"outbox query (by key a-)": 3, "outbox query (by key c-)": 1, "findings query (by key 4e)": 1, "findings query (by key 0a)": 1}
	if got, want := keysPerK(k0, q0, k1, q1, 2000), "findings 2.0 keys in 1.0 queries, outbox a- 14.0 keys in 1.0 queries, outbox c- 2.5 keys in 0.5 queries"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := keysPerK(k1, q1, k1, q1, 2000); got != "none" {
		t.Fatalf("%q, want none", got)
	}
}

// The sweep says how many requests of each kind it sent, beside how long
// Azurite took: the six kinds it took longest on, per 1,000 records.
func TestCallsPerK(t *testing.T) {
	bz0 := map[string]time.Duration{"outbox query (log)": time.Second}
	bz1 := map[string]time.Duration{"outbox query (log)": 3 * time.Second, "journal (tx)": 1500 * time.Millisecond}
	n0 := map[string]int64{"outbox query (log)": 10}
	n1 := map[string]int64{"outbox query (log)": 30, "journal (tx)": 4}
	if got, want := callsPerK(bz0, bz1, n0, n1, 2000), "outbox query (log) 10.0, journal (tx) 2.0"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// Outbox rows are described per alert and per 1,000 records alike: the
// sum, then each kind, most first.
func TestRowsPerK(t *testing.T) {
	rw0 := map[string]int64{"a-": 10, "d-": 5}
	rw1 := map[string]int64{"a-": 30, "d-": 45, "r-": 10}
	if got, want := rowsPerK(rw0, rw1, 2000), "35.0 (d- 20.0, a- 10.0, r- 5.0)"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := rowsPerK(rw1, rw1, 2000); got != "none" {
		t.Fatalf("%q, want none", got)
	}
	if got, want := (sweepRow{alerts: 4, rows: rw1}).rowsPerAlert(), "21.2 (d- 11.2, a- 7.5, r- 2.5)"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// A phase's CPU is told per 1,000 records and in cores over its wall
// time: Azurite near one core is the bound of a Table phase on a machine
// whose cores it shares with the handlers.
func TestCPUPerK(t *testing.T) {
	u := cpuUse{azurite: 1.8, handlers: 1.2, driver: 0.3}.minus(cpuUse{azurite: 0.3, handlers: 0.2, driver: 0.1})
	if got, want := cpuPerK(u, 10_000, 2*time.Second), "Azurite 150 ms, handlers 100 ms, this process 20 ms per 1,000 records (cores busy: 0.75, 0.50, 0.10)"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := cpuPerK(u, 0, time.Second); got != "none" {
		t.Fatalf("%q, want none", got)
	}
}

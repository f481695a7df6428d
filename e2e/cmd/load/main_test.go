package main

import (
	"strings"
	"testing"
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

package tablestore

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// asQueried is an entity as a query hands it over: aztables decodes the
// page into maps and encodes each entity again (keys sorted: D10 before D2).
func asQueried(t testing.TB, ent aztables.EDMEntity, etag string) []byte {
	t.Helper()
	js, err := json.Marshal(ent)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	m["odata.etag"] = etag
	m["Timestamp"] = "2026-12-06T21:00:00.1234567Z"
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeChunkedRow reads what aztables.EDMEntity and getChunks read: the
// row key, the ETag, a head's Index and the stored bytes, whatever their
// number of chunks; and fails where getChunks fails.
func TestDecodeChunkedRow(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	etag := `W/"datetime'2026-12-06T21%3A00%3A00.1234567Z'"`
	for _, size := range []int{1, 100, chunkSize, chunkSize + 1, 3*chunkSize + 17, maxChunks * chunkSize} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(r.IntN(256))
		}
		props := map[string]any{propStream: "p:ns/hub/0"}
		if err := putChunks(props, data); err != nil {
			t.Fatal(err)
		}
		raw := asQueried(t, aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "j-x", RowKey: entryRK(42)}, Properties: props}, etag)
		var ent aztables.EDMEntity
		if err := json.Unmarshal(raw, &ent); err != nil {
			t.Fatal(err)
		}
		want, err := getChunks(ent.Properties)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeChunkedRow(raw)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		data2, err := got.chunks()
		if err != nil || !bytes.Equal(data2, want) || !bytes.Equal(data2, data) {
			t.Fatalf("%d bytes: read %d bytes (%v), want %d", size, len(data2), err, len(want))
		}
		if got.rowKey != ent.RowKey || got.etag != ent.ETag || got.etag != etag {
			t.Fatalf("row key %q etag %q, want %q %q", got.rowKey, got.etag, ent.RowKey, ent.ETag)
		}
		// A chunk missing, and N missing, fail as getChunks does.
		delete(props, chunkProp(0))
		raw = asQueried(t, aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "j-x", RowKey: entryRK(42)}, Properties: props}, etag)
		if _, err := decodeChunkedRow(raw); err == nil || !strings.Contains(err.Error(), "lacks D0") {
			t.Fatalf("a missing chunk: %v", err)
		}
	}
	// A head: Index (Edm.Int64), no chunks.
	raw := asQueried(t, aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "j-x", RowKey: headRK},
		Properties: map[string]any{propIndex: aztables.EDMInt64(1 << 40), propStream: "p:ns/hub/0"}}, etag)
	got, err := decodeChunkedRow(raw)
	if err != nil || got.rowKey != headRK || got.index != 1<<40 || got.etag != etag {
		t.Fatalf("head: %+v %v", got, err)
	}
	if _, err := got.chunks(); err == nil {
		t.Fatal("a row without N has no chunks")
	}
	// Escaped JSON (a solidus written \/) reads the same.
	props := map[string]any{}
	putChunks(props, []byte{0xff, 0xfe, 0xfd, 0xfc}) // base64 "//79/A=="
	raw = asQueried(t, aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "j-x", RowKey: "000001"}, Properties: props}, etag)
	raw = bytes.ReplaceAll(raw, []byte(`"//79/A=="`), []byte(`"\/\/79\/A=="`))
	got, err = decodeChunkedRow(raw)
	if d, _ := got.chunks(); err != nil || !bytes.Equal(d, []byte{0xff, 0xfe, 0xfd, 0xfc}) {
		t.Fatalf("escaped: %v %v", d, err)
	}
}

func BenchmarkDecodeChunkedRow(b *testing.B) {
	data := make([]byte, 10*chunkSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	props := map[string]any{}
	putChunks(props, data)
	raw := asQueried(b, aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "j-x", RowKey: entryRK(42)}, Properties: props}, "W/\"x\"")
	b.Run("EDMEntity", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var ent aztables.EDMEntity
			if err := json.Unmarshal(raw, &ent); err != nil {
				b.Fatal(err)
			}
			if _, err := getChunks(ent.Properties); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decodeChunkedRow", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			r, err := decodeChunkedRow(raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.chunks(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

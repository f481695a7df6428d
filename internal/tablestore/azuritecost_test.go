package tablestore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// BenchmarkAzuriteCosts measures what Azurite, the Table Storage the
// tests and the sweep run against, spends on the requests kvwatch makes,
// to tell its costs from kvwatch's (docs/performance.md): a transaction's
// fixed cost and its cost per row, by the size of the partition it
// writes to, and a query's and a point read's by the size of the table
// and partition they read. Its costs are not Azure Table Storage's: there
// a row is found by its keys' index whatever its partition holds.
//
//	go test -run '^$' -bench BenchmarkAzuriteCosts ./internal/tablestore/
func BenchmarkAzuriteCosts(b *testing.B) {
	ctx := context.Background()
	c := serviceClient(b).NewClient(testPrefix() + "cost")
	if _, err := c.CreateTable(ctx, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Delete(context.Background(), nil) })
	pad := func(n int) string { return strings.Repeat("x", n) }
	seq := 0
	tx := func(b *testing.B, pk string, rows, size int) {
		actions := make([]aztables.TransactionAction, rows)
		for i := range actions {
			seq++
			ent, err := json.Marshal(map[string]any{"PartitionKey": pk, "RowKey": fmt.Sprintf("r%09d", seq), "P": pad(size)})
			if err != nil {
				b.Fatal(err)
			}
			actions[i] = aztables.TransactionAction{ActionType: aztables.TransactionTypeInsertReplace, Entity: ent}
		}
		if _, err := c.SubmitTransaction(ctx, actions, nil); err != nil {
			b.Fatal(err)
		}
	}
	fill := func(b *testing.B, pk string, rows int) {
		for rows > 0 {
			n := min(rows, 100)
			tx(b, pk, n, 100)
			rows -= n
		}
	}
	// Partitions of 20,000 rows and of 10, in a table of about 25,000.
	fill(b, "big", 20_000)
	for i := range 500 {
		fill(b, fmt.Sprintf("small%03d", i), 10)
	}
	// A transaction into a new partition each time ("" below), or into
	// the big one.
	for _, c := range []struct {
		name       string
		pk         string
		rows, size int
	}{
		{"tx/rows=1/partition=new", "", 1, 100},
		{"tx/rows=10/partition=new", "", 10, 100},
		{"tx/rows=50/partition=new", "", 50, 100},
		{"tx/rows=50/bytes=4000/partition=new", "", 50, 4000},
		{"tx/rows=10/partition=20000", "big", 10, 100},
	} {
		ci := fmt.Sprint(c.size)
		b.Run(c.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				pk := c.pk
				if pk == "" {
					n++
					pk = fmt.Sprintf("new-%s-%d-%d", ci, c.rows, n)
				}
				tx(b, pk, c.rows, c.size)
			}
		})
	}
	query := func(b *testing.B, filter string) {
		p := c.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter})
		for p.More() {
			if _, err := p.NextPage(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("query/range-of-10/table=25000+", func(b *testing.B) {
		for b.Loop() {
			query(b, "PartitionKey eq 'small100' and RowKey ge 'r' and RowKey lt 's'")
		}
	})
	b.Run("read/partition=20000", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.GetEntity(ctx, "big", "r000010000", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read/partition=10", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.GetEntity(ctx, "small200", fmt.Sprintf("r%09d", 20_000+200*10+5), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	small := serviceClient(b).NewClient(testPrefix() + "costsmall")
	if _, err := small.CreateTable(ctx, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { small.Delete(context.Background(), nil) })
	ent, _ := json.Marshal(map[string]any{"PartitionKey": "p", "RowKey": "r1"})
	if _, err := small.AddEntity(ctx, ent, nil); err != nil {
		b.Fatal(err)
	}
	b.Run("query/range-of-1/table=1", func(b *testing.B) {
		for b.Loop() {
			filter := "PartitionKey eq 'p' and RowKey ge 'r' and RowKey lt 's'"
			p := small.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter})
			if _, err := p.NextPage(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/delivery/deliverytest"
)

// A replay whose alerts outgrew the in-memory outbox says how many it
// cannot list, rather than listing fewer alerts as if they were all.
func TestReplaySummarySaysWhatTheOutboxForgot(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	out := delivery.NewMemory()
	var ids []string
	for i := range delivery.MaxDoneEntries + 1 {
		e := deliverytest.Entry(fmt.Sprint("app-", i), t0.Add(time.Duration(i)*time.Second), delivery.Delivered)
		if _, err := out.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.Alert.Findings[0].ID)
	}
	var buf bytes.Buffer
	if err := printDeliveries(ctx, out, ids, &buf); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d earlier alerts not listed", out.Forgotten())
	if out.Forgotten() == 0 || !strings.Contains(buf.String(), want) {
		t.Fatalf("forgot %d; summary does not say %q:\n%s", out.Forgotten(), want, tail(buf.String()))
	}
	if n := strings.Count(buf.String(), "\nalert ") + 1; n != delivery.MaxDoneEntries+1-out.Forgotten() {
		t.Fatalf("listed %d alerts, want the %d kept", n, delivery.MaxDoneEntries+1-out.Forgotten())
	}
}

func tail(s string) string {
	if len(s) > 400 {
		return "…" + s[len(s)-400:]
	}
	return s
}

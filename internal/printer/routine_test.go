package printer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/printer"
)

// Findings marked routine are not printed in text (delivery does not alert
// them), only counted after the others; one handed on later above its
// routine is printed. JSON lists them once, "routine": true.
func TestFindingsRoutine(t *testing.T) {
	at := time.Date(2026, 11, 24, 9, 5, 0, 0, time.UTC)
	quiet := finding.Finding{ID: "r1", Rule: "listing-then-read-burst", Title: "Secret listing followed by a burst of reads",
		Severity: finding.High, Count: 20, FirstEvent: at, LastEvent: at, Routine: true,
		Summary: "by app-orders; routine (learned count 20): not alerted unless above 2× that"}
	quiet2 := quiet
	quiet2.ID = "r2"
	above := quiet2
	above.Routine, above.Count, above.Summary = false, 60, "by app-orders; above its routine: count 60 is more than 2× the learned 20"
	batches := [][]finding.Finding{{quiet}, {quiet, quiet2}, {above}}

	var text bytes.Buffer
	p := printer.NewFindings(&text, printer.Text)
	p.Updates = &delivery.Incidents{}
	for _, b := range batches {
		if err := p.Found(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	if strings.Contains(out, "routine (learned") || !strings.Contains(out, "above its routine: count 60") ||
		!strings.HasSuffix(out, "(1 findings of groups that fire routinely not shown: recorded, not alerted; --output json lists them)\n") {
		t.Errorf("text:\n%s", out)
	}

	var js bytes.Buffer
	p = printer.NewFindings(&js, printer.JSON)
	for _, b := range batches {
		if err := p.Found(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	p.Flush()
	var routine, alerted int
	for _, l := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var f finding.Finding
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatal(err)
		}
		if f.Routine {
			routine++
		} else {
			alerted++
		}
	}
	if routine != 2 || alerted != 1 {
		t.Errorf("JSON: %d routine, %d not, want 2 and 1:\n%s", routine, alerted, js.String())
	}
}

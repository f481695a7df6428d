package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/printer"
)

// printDeliveries says, for each alert the findings (by ID, in the order
// they were found) made, where it went: each receiver and what it
// answered, or the silence or mute interval that held it, or that no route
// took it. Findings a cooldown held back are counted at the end.
func printDeliveries(ctx context.Context, out delivery.Outbox, findingIDs []string, w io.Writer) error {
	seen := map[string]bool{}
	held := 0
	for _, id := range findingIDs {
		dec, ok, err := out.Decision(ctx, id)
		if err != nil {
			return fmt.Errorf("replay: reading what delivery decided: %w", err)
		}
		switch {
		case !ok:
			continue
		case dec.Alert == "":
			if dec.Suppressed && !seen["held:"+id] {
				seen["held:"+id] = true
				held++
			}
			continue
		case seen[dec.Alert]:
			continue
		}
		seen[dec.Alert] = true
		e, err := out.Get(ctx, dec.Alert)
		if err != nil {
			return fmt.Errorf("replay: reading alert %s: %w", dec.Alert, err)
		}
		if e == nil {
			continue
		}
		fmt.Fprintf(w, "alert %s %-8s %s %s: %s\n", e.Alert.ID, strings.ToUpper(e.Alert.Severity.String()), e.Alert.Rule,
			printer.Safe(e.Alert.Vault), whereItWent(e))
	}
	if held > 0 {
		fmt.Fprintf(w, "%d findings held back by cooldowns (counted into the next alert of their group)\n", held)
	}
	return nil
}

// whereItWent describes an outbox entry's delivery on one line.
func whereItWent(e *delivery.Entry) string {
	if e.MutedBy != "" {
		return "muted by " + e.MutedBy
	}
	if len(e.Receivers) == 0 {
		return "no route took it"
	}
	names := make([]string, 0, len(e.Receivers))
	for n := range e.Receivers {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		a := e.Receivers[n]
		parts[i] = n + " (" + string(a.State)
		if a.LastError != "" {
			parts[i] += ": " + printer.Safe(a.LastError)
		}
		parts[i] += ")"
	}
	return "sent to " + strings.Join(parts, ", ")
}

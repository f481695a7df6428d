package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/printer"
)

// printDeliveries says, for each alert the findings (by ID, in the order
// they were found) made, first messages and updates alike, where it went:
// each receiver and what it answered, or the silence or mute interval that
// held it, or the alert of another rule it was folded into (inhibited), or
// that no route took it. Findings a cooldown held back, and findings of
// groups that fire routinely (recorded, not alerted), are counted at the
// end.
func printDeliveries(ctx context.Context, out delivery.Outbox, findingIDs []string, w io.Writer) error {
	ids := map[string]bool{}
	held := 0
	var routine []string
	for _, id := range findingIDs {
		if ids[id] {
			continue
		}
		ids[id] = true
		dec, ok, err := out.Decision(ctx, id)
		if err != nil {
			return fmt.Errorf("replay: reading what delivery decided: %w", err)
		}
		if ok && dec.Alert == "" && dec.Suppressed {
			held++
		}
		if ok && dec.Alert == "" && dec.Routine {
			routine = append(routine, id)
		}
	}
	// Every alert carrying one of the findings: the outbox's newest first,
	// printed oldest first.
	es, err := out.Recent(ctx, 4*len(ids)+100)
	if err != nil {
		return fmt.Errorf("replay: reading the outbox: %w", err)
	}
	slices.Reverse(es)
	slices.SortStableFunc(es, func(a, b *delivery.Entry) int { return a.Alert.Created.Compare(b.Alert.Created) })
	alerted := map[string]bool{}
	for _, e := range es {
		if !slices.ContainsFunc(e.Alert.Findings, func(f finding.Finding) bool { return ids[f.ID] }) {
			continue
		}
		for _, f := range e.Alert.Findings {
			alerted[f.ID] = true
		}
		fmt.Fprintf(w, "alert %s %-8s %s %s: %s%s\n", e.Alert.ID, strings.ToUpper(e.Alert.Severity.String()), e.Alert.Rule,
			printer.Safe(e.Alert.Vault), whereItWent(e), incidentNote(e.Alert))
	}
	if f, ok := out.(interface{ Forgotten() int }); ok && f.Forgotten() > 0 {
		fmt.Fprintf(w, "%d earlier alerts not listed: the in-memory outbox keeps the last %d that no receiver waits for\n",
			f.Forgotten(), delivery.MaxDoneEntries)
	}
	if held > 0 {
		fmt.Fprintf(w, "%d findings held back by cooldowns (counted into the next alert of their group)\n", held)
	}
	// (A routine finding handed on above its routine later is alerted;
	// its routine decision stays.)
	routine = slices.DeleteFunc(routine, func(id string) bool { return alerted[id] })
	if len(routine) > 0 {
		fmt.Fprintf(w, "%d findings of groups that fire routinely recorded, not alerted (their rules' routine:)\n", len(routine))
	}
	return nil
}

// whereItWent describes an outbox entry's delivery on one line.
func whereItWent(e *delivery.Entry) string {
	if e.InhibitedBy != "" {
		return "inhibited by " + e.InhibitedBy
	}
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

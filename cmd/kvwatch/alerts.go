package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/logger"
	"github.com/kvwatch/kvwatch/internal/printer"
)

const alertsUsage = `Usage:
  kvwatch alerts list [-n N] [--since T] [--routine]
                                              the newest alerts in the outbox (Table Storage) and each receiver's state,
                                              then the findings learned as routine, not alerted, since T (default 24h):
                                              a count per rule and group; --routine lists each instead
  kvwatch alerts show ID                      one alert and its delivery, as JSON
  kvwatch alerts resend [--config FILE] ID    send an alert again through its receivers
  kvwatch alerts test [--config FILE]         send a test alert through the configured receivers and routes
`

// alertsCmd: `kvwatch alerts test` sends one test alert to every receiver
// the routes would choose for a high-severity alert, and says what each
// answered.
func alertsCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "list" || args[0] == "show" || args[0] == "resend") {
		return alertsOutbox(ctx, args, getenv, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "test" {
		return groupUsage(args, alertsUsage, stdout)
	}
	fs := newFlags("alerts test", "kvwatch alerts test [--config FILE]",
		"Sends one test alert to every receiver the routes pick for a high-severity alert, and says what each answered.")
	cfgPath := fs.String("config", "", configFlagHelp)
	if err := fs.parse(args[1:], stdout); err != nil {
		return err
	}
	if err := fs.noArgs(); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	log := logger.New(logger.Options{Level: "warn", Console: true, Err: stderr})
	receivers, err := buildReceivers(cfg, &http.Client{Timeout: 30 * time.Second}, stdout, log)
	if err != nil {
		return err
	}
	if len(receivers) == 0 {
		return errors.New("no receivers configured in kvwatch.yaml: nothing to test")
	}
	c, err := delivery.Compile(cfg)
	if err != nil {
		return fmt.Errorf("delivery configuration: %w", err)
	}
	now := time.Now().UTC()
	f := finding.Finding{Rule: "kvwatch-test", Title: "kvwatch test alert", Severity: finding.High, Kind: "test",
		Summary:     "This is a test alert from kvwatch: if you can read it, this receiver works.",
		Description: "Sent by `kvwatch alerts test`.", FirstEvent: now, LastEvent: now, WindowStart: now, WindowEnd: now,
		Group: []finding.Pair{{Field: "vault", Value: "kv-example"}}, Vault: "kv-example", Count: 1}
	f.ID = finding.NewID(f.Rule, "", now, "")
	a := alert.New([]finding.Finding{f}, now)
	a.Test = true
	names := make([]string, 0, len(receivers))
	for n := range receivers {
		names = append(names, n)
	}
	slices.Sort(names)
	routed := delivery.Routes(c.Routes, a, names)
	failed := 0
	for _, name := range routed {
		err := receivers[name].Notify(ctx, a)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "%-20s FAILED: %v\n", name, err)
			continue
		}
		fmt.Fprintf(stdout, "%-20s accepted\n", name)
	}
	for _, name := range names {
		if !slices.Contains(routed, name) {
			fmt.Fprintf(stdout, "%-20s not routed for a high-severity alert\n", name)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d receivers failed", failed, len(routed))
	}
	return nil
}

// alertsOutbox lists, shows and resends alerts from the outbox in Table
// Storage: what was sent, to whom, and what each receiver answered.
func alertsOutbox(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	synopsis := map[string]string{"list": "kvwatch alerts list [-n N] [--since T] [--routine]", "show": "kvwatch alerts show ID", "resend": "kvwatch alerts resend [--config FILE] ID"}[args[0]]
	desc := "Alerts in the outbox (Table Storage) and their delivery to each receiver."
	if args[0] == "list" {
		desc += "\nThen the findings learned as routine and not alerted since --since (their rule's routine:), counted per rule and group;\n--routine lists each of them instead of the alerts."
	}
	fs := newFlags("alerts "+args[0], synopsis, desc)
	n := fs.Int("n", 20, "how many recent alerts to list (with --routine: routine findings)")
	cfgPath := fs.String("config", "", "kvwatch.yaml (for resend: receivers and routes)")
	sinceFlag := fs.String("since", "24h", "list: report the findings learned as routine, not alerted, decided since this long ago (24h, 7d) or this time (RFC 3339 or YYYY-MM-DD, UTC)")
	routineRows := fs.Bool("routine", false, "list: list each finding learned as routine, not alerted (newest first, at most -n) instead of the alerts")
	if err := fs.parse(args[1:], stdout); err != nil {
		return err
	}
	var since time.Time
	if args[0] == "list" {
		if err := fs.noArgs(); err != nil {
			return err
		}
		var err error
		if since, err = parseSince(*sinceFlag, time.Now()); err != nil {
			return usageError{err}
		}
	}
	log := logger.New(logger.Options{Level: "warn", Console: true, Err: stderr})
	st, err := openStores(ctx, getenv, log)
	if err != nil {
		return err
	}
	if !st.Durable {
		return errors.New("no Table Storage configured: the outbox of a running kvwatch lives there (KVWATCH_TABLE_CONNECTION_STRING or KVWATCH_TABLE_ENDPOINT)")
	}
	switch args[0] {
	case "list":
		if *routineRows {
			return listRoutine(ctx, st.Outbox, since, *n, true, stdout)
		}
		es, err := st.Outbox.Recent(ctx, *n)
		if err != nil {
			return err
		}
		for _, e := range es {
			a := e.Alert
			var states []string
			for _, name := range sortedKeys(e.Receivers) {
				r := e.Receivers[name]
				states = append(states, name+":"+string(r.State))
			}
			if e.InhibitedBy != "" {
				states = append(states, "inhibited by "+e.InhibitedBy)
			}
			fmt.Fprintf(stdout, "%s  %s  %-8s %-32s %-20s %s%s\n", a.ID, a.Created.Format(time.RFC3339),
				a.Severity, a.Rule, printer.Safe(a.Vault), strings.Join(states, " "), incidentNote(a))
		}
		return listRoutine(ctx, st.Outbox, since, *n, false, stdout)
	case "show", "resend":
		if len(fs.args) != 1 {
			return usageError{fmt.Errorf("usage: kvwatch alerts %s ID", args[0])}
		}
		e, err := st.Outbox.Get(ctx, fs.arg(0))
		if err != nil {
			return err
		}
		if e == nil {
			return fmt.Errorf("no alert %s in the outbox", fs.arg(0))
		}
		if args[0] == "show" {
			b, err := json.MarshalIndent(e, "", "  ")
			if err != nil {
				return err
			}
			_, err = stdout.Write(append(b, '\n'))
			return err
		}
		cfg, err := loadConfig(*cfgPath, getenv)
		if err != nil {
			return err
		}
		receivers, err := buildReceivers(cfg, &http.Client{Timeout: 30 * time.Second}, stdout, log)
		if err != nil {
			return err
		}
		failed := 0
		for _, name := range sortedKeys(e.Receivers) {
			r, ok := receivers[name]
			if !ok {
				fmt.Fprintf(stdout, "%-20s not configured any more\n", name)
				continue
			}
			if err := r.Notify(ctx, e.Alert); err != nil {
				failed++
				fmt.Fprintf(stdout, "%-20s FAILED: %v\n", name, err)
				continue
			}
			fmt.Fprintf(stdout, "%-20s accepted\n", name)
		}
		if failed > 0 {
			return fmt.Errorf("%d receivers failed", failed)
		}
		return nil
	}
	return nil
}

// incidentNote says what an update changed and which rules an alert
// folds in: "  update 2: +VaultDelete, +VaultPurge; also mass-secret-retrieval".
func incidentNote(a *alert.Alert) string {
	var parts []string
	if a.IsUpdate() {
		parts = append(parts, fmt.Sprintf("update %d of %s: %s", a.Version, a.Incident, printer.Safe(strings.Join(a.Changes, ", "))))
	}
	if len(a.Related) > 0 {
		rules := make([]string, len(a.Related))
		for i, r := range a.Related {
			rules[i] = r.Rule
		}
		parts = append(parts, "also "+strings.Join(rules, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// maxRoutineListed bounds the routine decisions `kvwatch alerts list`
// reads.
const maxRoutineListed = 100_000

// listRoutine reports the findings learned as routine and not alerted
// (routine decisions) made since since: a count per rule and group, most
// first, or (rows) each one, newest first, at most n. Findings an alert
// carries (handed on later above their routine) are left out. Nothing is
// printed without any, unless rows asks for them.
func listRoutine(ctx context.Context, out delivery.Outbox, since time.Time, n int, rows bool, w io.Writer) error {
	l, ok := out.(delivery.RoutineLister)
	if !ok {
		return nil
	}
	ds, truncated, err := l.RoutineDecisions(ctx, since, time.Now().Add(100*365*24*time.Hour), maxRoutineListed)
	if err != nil {
		return err
	}
	alerted, err := alertedSince(ctx, out, since)
	if err != nil {
		return err
	}
	ds = slices.DeleteFunc(ds, func(d delivery.RoutineDecision) bool { return alerted[d.Finding] })
	head := fmt.Sprintf("learned as routine, not alerted, since %s: %s", since.UTC().Format("2006-01-02T15:04Z"), countNoun(len(ds), "finding"))
	if truncated {
		head = fmt.Sprintf("learned as routine, not alerted, since %s: at least %s (the newest %d read)", since.UTC().Format("2006-01-02T15:04Z"),
			countNoun(len(ds), "finding"), maxRoutineListed)
	}
	if rows {
		fmt.Fprintln(w, head)
		for _, d := range ds[:min(len(ds), max(n, 0))] {
			b := d.Of
			if b == nil {
				b = &delivery.Brief{}
			}
			fmt.Fprintf(w, "%s  %s  %-8s %-32s %-20s routine  %s, count %d, period %s\n", d.Finding, d.At.UTC().Format(time.RFC3339), b.Severity,
				orUnknown(b.Rule), printer.Safe(b.Vault), printer.Safe(routineCaller(b)), b.Count, b.Period.UTC().Format("2006-01-02T15:04Z"))
		}
		if len(ds) > n {
			fmt.Fprintf(w, "... and %d more (-n)\n", len(ds)-n)
		}
		return nil
	}
	if len(ds) == 0 {
		return nil
	}
	gs, _ := digest.GroupRoutine(ds, nil, time.UTC)
	fmt.Fprintf(w, "\n%s (kvwatch alerts list --routine lists each)\n", head)
	for i := range gs {
		g := &gs[i]
		fmt.Fprintf(w, "  ×%-5d %-32s %-20s %s, last %s\n", g.Findings, orUnknown(g.Rule), printer.Safe(g.Vault),
			printer.Safe(routineCaller(&delivery.Brief{Caller: g.Caller, CallerName: g.CallerName, Group: g.Group})), g.Last.Format("2006-01-02T15:04Z"))
	}
	return nil
}

// alertedSince returns the findings the alerts created since since carry
// (a routine decision is older than an alert that carries its finding).
func alertedSince(ctx context.Context, out delivery.Outbox, since time.Time) (map[string]bool, error) {
	alerted := map[string]bool{}
	for limit := 200; ; limit = min(limit*4, 5000) {
		es, err := out.Recent(ctx, limit)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			for _, f := range e.Alert.Findings {
				alerted[f.ID] = true
			}
		}
		if len(es) < limit || es[len(es)-1].Alert.Created.Before(since) || limit >= 5000 {
			return alerted, nil
		}
	}
}

// routineCaller names a routine decision's caller: "name (key)", the key,
// or its group.
func routineCaller(b *delivery.Brief) string {
	switch {
	case b.CallerName != "" && b.CallerName != b.Caller:
		return b.CallerName + " (" + b.Caller + ")"
	case b.Caller != "":
		return b.Caller
	case len(b.Group) > 0:
		return finding.GroupString(b.Group)
	}
	return "(caller not recorded)"
}

func orUnknown(rule string) string {
	if rule == "" {
		return "(rule not recorded)"
	}
	return rule
}

func countNoun(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// parseSince reads --since: a duration before now (24h, 7d) or a time
// (RFC 3339, or YYYY-MM-DD[THH:MM] in UTC).
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := config.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := parseAt(s, time.UTC); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: not a duration (24h, 7d) nor a time (RFC 3339, YYYY-MM-DD[THH:MM])", s)
}

package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
)

const routesUsage = `Usage:
  kvwatch routes test [--config FILE] [--severity S] [--rule R] [--vault V] [--tag T]... [--caller C] [--ip IP] [--at TIME]
        print the receivers an alert would reach, or the silence or mute interval that would hold it

Run kvwatch routes test --help for its flags.
`

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func routesCmd(_ context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		return groupUsage(args, routesUsage, stdout)
	}
	fs := newFlags("routes test", "kvwatch routes test [flags]",
		`Prints where an alert with these properties would go: the receivers its routes pick, or the silence
or mute interval (from kvwatch.yaml) that would hold it back. Nothing is sent. With --rule naming a
configured rule, its severity and tags are the alert's unless --severity or --tag are given.`)
	cfgPath := fs.String("config", "", configFlagHelp)
	sev := fs.String("severity", "", "the alert's severity: info, low, medium, high, critical (default: the rule's, else high)")
	rule := fs.String("rule", "", "the rule id that raised it")
	vault := fs.String("vault", "", "the vault it is about")
	var tags stringList
	fs.Var(&tags, "tag", "a tag of the alert (repeat for several)")
	caller := fs.String("caller", "", "the caller (UPN, object or app id), for silences that name callers")
	ip := fs.String("ip", "", "the caller's IP address, for silences that name networks")
	at := fs.String("at", "now", "when its first event happened: "+timeHelp)
	if err := fs.parse(args[1:], stdout); err != nil {
		return err
	}
	if err := fs.noArgs(); err != nil {
		return err
	}
	now := time.Now().UTC()
	when, err := parseTime(*at, now)
	if err != nil {
		return usageError{fmt.Errorf("--at: %w", err)}
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	f := finding.Finding{Rule: *rule, Vault: *vault, Tags: tags, FirstEvent: when, LastEvent: when, WindowStart: when, WindowEnd: when, Count: 1}
	for _, r := range cfg.Rules {
		if r.ID == *rule {
			if *sev == "" {
				*sev = r.Severity
			}
			if len(tags) == 0 {
				f.Tags = r.Tags
			}
		}
	}
	if *sev == "" {
		*sev = "high"
	}
	if f.Severity, err = finding.ParseSeverity(*sev); err != nil {
		return usageError{fmt.Errorf("--severity %q: want one of %s", *sev, strings.Join(config.Severities, ", "))}
	}
	if *vault != "" {
		f.Group = append(f.Group, finding.Pair{Field: "vault", Value: *vault})
	}
	if *caller != "" {
		f.Group = append(f.Group, finding.Pair{Field: "caller", Value: *caller})
	}
	if *ip != "" {
		f.Group = append(f.Group, finding.Pair{Field: "ip", Value: *ip})
	}
	f.ID = finding.NewID(f.Rule, "", when, "")
	a := alert.New([]finding.Finding{f}, now)
	c, err := delivery.Compile(cfg)
	if err != nil {
		return fmt.Errorf("delivery configuration: %w", err)
	}
	var names []string
	for _, r := range cfg.Active() {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	explainRoute(stdout, a, c, names, cfg.NoReceivers(), now)
	return nil
}

// explainRoute writes where an alert goes: its receivers, or what holds
// it back.
func explainRoute(w io.Writer, a *alert.Alert, c *delivery.Compiled, receivers []string, noReceivers string, now time.Time) {
	fmt.Fprintf(w, "alert: rule %s, severity %s, vault %s, tags [%s], first event %s\n",
		orNone(a.Rule), a.Severity, orNone(a.Vault), strings.Join(a.Tags, ", "), a.FirstEvent.Format(time.RFC3339))
	if len(receivers) == 0 {
		fmt.Fprintf(w, "receivers: none: %s\n", noReceivers)
		return
	}
	to := delivery.Routes(c.Routes, a, receivers)
	if by := delivery.MutedBy(a, c.Silences, c.Mutes, now); by != "" {
		fmt.Fprintf(w, "muted by: %s (recorded as muted, sent to no one; unmuted it would go to: %s)\n", by, orNone(strings.Join(to, ", ")))
		return
	}
	if len(to) == 0 {
		fmt.Fprintln(w, "receivers: none: no route matches (recorded, sent to no one)")
		return
	}
	fmt.Fprintf(w, "receivers: %s\n", strings.Join(to, ", "))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/logger"
	"github.com/kvwatch/kvwatch/internal/printer"
)

const silenceUsage = `Usage:
  kvwatch silence add [--rule R]... [--vault V]... [--caller C]... [--ip IP|CIDR]...
                      [--comment TEXT] [--for DURATION | --until TIME] [--starts TIME]
  kvwatch silence list [--all]
  kvwatch silence expire ID...

Silences added here are kept in Table Storage (table <prefix>silences, from the
same environment as serve) and honoured by every running kvwatch serve within
a minute, without a restart: alerts they match are recorded as muted, not
sent; an alert still waiting for a receiver is muted too. Rules and vaults are
globs; callers match a caller's object ID, UPN or app ID (globs); IPs are
addresses or CIDRs. Name at least one. Without --for or --until a silence is
open-ended: expire it when the work is done. Silences in kvwatch.yaml keep
working beside these.
`

// multi is a repeatable flag; commas separate values too.
type multi []string

func (m *multi) String() string { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*m = append(*m, p)
		}
	}
	return nil
}

// silenceCmd: kvwatch silence add|list|expire.
func silenceCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "list" && args[0] != "expire") {
		return groupUsage(args, silenceUsage, stdout)
	}
	fs := newFlags("silence "+args[0], "kvwatch silence "+args[0]+" ...", strings.TrimPrefix(silenceUsage, "Usage:\n"))
	var rules, vaults, callers, ips multi
	fs.Var(&rules, "rule", "rule ID or glob (repeatable)")
	fs.Var(&vaults, "vault", "vault name or glob (repeatable)")
	fs.Var(&callers, "caller", "caller object ID, UPN or app ID, or a glob (repeatable)")
	fs.Var(&ips, "ip", "IP address or CIDR (repeatable)")
	comment := fs.String("comment", "", "why: shown wherever the silence mutes an alert")
	forD := fs.String("for", "", "how long from --starts (e.g. 2h, 1d); default: open-ended")
	until := fs.String("until", "", "when it ends: "+timeHelp+"; default: open-ended")
	starts := fs.String("starts", "", "when it starts: "+timeHelp+"; default now")
	all := fs.Bool("all", false, "list: also the silences that are over")
	if err := fs.parse(args[1:], stdout); err != nil {
		return err
	}
	log := logger.New(logger.Options{Level: "warn", Console: true, Err: stderr})
	now := time.Now().UTC()
	var s delivery.Silence
	if args[0] == "add" {
		if err := fs.noArgs(); err != nil {
			return err
		}
		var err error
		if s, err = newSilence(now, rules, vaults, callers, ips, *comment, *starts, *forD, *until); err != nil {
			return usageError{err}
		}
	}
	if args[0] == "list" {
		if err := fs.noArgs(); err != nil {
			return err
		}
	}
	if args[0] == "expire" && len(fs.args) == 0 {
		return usageError{errors.New("usage: kvwatch silence expire ID...")}
	}
	st, err := openStores(ctx, getenv, log)
	if err != nil {
		return err
	}
	if !st.Durable {
		return errors.New("no Table Storage configured: silences are kept there for serve to read " +
			"(set KVWATCH_TABLE_CONNECTION_STRING or KVWATCH_TABLE_ENDPOINT as for serve)")
	}
	switch args[0] {
	case "add":
		if err := st.Silences.AddSilence(ctx, s); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "silence %s added: %s\n", s.ID, describeSilence(&s, now))
		fmt.Fprintln(stdout, "serve honours it within a minute; end it early with: kvwatch silence expire "+s.ID)
	case "list":
		ss, err := st.Silences.Silences(ctx)
		if err != nil {
			return err
		}
		n := 0
		for i := range ss {
			if !*all && !ss[i].Ends.IsZero() && !ss[i].Ends.After(now) {
				continue
			}
			n++
			fmt.Fprintf(stdout, "%s  %s\n", ss[i].ID, describeSilence(&ss[i], now))
		}
		if n == 0 {
			if *all {
				fmt.Fprintln(stdout, "no silences")
			} else {
				fmt.Fprintln(stdout, "no active or coming silences (--all lists those that are over)")
			}
		}
	case "expire":
		var errs []error
		for _, id := range fs.args {
			got, ok, err := st.Silences.ExpireSilence(ctx, id, now)
			switch {
			case err != nil:
				errs = append(errs, err)
			case !ok:
				errs = append(errs, fmt.Errorf("no silence %q (kvwatch silence list --all)", id))
			default:
				fmt.Fprintf(stdout, "silence %s expired: %s\n", id, describeSilence(&got, now))
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

// newSilence builds a silence from the command line.
func newSilence(now time.Time, rules, vaults, callers, ips []string, comment, starts, forD, until string) (delivery.Silence, error) {
	s := delivery.Silence{ID: delivery.NewSilenceID(), Comment: comment, Rules: rules, Vaults: vaults, Callers: callers,
		Starts: now, Created: now, CreatedBy: whoAmI()}
	var errs []error
	for _, ip := range ips {
		p, err := delivery.ParsePrefix(ip)
		if err != nil {
			errs = append(errs, fmt.Errorf("--ip: %w", err))
			continue
		}
		s.IPs = append(s.IPs, p)
	}
	if starts != "" {
		t, err := parseTime(starts, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("--starts: %w", err))
		}
		s.Starts = t
	}
	switch {
	case forD != "" && until != "":
		errs = append(errs, errors.New("--for and --until: give one"))
	case forD != "":
		d, err := config.ParseDuration(forD)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("--for %q: not a duration (e.g. 2h, 90m, 1d)", forD))
		}
		s.Ends = s.Starts.Add(d)
	case until != "":
		t, err := parseTime(until, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("--until: %w", err))
		}
		s.Ends = t
	}
	if len(errs) == 0 {
		if err := delivery.CheckSilence(&s); err != nil {
			errs = append(errs, err)
		}
	}
	return s, errors.Join(errs...)
}

func whoAmI() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		if h, err := os.Hostname(); err == nil {
			return u.Username + "@" + h
		}
		return u.Username
	}
	return ""
}

// describeSilence says what a silence holds and when, on one line.
func describeSilence(s *delivery.Silence, now time.Time) string {
	var what []string
	add := func(label string, vs []string) {
		if len(vs) > 0 {
			what = append(what, label+"="+printer.Safe(strings.Join(vs, ",")))
		}
	}
	add("rules", s.Rules)
	add("vaults", s.Vaults)
	add("callers", s.Callers)
	var ips []string
	for _, p := range s.IPs {
		ips = append(ips, prefixString(p))
	}
	add("ips", ips)
	when := "from " + s.Starts.Format(time.RFC3339)
	switch {
	case s.Ends.IsZero():
		when += ", open-ended"
	default:
		when += " until " + s.Ends.Format(time.RFC3339)
	}
	state := "active"
	switch {
	case !s.Ends.IsZero() && !s.Ends.After(now):
		state = "over"
	case s.Starts.After(now):
		state = "coming"
	}
	line := state + "  " + strings.Join(what, " ") + "  " + when
	if s.Comment != "" {
		line += "  " + printer.Safe(fmt.Sprintf("%q", s.Comment))
	}
	if s.CreatedBy != "" {
		line += "  by " + printer.Safe(s.CreatedBy)
	}
	return line
}

func prefixString(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

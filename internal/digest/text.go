package digest

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/printer"
)

// Title is the digest's headline, e.g. "kvwatch daily digest: Monday 23
// November 2026".
func Title(r *Report) string {
	return "kvwatch " + string(r.Period) + " digest: " + PeriodLabel(r)
}

// PeriodLabel names the period in words.
func PeriodLabel(r *Report) string {
	last := r.End.Add(-time.Nanosecond).In(r.Start.Location())
	switch r.Period {
	case Weekly:
		if r.Start.Month() == last.Month() {
			return fmt.Sprintf("week of %d–%d %s %d", r.Start.Day(), last.Day(), r.Start.Month(), last.Year())
		}
		return fmt.Sprintf("week of %d %s – %d %s %d", r.Start.Day(), r.Start.Month(), last.Day(), last.Month(), last.Year())
	case Monthly:
		return r.Start.Format("January 2006")
	}
	return r.Start.Format("Monday 2 January 2006")
}

// Span is the period's bounds with the zone.
func Span(r *Report) string {
	return r.Start.Format("2006-01-02 15:04") + " – " + r.End.In(r.Start.Location()).Format("2006-01-02 15:04") + " " + r.Zone
}

// Num formats a count with thousands separators.
func Num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Pct formats a ratio as a percentage.
func Pct(r float64) string { return strconv.FormatFloat(r*100, 'f', 1, 64) + "%" }

// Ms formats milliseconds.
func Ms(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + " ms" }

// SuccessText formats a summary's success ratio ("n/a" without requests).
func SuccessText(s Summary) string {
	if s.Requests-s.Challenges <= 0 {
		return "n/a"
	}
	return Pct(s.SuccessRatio)
}

// AvgText formats a summary's average latency ("n/a" without requests).
func AvgText(s Summary) string {
	if s.Requests == 0 {
		return "n/a"
	}
	return Ms(s.AvgLatencyMs)
}

// P95Text formats a summary's p95 latency ("n/a" without requests).
func P95Text(s Summary) string {
	if s.Requests == 0 {
		return "n/a"
	}
	return Ms(s.P95LatencyMs)
}

// Callers formats a distinct-caller count, "≥ 1000" when capped.
func Callers(s *Summary) string {
	if s.CallersAtLeast {
		return "≥ " + Num(int64(s.DistinctCallers))
	}
	return Num(int64(s.DistinctCallers))
}

// Delta formats the change from prev to cur.
func Delta(cur, prev float64) string {
	switch {
	case prev == 0 && cur == 0:
		return "±0"
	case prev == 0:
		return "new"
	}
	d := (cur - prev) / prev * 100
	s := strconv.FormatFloat(d, 'f', 1, 64)
	if d >= 0 {
		s = "+" + s
	}
	return s + "%"
}

// FindingsLine counts findings by severity, most severe first.
func FindingsLine(s *Summary) string {
	if s.FindingsCount == 0 {
		return "none"
	}
	var parts []string
	for sev := finding.Critical; sev >= finding.Info; sev-- {
		if n := s.FindingsBySeverity[sev]; n > 0 {
			parts = append(parts, strconv.Itoa(n)+" "+sev.String())
		}
	}
	return strconv.Itoa(s.FindingsCount) + ": " + strings.Join(parts, ", ")
}

// DeliveryLine says where a finding's alert stands with each receiver.
func DeliveryLine(f *Finding) string {
	if f.MutedBy != "" {
		return "muted by " + f.MutedBy
	}
	if len(f.Delivery) == 0 {
		return "matched no route"
	}
	var parts []string
	for _, d := range f.Delivery {
		p := d.Receiver + " " + string(d.State)
		if d.Attempts > 1 {
			p += fmt.Sprintf(" after %d attempts", d.Attempts)
		}
		if d.LastError != "" && d.State != "delivered" {
			p += " (" + d.LastError + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// who names a caller: "name (key)" or the key.
func who(key, name string) string {
	if name != "" && name != key {
		return name + " (" + key + ")"
	}
	if key == "" {
		return "(no identity)"
	}
	return key
}

// Text renders the digest as plain text. Values from log records are
// cleaned (control and format characters escaped) so that no record can
// forge a line or drive a terminal.
func Text(r *Report) string {
	var b strings.Builder
	c := printer.Clean
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("%s\n", Title(r))
	w("%s\n", Span(r))
	for _, n := range r.Notes {
		w("note: %s\n", n)
	}
	o := &r.Overall
	w("\nAll vaults (%d)\n", len(r.Vaults))
	w("  requests          %s, success %s, average latency %s, p95 %s\n", Num(o.Requests), SuccessText(*o), AvgText(*o), P95Text(*o))
	w("  denied            %s (anonymous SDK challenges, not counted as denied: %s)\n", Num(o.Denied), Num(o.Challenges))
	w("  callers           %s distinct identities, %s first seen on a vault\n", Callers(o), Num(int64(o.NewIdentitiesCount)))
	w("  secret reads      %s\n", Num(o.SecretReads))
	w("  changes           %s\n", Num(o.ChangesCount))
	w("  findings          %s\n", FindingsLine(o))
	if r.RoutineCount > 0 {
		w("  routine           %s learned as routine, not alerted\n", c(plural(r.RoutineCount, "finding")))
	}
	if len(o.Families) > 0 {
		w("  by family        ")
		for i, f := range o.Families {
			if i > 0 {
				w(",")
			}
			w(" %s %s", f.Family, Num(f.Requests))
		}
		w("\n")
	}

	if len(r.Vaults) > 0 {
		w("\nPer vault\n")
		w("  %-24s %10s %8s %9s %9s %7s %8s %5s %8s %9s\n", "vault", "requests", "success", "avg", "p95", "denied", "callers", "new", "changes", "findings")
		for i := range r.Vaults {
			s := &r.Vaults[i]
			w("  %-24s %10s %8s %9s %9s %7s %8s %5d %8d %9d\n", c(s.Vault), Num(s.Requests), SuccessText(*s),
				AvgText(*s), P95Text(*s), Num(s.Denied), Callers(s), s.NewIdentitiesCount, s.ChangesCount, s.FindingsCount)
		}
	}

	if len(o.DeniedCallers)+len(o.DeniedIPs) > 0 {
		w("\nDenied requests, top callers and addresses\n")
		for _, t := range o.DeniedCallers {
			w("  caller  %-66s %6s  on %s\n", c(who(t.Key, t.Name)), Num(t.Count), c(strings.Join(t.Vaults, ", ")))
		}
		for _, t := range o.DeniedIPs {
			w("  ip      %-66s %6s  on %s\n", c(t.Key), Num(t.Count), c(strings.Join(t.Vaults, ", ")))
		}
	}

	if len(o.Secrets) > 0 {
		w("\nSecrets read most (%s successful reads in all)\n", Num(o.SecretReads))
		for _, s := range o.Secrets {
			w("  %-48s %7s  by %s\n", c(s.Vault+"/"+s.Name), Num(s.Reads), readers(s.Readers))
		}
	}

	if o.NewIdentitiesCount > 0 {
		w("\nNew identities (%d)\n", o.NewIdentitiesCount)
		for i := range r.Vaults {
			if !r.Vaults[i].WatchedSince.IsZero() {
				w("  %s: first records seen %s, so every identity on it is new\n", c(r.Vaults[i].Vault), r.Vaults[i].WatchedSince.Format("2006-01-02 15:04"))
			}
		}
		for _, id := range o.NewIdentities {
			w("  %s  %-20s %s\n", id.First.Format("2006-01-02 15:04"), c(id.Vault), c(who(id.Key, id.Name)))
		}
		if o.NewIdentitiesCount > len(o.NewIdentities) {
			w("  ... and %d more\n", o.NewIdentitiesCount-len(o.NewIdentities))
		}
	}

	if o.ChangesCount > 0 {
		w("\nPermission and configuration changes (%s)\n", Num(o.ChangesCount))
		for _, ch := range o.Changes {
			w("  %s  %-20s %s (%s) by %s", ch.Time.Format("2006-01-02 15:04"), c(ch.Vault), c(ch.Operation), ch.What, c(who(ch.Caller, ch.CallerName)))
			if ch.IP != "" {
				w(" from %s", c(ch.IP))
			}
			w(": %s\n", ch.Outcome)
			for _, d := range ch.Details {
				w("      %s\n", c(d))
			}
		}
		if n := o.ChangesCount - int64(len(o.Changes)); n > 0 {
			w("  ... and %d more\n", n)
		}
	}

	if len(r.Findings) > 0 || r.FindingsTruncated {
		w("\nFindings (%d)\n", len(r.Findings))
		for i := range r.Findings {
			f := &r.Findings[i]
			vault := f.Vault
			if vault == "" {
				vault = "-"
			}
			w("  %s  %-8s %-32s %-18s %s\n", f.FirstEvent.In(r.Start.Location()).Format("2006-01-02 15:04"), strings.ToUpper(f.Severity.String()),
				f.Rule, c(vault), c(f.Summary))
			w("      alert %s: %s\n", f.AlertID, c(DeliveryLine(f)))
		}
		if r.FindingsTruncated {
			w("  (the outbox held more alerts than were examined: the list may be incomplete)\n")
		}
	}

	if r.RoutineCount > 0 {
		w("\nLearned as routine, not alerted: %s\n", c(RoutineLine(r)))
		for i := range r.Routine[:min(len(r.Routine), MaxListed)] {
			g := &r.Routine[i]
			w("  %-32s ×%-4d %s", c(RoutineRule(g)), g.Findings, c(RoutineWho(g)))
			if sp := RoutineSpan(r, g); sp != "" {
				w(", %s", sp)
			}
			w("\n")
		}
		if n := len(r.Routine) - MaxListed; n > 0 {
			w("  ... and %d more groups\n", n)
		}
		if r.RoutineTruncated {
			w("  (more routine findings were decided than were examined: the counts are lower bounds)\n")
		}
	}

	for i := range r.Vaults {
		s := &r.Vaults[i]
		if len(s.DeniedCallers)+len(s.DeniedIPs)+len(s.Secrets) == 0 {
			continue
		}
		w("\n%s\n", c(s.Vault))
		w("  %s requests, success %s, average latency %s, p95 %s, %s distinct callers, requests by family:",
			Num(s.Requests), SuccessText(*s), AvgText(*s), P95Text(*s), Callers(s))
		for j, f := range s.Families {
			if j > 0 {
				w(",")
			}
			w(" %s %s", f.Family, Num(f.Requests))
		}
		w("\n")
		for _, t := range s.DeniedCallers {
			w("  denied caller  %-60s %6s\n", c(who(t.Key, t.Name)), Num(t.Count))
		}
		for _, t := range s.DeniedIPs {
			w("  denied ip      %-60s %6s\n", c(t.Key), Num(t.Count))
		}
		for _, st := range s.Secrets {
			w("  secret read    %-36s %7s  by %s\n", c(st.Name), Num(st.Reads), readers(st.Readers))
		}
	}

	if t := r.Trend; t != nil {
		p := &t.Previous
		w("\nTrend against %s\n", t.PrevStart.Format("January 2006"))
		w("  %-22s %14s %14s %9s\n", "", "this month", "previous", "change")
		row := func(name, cur, prev string, d string) { w("  %-22s %14s %14s %9s\n", name, cur, prev, d) }
		row("requests", Num(o.Requests), Num(p.Requests), Delta(float64(o.Requests), float64(p.Requests)))
		row("success ratio", SuccessText(*o), SuccessText(*p), pointsDelta(*o, *p))
		row("average latency", AvgText(*o), AvgText(*p), Delta(o.AvgLatencyMs, p.AvgLatencyMs))
		row("p95 latency", P95Text(*o), P95Text(*p), Delta(o.P95LatencyMs, p.P95LatencyMs))
		row("denied", Num(o.Denied), Num(p.Denied), Delta(float64(o.Denied), float64(p.Denied)))
		row("new identities", Num(int64(o.NewIdentitiesCount)), Num(int64(p.NewIdentitiesCount)), Delta(float64(o.NewIdentitiesCount), float64(p.NewIdentitiesCount)))
		row("changes", Num(o.ChangesCount), Num(p.ChangesCount), Delta(float64(o.ChangesCount), float64(p.ChangesCount)))
		row("findings", Num(int64(o.FindingsCount)), Num(int64(p.FindingsCount)), Delta(float64(o.FindingsCount), float64(p.FindingsCount)))
		for _, v := range t.Vaults {
			row(c(v.Vault), Num(v.Requests), Num(v.PrevRequests), Delta(float64(v.Requests), float64(v.PrevRequests)))
		}
	}

	if len(r.Compliance) > 0 {
		w("\nCompliance (configuration as last recorded before %s)\n", r.End.In(r.Start.Location()).Format("2006-01-02 15:04"))
		for _, cp := range r.Compliance {
			switch {
			case !cp.Known:
				w("  %-24s unknown: no VaultPut/VaultPatch recorded since kvwatch started watching\n", c(cp.Vault))
			case len(cp.Problems) == 0:
				w("  %-24s ok (as of %s, by %s)\n", c(cp.Vault), cp.AsOf.Format("2006-01-02 15:04"), c(cp.By))
			default:
				w("  %-24s %s (as of %s, by %s)\n", c(cp.Vault), strings.Join(cp.Problems, "; "), cp.AsOf.Format("2006-01-02 15:04"), c(cp.By))
			}
		}
	}
	w("\nGenerated by kvwatch for %s.\n", r.Generated.UTC().Format(time.RFC3339))
	return b.String()
}

// readers lists a secret's readers, cleaned, for text.
func readers(ts []Top) string {
	var rs []string
	for _, rd := range ts {
		rs = append(rs, printer.Clean(who(rd.Key, rd.Name))+" "+Num(rd.Count))
	}
	return strings.Join(rs, ", ")
}

// pointsDelta is the change of the success ratio, in percentage points.
func pointsDelta(cur, prev Summary) string {
	switch {
	case cur.Requests-cur.Challenges <= 0 && prev.Requests-prev.Challenges <= 0:
		return "±0"
	case prev.Requests-prev.Challenges <= 0:
		return "new"
	case cur.Requests-cur.Challenges <= 0:
		return "n/a"
	}
	d := (cur.SuccessRatio - prev.SuccessRatio) * 100
	s := strconv.FormatFloat(d, 'f', 1, 64)
	if d >= 0 {
		s = "+" + s
	}
	return s + " pt"
}

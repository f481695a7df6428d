package digest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// CardMaxBytes bounds the card's JSON: Teams refuses messages over 28 KB,
// and the message envelope around the card needs a little room.
const CardMaxBytes = 27 * 1024

// mdSpecial are the characters escaped with a backslash in card text:
// every one CommonMark (the subset Adaptive Cards render) gives a meaning
// to, and "&", which could spell an entity that brings back a character
// that was stripped.
const mdSpecial = "\\`*_{}[]()#+-.!|<>~&"

// MD makes s safe as Adaptive Card text (TextBlock and Fact title and
// value are Markdown in Teams): invalid UTF-8 becomes U+FFFD, line breaks
// and tabs become spaces, control and format characters (bidi overrides,
// zero-width characters) are removed, and Markdown's special characters
// are backslash-escaped, so a value from a log shows as itself.
func MD(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029' || r == '\u0085':
			b.WriteByte(' ')
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
		case r < 0x80 && strings.IndexByte(mdSpecial, byte(r)) >= 0:
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cardLimits are the list lengths a card shows; they shrink until the card
// fits CardMaxBytes.
type cardLimits struct {
	vaults, top, identities, changes, findings, details, routine int
	summaries                                                    bool // finding summaries
}

// Card renders the digest as an Adaptive Card 1.4 (a JSON object as a
// map), within CardMaxBytes: lists are shortened, most detailed first,
// until it fits. Every text is Markdown-escaped (see MD).
func Card(r *Report) map[string]any {
	l := cardLimits{vaults: 25, top: TopN, identities: 15, changes: 15, findings: 30, details: 3, routine: 15, summaries: true}
	shrink := []func(*cardLimits) bool{
		func(l *cardLimits) bool { return halve(&l.findings, 10) },
		func(l *cardLimits) bool { return halve(&l.routine, 5) },
		func(l *cardLimits) bool { return halve(&l.identities, 5) },
		func(l *cardLimits) bool { return halve(&l.changes, 5) },
		func(l *cardLimits) bool { ok := l.summaries; l.summaries = false; return ok },
		func(l *cardLimits) bool { return halve(&l.details, 1) },
		func(l *cardLimits) bool { return halve(&l.top, 3) },
		func(l *cardLimits) bool { return halve(&l.vaults, 10) },
		func(l *cardLimits) bool { return halve(&l.findings, 0) },
		func(l *cardLimits) bool { return halve(&l.routine, 0) },
		func(l *cardLimits) bool { return halve(&l.identities, 0) },
		func(l *cardLimits) bool { return halve(&l.changes, 0) },
		func(l *cardLimits) bool { return halve(&l.details, 0) },
		func(l *cardLimits) bool { return halve(&l.top, 0) },
		func(l *cardLimits) bool { return halve(&l.vaults, 0) },
	}
	for {
		c := buildCard(r, l)
		if b, err := json.Marshal(c); err == nil && len(b) <= CardMaxBytes {
			return c
		}
		shrunk := false
		for _, f := range shrink {
			if f(&l) {
				shrunk = true
				break
			}
		}
		if !shrunk {
			return c // nothing left to shorten
		}
	}
}

func halve(n *int, floor int) bool {
	if *n <= floor {
		return false
	}
	*n = max(floor, *n/2)
	return true
}

type obj = map[string]any

func text(s string, opts ...any) obj {
	t := obj{"type": "TextBlock", "text": s, "wrap": true}
	for i := 0; i+1 < len(opts); i += 2 {
		t[opts[i].(string)] = opts[i+1]
	}
	return t
}

func heading(s string) obj {
	return text(MD(s), "weight", "Bolder", "size", "Medium", "separator", true, "spacing", "Medium")
}

func fact(title, value string) obj { return obj{"title": title, "value": value} }

func factSet(facts []obj) obj { return obj{"type": "FactSet", "facts": facts} }

func subtle(s string) obj { return text(s, "isSubtle", true, "spacing", "None", "size", "Small") }

func more(n int) obj { return subtle(MD(fmt.Sprintf("… and %d more", n))) }

func buildCard(r *Report, l cardLimits) obj {
	loc := r.Start.Location()
	tm := func(t time.Time) string { return MD(t.In(loc).Format("2006-01-02 15:04")) }
	o := &r.Overall
	var body []any
	body = append(body,
		text(MD("kvwatch "+string(r.Period)+" digest"), "weight", "Bolder", "size", "Large"),
		text(MD(PeriodLabel(r)), "spacing", "None"),
		subtle(MD(Span(r))),
	)
	for _, n := range r.Notes {
		body = append(body, subtle(MD("Note: "+n)))
	}
	fam := ""
	for i, f := range o.Families {
		if i > 0 {
			fam += ", "
		}
		fam += string(f.Family) + " " + Num(f.Requests)
	}
	facts := []obj{
		fact("Requests", MD(Num(o.Requests)+", success "+SuccessText(*o)+", average "+AvgText(*o)+", p95 "+P95Text(*o))),
		fact("Denied", MD(Num(o.Denied)+" (anonymous SDK challenges apart: "+Num(o.Challenges)+")")),
		fact("Callers", MD(Callers(o)+" distinct identities, "+Num(int64(o.NewIdentitiesCount))+" first seen on a vault")),
		fact("Secret reads", MD(Num(o.SecretReads))),
		fact("Changes", MD(Num(o.ChangesCount))),
		fact("Findings", MD(FindingsLine(o))),
	}
	if r.RoutineCount > 0 {
		facts = append(facts, fact("Routine", MD(plural(r.RoutineCount, "finding")+" learned as routine, not alerted")))
	}
	if fam != "" {
		facts = append(facts, fact("By family", MD(fam)))
	}
	body = append(body, heading(fmt.Sprintf("All vaults (%d)", len(r.Vaults))), factSet(facts))

	if n := len(r.Vaults); n > 0 && l.vaults > 0 {
		vs := r.Vaults[:min(n, l.vaults)]
		col := func(title string, right bool, cell func(s *Summary) string) obj {
			items := []any{text(MD(title), "weight", "Bolder", "wrap", false)}
			for i := range vs {
				t := text(cell(&vs[i]), "wrap", false, "spacing", "Small")
				if right {
					t["horizontalAlignment"] = "Right"
				}
				items = append(items, t)
			}
			c := obj{"type": "Column", "items": items, "width": "auto"}
			if !right {
				c["width"] = "stretch"
			}
			return c
		}
		body = append(body, heading("Per vault"), obj{"type": "ColumnSet", "columns": []any{
			col("Vault", false, func(s *Summary) string { return MD(s.Vault) }),
			col("Requests", true, func(s *Summary) string { return MD(Num(s.Requests)) }),
			col("Success", true, func(s *Summary) string { return MD(SuccessText(*s)) }),
			col("p95", true, func(s *Summary) string { return MD(P95Text(*s)) }),
			col("Denied", true, func(s *Summary) string { return MD(Num(s.Denied)) }),
			col("New", true, func(s *Summary) string { return MD(Num(int64(s.NewIdentitiesCount))) }),
			col("Findings", true, func(s *Summary) string { return MD(Num(int64(s.FindingsCount))) }),
		}})
		if n > len(vs) {
			body = append(body, more(n-len(vs)))
		}
	}

	if k := min(l.top, len(o.DeniedCallers)) + min(l.top, len(o.DeniedIPs)); k > 0 {
		var fs []obj
		for _, t := range o.DeniedCallers[:min(l.top, len(o.DeniedCallers))] {
			fs = append(fs, fact(MD(who(t.Key, t.Name)), MD(Num(t.Count)+" on "+strings.Join(t.Vaults, ", "))))
		}
		for _, t := range o.DeniedIPs[:min(l.top, len(o.DeniedIPs))] {
			fs = append(fs, fact(MD(t.Key), MD(Num(t.Count)+" on "+strings.Join(t.Vaults, ", "))))
		}
		body = append(body, heading("Denied requests: top callers and addresses"), factSet(fs))
	}

	if k := min(l.top, len(o.Secrets)); k > 0 {
		var fs []obj
		for _, s := range o.Secrets[:k] {
			var rs []string
			for _, rd := range s.Readers[:min(len(s.Readers), max(1, l.details))] {
				rs = append(rs, who(rd.Key, rd.Name)+" "+Num(rd.Count))
			}
			fs = append(fs, fact(MD(s.Vault+"/"+s.Name), MD(Num(s.Reads)+" by "+strings.Join(rs, ", "))))
		}
		body = append(body, heading("Secrets read most ("+Num(o.SecretReads)+" reads)"), factSet(fs))
	}

	if o.NewIdentitiesCount > 0 && l.identities > 0 {
		var fs []obj
		ids := o.NewIdentities[:min(len(o.NewIdentities), l.identities)]
		for _, id := range ids {
			fs = append(fs, fact(tm(id.First)+" "+MD(id.Vault), MD(who(id.Key, id.Name))))
		}
		body = append(body, heading(fmt.Sprintf("New identities (%d)", o.NewIdentitiesCount)))
		for i := range r.Vaults {
			if !r.Vaults[i].WatchedSince.IsZero() {
				body = append(body, subtle(MD(r.Vaults[i].Vault+": first records seen "+r.Vaults[i].WatchedSince.Format("2006-01-02 15:04")+", so every identity on it is new")))
			}
		}
		body = append(body, factSet(fs))
		if n := o.NewIdentitiesCount - len(ids); n > 0 {
			body = append(body, more(n))
		}
	}

	if o.ChangesCount > 0 && l.changes > 0 {
		var fs []obj
		chs := o.Changes[:min(len(o.Changes), l.changes)]
		for _, ch := range chs {
			v := ch.Operation + " (" + ch.What + ") by " + who(ch.Caller, ch.CallerName)
			if ch.IP != "" {
				v += " from " + ch.IP
			}
			v += ": " + string(ch.Outcome)
			if len(ch.Details) > 0 && l.details > 0 {
				v += "; " + strings.Join(ch.Details, "; ")
			}
			fs = append(fs, fact(tm(ch.Time)+" "+MD(ch.Vault), MD(v)))
		}
		body = append(body, heading("Permission and configuration changes ("+Num(o.ChangesCount)+")"), factSet(fs))
		if n := o.ChangesCount - int64(len(chs)); n > 0 {
			body = append(body, more(int(n)))
		}
	}

	if len(r.Findings) > 0 && l.findings > 0 {
		fsx := r.Findings[:min(len(r.Findings), l.findings)]
		var fs []obj
		for i := range fsx {
			f := &fsx[i]
			v := f.Rule
			if f.Vault != "" {
				v += " on " + f.Vault
			}
			if l.summaries {
				v += ": " + f.Summary
			}
			v += ". Alert: " + DeliveryLine(f)
			fs = append(fs, fact(MD(strings.ToUpper(f.Severity.String()))+" "+tm(f.FirstEvent), MD(v)))
		}
		body = append(body, heading(fmt.Sprintf("Findings (%d)", len(r.Findings))), factSet(fs))
		if n := len(r.Findings) - len(fsx); n > 0 {
			body = append(body, more(n))
		}
		if r.FindingsTruncated {
			body = append(body, subtle(MD("The outbox held more alerts than were examined: the list may be incomplete.")))
		}
	} else if len(r.Findings) > 0 {
		body = append(body, heading(fmt.Sprintf("Findings (%d)", len(r.Findings))), text(MD(FindingsLine(o))))
	}

	if r.RoutineCount > 0 {
		head := "Learned as routine, not alerted (" + plural(r.RoutineCount, "finding") + ")"
		if r.RoutineTruncated {
			head = "Learned as routine, not alerted (at least " + plural(r.RoutineCount, "finding") + ")"
		}
		body = append(body, heading(head))
		if gs := r.Routine[:min(len(r.Routine), l.routine)]; len(gs) > 0 {
			var fs []obj
			for i := range gs {
				g := &gs[i]
				v := RoutineWho(g)
				if sp := RoutineSpan(r, g); sp != "" {
					v += ", " + sp
				}
				fs = append(fs, fact(MD(RoutineRule(g)+" ×"+strconv.Itoa(g.Findings)), MD(v)))
			}
			body = append(body, factSet(fs))
			if n := len(r.Routine) - len(gs); n > 0 {
				body = append(body, more(n))
			}
		} else {
			body = append(body, text(MD(RoutineLine(r))))
		}
	}

	if t := r.Trend; t != nil {
		p := &t.Previous
		row := func(name, cur, prev, d string) obj { return fact(MD(name), MD(cur+" (previous "+prev+", "+d+")")) }
		fs := []obj{
			row("Requests", Num(o.Requests), Num(p.Requests), Delta(float64(o.Requests), float64(p.Requests))),
			row("Success ratio", SuccessText(*o), SuccessText(*p), pointsDelta(*o, *p)),
			row("Average latency", AvgText(*o), AvgText(*p), Delta(o.AvgLatencyMs, p.AvgLatencyMs)),
			row("Denied", Num(o.Denied), Num(p.Denied), Delta(float64(o.Denied), float64(p.Denied))),
			row("New identities", Num(int64(o.NewIdentitiesCount)), Num(int64(p.NewIdentitiesCount)), Delta(float64(o.NewIdentitiesCount), float64(p.NewIdentitiesCount))),
			row("Findings", Num(int64(o.FindingsCount)), Num(int64(p.FindingsCount)), Delta(float64(o.FindingsCount), float64(p.FindingsCount))),
		}
		body = append(body, heading("Trend against "+t.PrevStart.Format("January 2006")), factSet(fs))
	}

	if len(r.Compliance) > 0 {
		var fs []obj
		for _, c := range r.Compliance {
			v := "ok"
			switch {
			case !c.Known:
				v = "unknown: no configuration recorded since kvwatch started watching"
			case len(c.Problems) > 0:
				v = strings.Join(c.Problems, "; ")
			}
			if c.Known {
				v += " (as of " + c.AsOf.Format("2006-01-02 15:04") + ")"
			}
			fs = append(fs, fact(MD(c.Vault), MD(v)))
		}
		body = append(body, heading("Compliance"), factSet(fs))
	}
	body = append(body, subtle(MD("Generated by kvwatch for "+r.Generated.UTC().Format(time.RFC3339))))

	return obj{
		"type":    "AdaptiveCard",
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"version": "1.4",
		"msteams": obj{"width": "Full"},
		"body":    body,
	}
}

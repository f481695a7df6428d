package teams

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// The Adaptive Card elements kvwatch uses, as typed structs so the JSON has
// a fixed field order (golden files stay readable) and no property can be
// misspelt. Names and values follow the Adaptive Cards 1.4 schema
// (adaptivecards.io/explorer); Workflows rejects versions above 1.4.

// Schema and version of every card.
const (
	CardSchema  = "http://adaptivecards.io/schemas/adaptive-card.json"
	CardVersion = "1.4"
	ContentType = "application/vnd.microsoft.card.adaptive"
)

// AdaptiveCard is the card posted to Teams.
type AdaptiveCard struct {
	Schema  string    `json:"$schema"`
	Type    string    `json:"type"`
	Version string    `json:"version"`
	MSTeams *MSTeams  `json:"msteams,omitempty"`
	Body    []Element `json:"body"`
	Actions []Action  `json:"actions,omitempty"`
}

// MSTeams holds Teams' own card properties; Width "Full" uses the whole
// width of the channel.
type MSTeams struct {
	Width string `json:"width"`
}

// Element is one of TextBlock, FactSet, Container, ColumnSet.
type Element any

// TextBlock is text; Wrap is always true (without it Teams cuts text on one
// line, on mobile especially).
type TextBlock struct {
	Type      string `json:"type"`
	Text      string `json:"text"`
	Wrap      bool   `json:"wrap"`
	Size      string `json:"size,omitempty"`
	Weight    string `json:"weight,omitempty"`
	Color     string `json:"color,omitempty"`
	IsSubtle  bool   `json:"isSubtle,omitempty"`
	FontType  string `json:"fontType,omitempty"`
	Spacing   string `json:"spacing,omitempty"`
	Separator bool   `json:"separator,omitempty"`
}

// FactSet is a two-column list of facts.
type FactSet struct {
	Type      string `json:"type"`
	Facts     []Fact `json:"facts"`
	Spacing   string `json:"spacing,omitempty"`
	Separator bool   `json:"separator,omitempty"`
}

// Fact is one title/value row; both are Markdown in Teams, so both are
// escaped.
type Fact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// Container groups elements; Style colours its background (default,
// emphasis, good, attention, warning, accent).
type Container struct {
	Type      string    `json:"type"`
	Style     string    `json:"style,omitempty"`
	Bleed     bool      `json:"bleed,omitempty"`
	Items     []Element `json:"items"`
	Spacing   string    `json:"spacing,omitempty"`
	Separator bool      `json:"separator,omitempty"`
}

// ColumnSet lays columns side by side.
type ColumnSet struct {
	Type      string   `json:"type"`
	Columns   []Column `json:"columns"`
	Spacing   string   `json:"spacing,omitempty"`
	Separator bool     `json:"separator,omitempty"`
}

// Column is one column of a ColumnSet.
type Column struct {
	Type string `json:"type"`
	// Width is "auto", "stretch" or a relative weight (a number).
	Width any       `json:"width,omitempty"`
	Items []Element `json:"items"`
}

// Action is a button; kvwatch only opens URLs.
type Action struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
}

func text(s string) *TextBlock { return &TextBlock{Type: "TextBlock", Text: s, Wrap: true} }

func heading(s string) *TextBlock {
	t := text(s)
	t.Weight, t.Spacing = "Bolder", "Medium"
	return t
}

func openURL(title, u string) Action { return Action{Type: "Action.OpenUrl", Title: title, URL: u} }

// view is how much evidence a card carries. Message starts from the full
// view and trims, one step at a time, in a fixed order, until the message
// fits.
type view struct {
	corrIDs  int  // correlation ids shown
	top      int  // values per top list
	others   int  // other findings listed by name
	kql      bool // the query as text
	runbook  bool
	logsLink bool
	valueMax int  // characters kept of one value
	minimal  bool // header, core facts and the portal link only
	trimmed  bool // say that evidence was left out
}

var full = view{corrIDs: 10, top: 5, others: 50, kql: true, runbook: true, logsLink: true, valueMax: hostileMax}

// trimSteps is the order evidence is dropped in: correlation ids, top lists,
// other findings, the query text, the runbook, then the Log Analytics link,
// shorter values, and last a minimal card.
var trimSteps = []func(*view){
	func(v *view) { v.corrIDs = 0 },
	func(v *view) { v.top = 3 },
	func(v *view) { v.top = 0 },
	func(v *view) { v.others = 10 },
	func(v *view) { v.others = 3 },
	func(v *view) { v.others = 0 },
	func(v *view) { v.kql = false },
	func(v *view) { v.runbook = false },
	func(v *view) { v.logsLink = false },
	func(v *view) { v.valueMax = 60 },
	func(v *view) { v.minimal = true },
}

// Longest URLs put on a button: a portal link is an escaped resource id; a
// Log Analytics link carries the compressed query.
const (
	maxPortalURL = 2048
	maxLogsURL   = 8192
)

// Card renders an alert as an Adaptive Card with all its evidence, untrimmed.
// Message is what is sent: the same card, trimmed to fit.
func Card(a *alert.Alert) (*AdaptiveCard, error) {
	if a == nil {
		return nil, errors.New("teams: no alert")
	}
	return build(a, full, actionsFor(a)), nil
}

// Message renders the webhook body for an alert: the message envelope
// Workflows expects around the card, as compact JSON of at most maxBytes
// (DefaultMaxBytes when maxBytes <= 0). Evidence is trimmed in a fixed order
// until it fits; an alert that cannot fit even as a minimal card is an error.
func Message(a *alert.Alert, maxBytes int) ([]byte, error) {
	if a == nil {
		return nil, errors.New("teams: no alert")
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	v, acts := full, actionsFor(a)
	for i := 0; ; i++ {
		b, err := envelope(build(a, v, acts))
		if err != nil {
			return nil, err
		}
		if len(b) <= maxBytes {
			return b, nil
		}
		if i == len(trimSteps) {
			return nil, fmt.Errorf("teams: alert %s does not fit in %d bytes even as a minimal card (%d bytes)", a.ID, maxBytes, len(b))
		}
		trimSteps[i](&v)
		v.trimmed = true
	}
}

type message struct {
	Type        string       `json:"type"`
	Attachments []attachment `json:"attachments"`
}

type attachment struct {
	ContentType string        `json:"contentType"`
	ContentURL  *string       `json:"contentUrl"`
	Content     *AdaptiveCard `json:"content"`
}

func envelope(c *AdaptiveCard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(message{Type: "message", Attachments: []attachment{{ContentType: ContentType, Content: c}}})
	if err != nil {
		return nil, fmt.Errorf("teams: encode card: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// severityStyle is the header's Container style and the colour of the
// severity line in it. The background carries the colour; the text is red
// only where Teams' palette keeps it readable on that background (its
// "warning" text is yellow, unreadable on the warning background).
func severityStyle(s finding.Severity) (style, color string) {
	switch {
	case s >= finding.High:
		return "attention", "Attention"
	case s == finding.Medium:
		return "warning", "Default"
	case s == finding.Low:
		return "accent", "Accent"
	}
	return "emphasis", "Default"
}

func build(a *alert.Alert, v view, acts buttons) *AdaptiveCard {
	var lead *finding.Finding
	if len(a.Findings) > 0 {
		lead = a.Lead()
	} else {
		lead = &finding.Finding{Summary: a.Summary}
	}
	c := &AdaptiveCard{
		Schema: CardSchema, Type: "AdaptiveCard", Version: CardVersion,
		MSTeams: &MSTeams{Width: "Full"},
	}
	c.Body = append(c.Body, header(a, &v))
	if a.Description != "" && !v.minimal {
		d := text(Hostile(a.Description, min(longMax, 2*v.valueMax)))
		d.IsSubtle = true
		c.Body = append(c.Body, d)
	}
	c.Body = append(c.Body, &FactSet{Type: "FactSet", Facts: facts(a, lead, &v), Spacing: "Medium"})

	if !v.minimal {
		if top := topLists(lead, &v); top != nil {
			c.Body = append(c.Body, top)
		}
		if len(a.Findings) > 1 {
			c.Body = append(c.Body, others(a, &v)...)
		}
		if ids := lead.CorrelationIDs; len(ids) > 0 && v.corrIDs > 0 {
			ids = ids[:min(len(ids), v.corrIDs)]
			parts := make([]string, len(ids))
			for i, id := range ids {
				parts[i] = Hostile(id, 64)
			}
			t := text(strings.Join(parts, ", "))
			t.FontType, t.Size, t.Spacing = "Monospace", "Small", "Small"
			c.Body = append(c.Body, heading("Correlation ids"), t)
		}
		if a.Runbook != "" && v.runbook {
			c.Body = append(c.Body, heading("Runbook"), text(Plain(a.Runbook, configMax)))
		}
		if lead.KQL != "" && v.kql {
			c.Body = append(c.Body, kqlBlock(lead.KQL))
		}
	}
	if v.trimmed {
		t := text(escapeMarkdown("Some evidence was left out to fit Teams' message size limit; the Log Analytics query shows every record."))
		t.IsSubtle, t.Size = true, "Small"
		c.Body = append(c.Body, t)
	}
	foot := "kvwatch alert " + Plain(a.ID, 64)
	if !a.Created.IsZero() {
		foot += " · raised " + when(a.Created)
	}
	ft := text(foot)
	ft.IsSubtle, ft.Size, ft.Separator = true, "Small", true
	c.Body = append(c.Body, ft)

	if acts.portal != "" {
		c.Actions = append(c.Actions, openURL("Open vault in Azure portal", acts.portal))
	}
	if acts.logs != "" && v.logsLink && !v.minimal {
		c.Actions = append(c.Actions, openURL("Show records in Log Analytics", acts.logs))
	}
	if acts.runbook != "" && v.runbook && !v.minimal {
		c.Actions = append(c.Actions, openURL("Open runbook", acts.runbook))
	}
	return c
}

// buttons are the card's links, made once per alert (the Log Analytics
// link compresses the query). A link too long for a button is left out.
type buttons struct{ portal, logs, runbook string }

func actionsFor(a *alert.Alert) buttons {
	var b buttons
	if u := a.PortalURL(); len(u) <= maxPortalURL {
		b.portal = u
	}
	if len(a.Findings) > 0 && a.ResourceID != "" && a.Lead().KQL != "" {
		if u := LogsURL(a.TenantID, a.ResourceID, a.Lead().KQL); len(u) <= maxLogsURL {
			b.logs = u
		}
	}
	b.runbook = runbookURL(a.Runbook)
	return b
}

func header(a *alert.Alert, v *view) *Container {
	style, color := severityStyle(a.Severity)
	line := strings.ToUpper(a.Severity.String()) + " severity · Key Vault alert"
	if a.Repeat > 0 {
		line += " · reminder " + strconv.Itoa(a.Repeat)
	}
	if a.IsUpdate() {
		line = "UPDATE " + strconv.Itoa(a.Version-1) + " · " + line
	}
	if a.Test {
		line = "TEST · " + line
	}
	sev := text(Plain(line, 0))
	sev.Weight, sev.Color, sev.Size = "Bolder", color, "Small"
	title := text(Hostile(a.Title, longMax))
	if title.Text == "" {
		title.Text = Plain(a.Rule, longMax)
	}
	title.Weight, title.Size, title.Spacing = "Bolder", "Large", "Small"
	items := []Element{sev, title}
	if a.Summary != "" {
		items = append(items, text(Hostile(a.Summary, min(longMax, 2*v.valueMax))))
	}
	if a.IsUpdate() && len(a.Changes) > 0 {
		// What this update adds to what the incident's earlier messages said.
		ch := text("What changed: " + Hostile(strings.Join(a.Changes, ", "), min(longMax, 2*v.valueMax)))
		ch.Spacing = "Small"
		items = append(items, ch)
	}
	return &Container{Type: "Container", Style: style, Bleed: true, Items: items}
}

func facts(a *alert.Alert, lead *finding.Finding, v *view) []Fact {
	var fs []Fact
	add := func(title, value string) {
		if value != "" {
			fs = append(fs, Fact{Title: title, Value: value})
		}
	}
	sev := strings.ToUpper(a.Severity.String())
	if a.Test {
		sev += " \\(test alert\\)"
	}
	add("Severity", sev)
	add("Rule", v.p(a.Rule))
	add("Vault", v.h(a.Vault))
	if v.minimal {
		return fs
	}
	add("Subscription", v.h(a.SubscriptionID))
	add("Resource group", v.h(a.ResourceGroup))
	for _, f := range groupFacts(a, lead, v) {
		add(f.Title, f.Value)
	}
	if lead.Window > 0 {
		w := duration(lead.Window)
		if !lead.WindowStart.IsZero() {
			w += " \\(" + span(lead.WindowStart, lead.WindowEnd) + "\\)"
		}
		add("Window", w)
	}
	add("Count", count(a, lead))
	if lead.Value != "" {
		add("New value", v.h(lead.Value))
	}
	if !a.FirstEvent.IsZero() {
		add("First event", when(a.FirstEvent))
	}
	if !a.LastEvent.IsZero() {
		add("Last event", when(a.LastEvent))
	}
	if n := len(a.Findings); n > 1 {
		add("Findings", strconv.Itoa(n)+" grouped in this alert")
	}
	if a.Suppressed > 0 {
		add("Suppressed", strconv.Itoa(a.Suppressed)+" held back by the cooldown since the previous alert")
	}
	if a.Repeat > 0 {
		add("Repeat", "reminder "+strconv.Itoa(a.Repeat)+" while the condition persists")
	}
	if a.IsUpdate() {
		add("Incident", v.p(a.Incident)+", update "+strconv.Itoa(a.Version-1))
	}
	if len(a.Related) > 0 {
		var rel []string
		for _, r := range a.Related {
			rel = append(rel, v.p(r.Rule)+" \\("+strings.ToLower(r.Severity.String())+"\\)")
		}
		add("Also fired", strings.Join(rel, ", ")+" on the same evidence")
	}
	if e := lead.Example; e != nil {
		if e.HTTPStatus != 0 || e.ResultDescription != "" {
			r := ""
			if e.HTTPStatus != 0 {
				r = strconv.Itoa(e.HTTPStatus)
			}
			if e.ResultDescription != "" {
				r = strings.TrimSpace(r + " " + v.h(e.ResultDescription))
			}
			add("Result", r)
		}
		add("Client", v.h(e.ClientInfo))
		if e.RequestURI != "" || e.Operation != "" {
			add("Example request", strings.TrimSpace(v.h(e.Operation)+" "+v.h(e.RequestURI)))
		}
		if len(e.Truncated) > 0 {
			add("Truncated", v.h(strings.Join(e.Truncated, ", "))+" (cut to their bound, ending in a hash of the whole value)")
		}
	}
	if len(a.Tags) > 0 {
		add("Tags", v.p(strings.Join(a.Tags, ", ")))
	}
	return fs
}

// groupFacts shows the group's fields (the vault has its own fact): callers
// with the UPN or name the lead's example event gives them, IPs, and any
// other field by name. A group without a caller shows the callers of the
// findings' example events.
func groupFacts(a *alert.Alert, lead *finding.Finding, v *view) []Fact {
	var fs []Fact
	hasCaller := false
	for _, p := range a.Group {
		switch p.Field {
		case "vault":
			if strings.EqualFold(p.Value, a.Vault) {
				continue
			}
			fs = append(fs, Fact{Title: "Vault", Value: v.h(p.Value)})
		case "caller", "object_id", "app_id", "upn":
			hasCaller = true
			fs = append(fs, Fact{Title: "Caller", Value: callerName(lead.Example, p.Value, v)})
		case "ip":
			fs = append(fs, Fact{Title: "Caller IP", Value: v.h(p.Value)})
		case "operation":
			fs = append(fs, Fact{Title: "Operation", Value: v.h(p.Value)})
		default:
			fs = append(fs, Fact{Title: v.p(p.Field), Value: v.h(p.Value)})
		}
	}
	if hasCaller {
		return fs
	}
	const most = 5
	var names []string
	seen := map[string]bool{}
	extra := 0
	for i := range a.Findings {
		e := a.Findings[i].Example
		if e == nil || e.Caller.Key == "" || seen[e.Caller.Key] {
			continue
		}
		seen[e.Caller.Key] = true
		if len(names) == most {
			extra++
			continue
		}
		names = append(names, callerName(e, e.Caller.Key, v))
	}
	if len(names) > 0 {
		s := strings.Join(names, "; ")
		if extra > 0 {
			s += fmt.Sprintf("; and %d more", extra)
		}
		title := "Caller"
		if len(names) > 1 {
			title = "Callers"
		}
		fs = append(fs, Fact{Title: title, Value: s})
	}
	return fs
}

// callerName shows key with the UPN or name of the example event's caller
// when the example is that caller.
func callerName(e *audit.Event, key string, v *view) string {
	if e == nil {
		return v.h(key)
	}
	c := e.Caller
	if !strings.EqualFold(key, c.Key) && !strings.EqualFold(key, c.ObjectID) && !strings.EqualFold(key, c.AppID) {
		return v.h(key)
	}
	who := c.UPN
	if who == "" {
		who = c.Name
	}
	if who == "" || strings.EqualFold(who, key) {
		return v.h(key)
	}
	return v.h(who) + " \\(" + v.h(key) + "\\)"
}

func count(a *alert.Alert, lead *finding.Finding) string {
	s := strconv.FormatInt(a.Count, 10)
	if len(a.Findings) > 1 {
		s += fmt.Sprintf(" across %d findings; lead %d", len(a.Findings), lead.Count)
	}
	if lead.Threshold > 0 {
		s += fmt.Sprintf(" \\(threshold %d\\)", lead.Threshold)
	}
	if b := lead.Baseline; b != nil {
		s += fmt.Sprintf(" \\(baseline %s ± %s over %d windows\\)", num(b.Mean), num(b.StdDev), b.Slots)
	}
	return s
}

func num(f float64) string { return escapeMarkdown(strconv.FormatFloat(f, 'f', 1, 64)) }

func topLists(f *finding.Finding, v *view) *ColumnSet {
	if v.top == 0 {
		return nil
	}
	lists := []struct {
		title  string
		vals   []finding.Count
		weight int
	}{{"Top objects", f.TopObjects, 3}, {"Top IPs", f.TopIPs, 2}, {"Top operations", f.TopOperations, 2}}
	cs := &ColumnSet{Type: "ColumnSet", Spacing: "Medium"}
	for _, l := range lists {
		if len(l.vals) == 0 {
			continue
		}
		col := Column{Type: "Column", Width: l.weight, Items: []Element{heading(l.title)}}
		for _, c := range l.vals[:min(len(l.vals), v.top)] {
			t := text(v.h(c.Value) + " · " + strconv.Itoa(c.Count))
			t.Spacing = "None"
			col.Items = append(col.Items, t)
		}
		cs.Columns = append(cs.Columns, col)
	}
	if len(cs.Columns) == 0 {
		return nil
	}
	return cs
}

// others lists the findings after the lead, one short line each: when,
// how many, and what tells them apart (new value, caller when the group has
// none, first operation, IP and object). The rest of a summary repeats the
// header.
func others(a *alert.Alert, v *view) []Element {
	rest := a.Findings[1:]
	el := []Element{heading(fmt.Sprintf("Other findings in this alert \\(%d\\)", len(rest)))}
	n := min(len(rest), v.others)
	byCaller := true
	for _, p := range a.Group {
		switch p.Field {
		case "caller", "object_id", "app_id", "upn":
			byCaller = false
		}
	}
	short := min(v.valueMax, 80)
	for i := range rest[:n] {
		f := &rest[i]
		parts := []string{spanMinutes(f.FirstEvent, f.LastEvent), "count " + strconv.FormatInt(f.Count, 10)}
		if f.Value != "" {
			parts = append(parts, Hostile(f.Value, short))
		}
		if e := f.Example; byCaller && e != nil && e.Caller.Key != "" {
			who := e.Caller.UPN
			if who == "" {
				who = e.Caller.Key
			}
			parts = append(parts, Hostile(who, short))
		}
		for _, top := range [][]finding.Count{f.TopOperations, f.TopIPs, f.TopObjects} {
			if len(top) > 0 {
				parts = append(parts, Hostile(top[0].Value, short))
			}
		}
		t := text(strings.Join(parts, " · "))
		t.Spacing = "None"
		el = append(el, t)
	}
	if n < len(rest) {
		t := text(fmt.Sprintf("and %d more not listed", len(rest)-n))
		t.IsSubtle, t.Spacing = true, "Small"
		el = append(el, t)
	}
	return el
}

const maxKQLLines = 40

// kqlBlock shows the query line by line in monospace. Its string literals
// hold values from log records, so it is defanged and escaped like them: a
// value holding "://" reads "[:]//" here, while the Log Analytics button
// carries the exact query.
func kqlBlock(q string) *Container {
	box := &Container{Type: "Container", Style: "emphasis", Spacing: "Medium",
		Items: []Element{heading("Log Analytics query \\(AzureDiagnostics\\)")}}
	box.Items[0].(*TextBlock).Spacing = "None"
	lines := strings.Split(q, "\n")
	for i, l := range lines {
		if i == maxKQLLines {
			t := text(fmt.Sprintf("… %d more lines", len(lines)-i))
			t.IsSubtle, t.Size = true, "Small"
			box.Items = append(box.Items, t)
			break
		}
		t := text(escapeMarkdown(defang(clean(l, 500))))
		t.FontType, t.Size, t.Spacing = "Monospace", "Small", "None"
		box.Items = append(box.Items, t)
	}
	return box
}

var firstURL = regexp.MustCompile(`https://[^\s<>"'()\[\]]+`)

// runbookURL is the first https link in a runbook (configuration, trusted),
// for an "Open runbook" button.
func runbookURL(rb string) string {
	m := firstURL.FindString(rb)
	m = strings.TrimRight(m, ".,;:!?")
	if m == "" || len(m) > maxPortalURL {
		return ""
	}
	u, err := url.Parse(m)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return ""
	}
	return u.String()
}

// when formats an instant for people: UTC, to the second.
func when(t time.Time) string { return escapeMarkdown(t.UTC().Format("2006-01-02 15:04:05")) + " UTC" }

// span formats a time range, shortening the end when it is the same day.
func span(from, to time.Time) string {
	if from.IsZero() {
		return when(to)
	}
	from, to = from.UTC(), to.UTC()
	if to.IsZero() || to.Equal(from) {
		return when(from)
	}
	if from.Format(time.DateOnly) == to.Format(time.DateOnly) {
		return escapeMarkdown(from.Format("2006-01-02 15:04:05")+"–"+to.Format("15:04:05")) + " UTC"
	}
	return when(from) + " – " + when(to)
}

// spanMinutes is a short span for lists: to the minute, the end without its
// date when it is the same day.
func spanMinutes(from, to time.Time) string {
	from, to = from.UTC(), to.UTC()
	s := from.Format("2006-01-02 15:04")
	switch {
	case to.IsZero() || to.Sub(from) < time.Minute && to.Minute() == from.Minute():
	case from.Format(time.DateOnly) == to.Format(time.DateOnly):
		s += "–" + to.Format("15:04")
	default:
		s += " – " + to.Format("2006-01-02 15:04")
	}
	return escapeMarkdown(s)
}

func duration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return escapeMarkdown(d.String())
}

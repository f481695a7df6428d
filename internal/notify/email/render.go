package email

import (
	"bytes"
	"embed"
	"errors"
	htmltemplate "html/template"
	"net/url"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var (
	textTmpl = texttemplate.Must(texttemplate.New("alert.txt.tmpl").Funcs(texttemplate.FuncMap{
		"pad": pad, "indent": indent,
	}).ParseFS(templateFS, "templates/alert.txt.tmpl"))
	htmlTmpl = htmltemplate.Must(htmltemplate.New("alert.html.tmpl").ParseFS(templateFS, "templates/alert.html.tmpl"))
)

// Render renders an alert as the email kvwatch sends: the subject (one
// line, control characters removed, not yet RFC 2047 encoded), the plain
// text body and the HTML body. It uses the default subject prefix; for
// docs and previews.
func Render(a *alert.Alert) (subject, text, html string, err error) {
	return render(a, DefaultSubjectPrefix)
}

func render(a *alert.Alert, prefix string) (subject, text, html string, err error) {
	if a == nil || len(a.Findings) == 0 {
		return "", "", "", errors.New("alert without findings")
	}
	v := newView(a, prefix)
	var tb, hb bytes.Buffer
	if err := textTmpl.Execute(&tb, v); err != nil {
		return "", "", "", err
	}
	if err := htmlTmpl.Execute(&hb, v); err != nil {
		return "", "", "", err
	}
	return v.Subject, tb.String(), hb.String(), nil
}

// fact is one labelled value of the facts table.
type fact struct{ Label, Value string }

// top is a table of values and how often they were seen.
type top struct {
	Title string
	Rows  []finding.Count
}

// other is another finding grouped into the same alert.
type other struct{ Summary, When string }

// view is what the templates see: every string already cleaned (control
// characters visible, lengths capped); html/template escapes on output.
type view struct {
	Subject     string
	Title       string
	Severity    string // upper case
	SevColor    htmltemplate.CSS
	Notes       []string // test alert, reminder
	Summary     string
	Description string
	Facts       []fact
	Caller      []fact
	Tops        []top
	Correlation []string
	Others      []other
	MoreOthers  int
	Runbook     string
	RunbookURL  string // Runbook when it is an http(s) URL
	PortalURL   string
	KQL         string
	AlertID     string
	Rule        string
}

var sevColors = map[finding.Severity]htmltemplate.CSS{
	finding.Info:     "#4a5568",
	finding.Low:      "#2b6cb0",
	finding.Medium:   "#b7791f",
	finding.High:     "#c05621",
	finding.Critical: "#c53030",
}

const timeFormat = "2006-01-02 15:04:05 UTC"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeFormat)
}

// subjectOf builds the subject line: "[kvwatch] HIGH Many different secrets
// read — kv-payments-prod".
func subjectOf(a *alert.Alert, prefix string) string {
	var b strings.Builder
	b.WriteString(prefix)
	if a.Test {
		b.WriteString(" TEST")
	}
	if a.IsUpdate() {
		b.WriteString(" UPDATE")
	}
	b.WriteString(" " + strings.ToUpper(a.Severity.String()) + " " + a.Title)
	if a.Vault != "" {
		b.WriteString(" — " + a.Vault)
	}
	if a.Repeat > 0 {
		b.WriteString(" (reminder " + strconv.Itoa(a.Repeat) + ")")
	}
	if a.IsUpdate() && len(a.Changes) > 0 {
		b.WriteString(": " + strings.Join(a.Changes, ", "))
	}
	return notify.Defang(headerText(b.String(), maxSubject))
}

func newView(a *alert.Alert, prefix string) *view {
	lead := a.Lead()
	v := &view{
		Subject:     subjectOf(a, prefix),
		Title:       hostile(clean(a.Title, maxValue)),
		Severity:    strings.ToUpper(a.Severity.String()),
		SevColor:    sevColors[a.Severity],
		Summary:     hostile(clean(a.Summary, maxLong)),
		Description: hostile(cleanBlock(a.Description, maxLong)),
		AlertID:     clean(a.ID, 64),
		Rule:        clean(a.Rule, maxValue),
		PortalURL:   a.PortalURL(),
		KQL:         cleanBlock(lead.KQL, maxKQL),
	}
	if v.SevColor == "" {
		v.SevColor = sevColors[finding.Info]
	}
	if a.Test {
		v.Notes = append(v.Notes, "This is a test alert sent by `kvwatch alerts test`; nothing happened.")
	}
	if a.Repeat > 0 {
		v.Notes = append(v.Notes, "Reminder "+strconv.Itoa(a.Repeat)+": the condition still holds.")
	}
	if a.IsUpdate() {
		v.Notes = append(v.Notes, "Update "+strconv.Itoa(a.Version-1)+" of incident "+clean(a.Incident, 64)+
			": what changed since the last message: "+hostile(clean(strings.Join(a.Changes, ", "), maxLong))+".")
	}
	if len(a.Related) > 0 {
		rel := make([]string, len(a.Related))
		for i, r := range a.Related {
			rel[i] = clean(r.Rule, maxValue) + " (" + r.Severity.String() + ")"
		}
		v.Notes = append(v.Notes, "Also fired on the same evidence, folded into this message: "+strings.Join(rel, ", ")+".")
	}

	add := func(list *[]fact, label, value string) {
		if value != "" {
			*list = append(*list, fact{label, value})
		}
	}
	add(&v.Facts, "Vault", hostile(clean(a.Vault, maxValue)))
	add(&v.Facts, "Subscription", hostile(clean(a.SubscriptionID, maxValue)))
	add(&v.Facts, "Resource group", hostile(clean(a.ResourceGroup, maxValue)))
	add(&v.Facts, "Rule", v.Rule)
	add(&v.Facts, "Severity", a.Severity.String())
	if len(a.Tags) > 0 {
		tags := make([]string, len(a.Tags))
		for i, t := range a.Tags {
			tags[i] = clean(t, 64)
		}
		add(&v.Facts, "Tags", strings.Join(tags, ", "))
	}
	add(&v.Facts, "Group", hostile(clean(finding.GroupString(a.Group), maxValue)))
	events := strconv.FormatInt(a.Count, 10) + " event"
	if a.Count != 1 {
		events += "s"
	}
	if len(a.Findings) > 1 {
		events += " in " + strconv.Itoa(len(a.Findings)) + " findings"
	}
	add(&v.Facts, "Events", events)
	if lead.Threshold > 0 {
		add(&v.Facts, "Threshold", strconv.FormatInt(lead.Threshold, 10))
	}
	if lead.Window > 0 {
		add(&v.Facts, "Window", fmtDur(lead.Window))
	}
	if b := lead.Baseline; b != nil {
		add(&v.Facts, "Baseline", "mean "+strconv.FormatFloat(b.Mean, 'f', 1, 64)+
			", std dev "+strconv.FormatFloat(b.StdDev, 'f', 1, 64)+" over "+strconv.Itoa(b.Slots)+" windows")
	}
	add(&v.Facts, "New value", hostile(clean(lead.Value, maxValue)))
	add(&v.Facts, "First event", fmtTime(a.FirstEvent))
	add(&v.Facts, "Last event", fmtTime(a.LastEvent))
	if a.Suppressed > 0 {
		add(&v.Facts, "Held back", strconv.Itoa(a.Suppressed)+" more finding(s) of this kind since the last alert (cooldown)")
	}

	if e := lead.Example; e != nil {
		c := &e.Caller
		add(&v.Caller, "Caller", hostile(clean(c.Display(), maxValue)))
		if c.UPN != "" && c.Name != "" && c.Name != c.UPN {
			add(&v.Caller, "Name", hostile(clean(c.Name, maxValue)))
		}
		add(&v.Caller, "Object id", hostile(clean(c.ObjectID, maxValue)))
		add(&v.Caller, "App id", hostile(clean(c.AppID, maxValue)))
		add(&v.Caller, "Caller IP", hostile(clean(e.CallerIP, maxValue)))
		add(&v.Caller, "Client", hostile(clean(e.ClientInfo, maxValue)))
		add(&v.Caller, "Operation", hostile(clean(e.Operation, maxValue)))
		if e.ObjectName != "" {
			add(&v.Caller, "Object", hostile(clean(strings.TrimSpace(e.ObjectType+" "+e.ObjectName), maxValue)))
		}
		result := string(e.Outcome)
		if e.HTTPStatus != 0 {
			result += " (HTTP " + strconv.Itoa(e.HTTPStatus) + ")"
		}
		add(&v.Caller, "Result", clean(result, maxValue))
		add(&v.Caller, "Result detail", hostile(clean(e.ResultDescription, maxValue)))
		add(&v.Caller, "Time", fmtTime(e.Time))
		if len(e.Truncated) > 0 {
			add(&v.Caller, "Truncated", clean(strings.Join(e.Truncated, ", "), maxValue)+" (cut to their bound, ending in a hash of the whole value)")
		}
	}

	for _, t := range []top{{"Top objects", lead.TopObjects}, {"Top caller IPs", lead.TopIPs}, {"Top operations", lead.TopOperations}} {
		if len(t.Rows) == 0 {
			continue
		}
		rows := make([]finding.Count, 0, min(len(t.Rows), 10))
		for _, r := range t.Rows[:min(len(t.Rows), 10)] {
			rows = append(rows, finding.Count{Value: hostile(clean(r.Value, maxValue)), Count: r.Count})
		}
		v.Tops = append(v.Tops, top{t.Title, rows})
	}
	for _, id := range lead.CorrelationIDs[:min(len(lead.CorrelationIDs), 10)] {
		v.Correlation = append(v.Correlation, hostile(clean(id, 128)))
	}
	for i := 1; i < len(a.Findings) && i <= 10; i++ {
		f := &a.Findings[i]
		when := fmtTime(f.FirstEvent)
		if !f.LastEvent.IsZero() && !f.LastEvent.Equal(f.FirstEvent) {
			when += " – " + fmtTime(f.LastEvent)
		}
		v.Others = append(v.Others, other{hostile(clean(f.Summary, maxValue)), when})
	}
	v.MoreOthers = max(len(a.Findings)-11, 0)

	v.Runbook = cleanBlock(a.Runbook, maxLong)
	if u, err := url.Parse(strings.TrimSpace(a.Runbook)); err == nil && (u.Scheme == "https" || u.Scheme == "http") &&
		u.Host != "" && !strings.ContainsAny(a.Runbook, " \t\r\n") {
		v.RunbookURL = u.String()
	}
	return v
}

// fmtDur is a duration without trailing zero units: 15m, 1h, 1h30m.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// pad pads a label so values line up in the text body.
func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}

// indent prefixes every line of s.
func indent(prefix, s string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

package digest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/printer"
)

// HTML renders the digest as an HTML email body. The chart is referenced
// as "cid:"+ChartCID: send ChartPNG(r) as an inline part with that
// Content-ID. Every value is escaped by html/template, and values from log
// records are first cleaned (control and format characters, such as bidi
// overrides, shown as escapes).
func HTML(r *Report) (string, error) {
	return renderHTML(r, template.URL("cid:"+ChartCID))
}

// HTMLPreview renders the digest as HTML with the chart embedded as a
// data: URL, for a browser.
func HTMLPreview(r *Report) (string, error) {
	png, err := ChartPNG(r)
	if err != nil {
		return "", err
	}
	return renderHTML(r, template.URL("data:image/png;base64,"+base64.StdEncoding.EncodeToString(png)))
}

type htmlView struct {
	*Report
	Title    string
	Label    string
	Span     string
	ChartSrc template.URL
	ChartW   int
	ChartH   int
	Legend   []LegendEntry
	Details  []*Summary
	// RoutineShown are the routine groups listed (at most MaxListed).
	RoutineShown []*RoutineGroup
}

func renderHTML(r *Report, src template.URL) (string, error) {
	v := htmlView{Report: r, Title: Title(r), Label: PeriodLabel(r), Span: Span(r), ChartSrc: src,
		ChartW: ChartWidth, ChartH: ChartHeight, Legend: Legend(r)}
	for i := range r.Vaults {
		s := &r.Vaults[i]
		if len(s.DeniedCallers)+len(s.DeniedIPs)+len(s.Secrets) > 0 {
			v.Details = append(v.Details, s)
		}
	}
	for i := range r.Routine[:min(len(r.Routine), MaxListed)] {
		v.RoutineShown = append(v.RoutineShown, &r.Routine[i])
	}
	var b bytes.Buffer
	if err := htmlTemplate.Execute(&b, v); err != nil {
		return "", fmt.Errorf("digest: html: %w", err)
	}
	return b.String(), nil
}

var sevColors = map[finding.Severity]string{
	finding.Critical: "#8b0000", finding.High: "#c0392b", finding.Medium: "#d35400", finding.Low: "#2c6e9b", finding.Info: "#666666",
}

var htmlFuncs = template.FuncMap{
	"v":       printer.Clean,
	"num":     Num,
	"pct":     Pct,
	"ms":      Ms,
	"callers": Callers,
	"succ":    SuccessText,
	"avg":     AvgText,
	"p95":     P95Text,
	"who":     func(key, name string) string { return printer.Clean(who(key, name)) },
	"join":    func(s []string) string { return printer.Clean(strings.Join(s, ", ")) },
	"tm":      func(t time.Time) string { return t.Format("2006-01-02 15:04") },
	"tmIn":    func(t time.Time, ref time.Time) string { return t.In(ref.Location()).Format("2006-01-02 15:04") },
	"sev":     func(s finding.Severity) string { return strings.ToUpper(s.String()) },
	"sevColor": func(s finding.Severity) template.CSS {
		if c, ok := sevColors[s]; ok {
			return template.CSS("color:" + c)
		}
		return ""
	},
	"swatch":      func(c string) template.CSS { return template.CSS("background:" + c) },
	"findings":    FindingsLine,
	"delivery":    func(f Finding) string { return printer.Clean(DeliveryLine(&f)) },
	"delta":       Delta,
	"f64":         func(n int64) float64 { return float64(n) },
	"i64":         func(n int) int64 { return int64(n) },
	"pts":         pointsDelta,
	"month":       func(t time.Time) string { return t.Format("January 2006") },
	"problems":    func(p []string) string { return strings.Join(p, "; ") },
	"more":        func(total int64, shown int) int64 { return total - int64(shown) },
	"moreInt":     func(total int, shown int) int { return total - shown },
	"readers":     readers,
	"utc":         func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"vaultOr":     func(s string) string { return printer.Clean(cmpOr(s, "-")) },
	"hasFam":      func(s *Summary) bool { return len(s.Families) > 0 },
	"famCounts":   famCounts,
	"plural":      plural,
	"routineRule": func(g *RoutineGroup) string { return RoutineRule(g) },
	"routineWho":  func(g *RoutineGroup) string { return RoutineWho(g) },
	"routineSpan": func(r *Report, g *RoutineGroup) string { return RoutineSpan(r, g) },
}

func cmpOr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func famCounts(s *Summary) string {
	var parts []string
	for _, f := range s.Families {
		parts = append(parts, string(f.Family)+" "+Num(f.Requests))
	}
	return strings.Join(parts, ", ")
}

var htmlTemplate = template.Must(template.New("digest").Funcs(htmlFuncs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
</head>
<body style="margin:0;padding:0;background:#f4f5f7;font-family:Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#222">
<div style="max-width:860px;margin:0 auto;padding:20px;background:#ffffff">
<h1 style="font-size:20px;margin:0 0 4px 0">kvwatch {{.Period}} digest</h1>
<div style="font-size:16px;margin:0 0 2px 0">{{.Label}}</div>
<div style="color:#666;margin:0 0 12px 0">{{.Span}}</div>
{{range .Notes}}<p style="color:#666;font-size:12px;margin:4px 0">Note: {{.}}</p>{{end}}

<h2 style="font-size:16px;margin:18px 0 6px 0">All vaults ({{len .Vaults}})</h2>
{{with .Overall}}
<table style="border-collapse:collapse" cellpadding="4">
<tr><td style="color:#666">Requests</td><td><b>{{num .Requests}}</b>, success {{succ .}}, average latency {{avg .}}, p95 {{p95 .}}</td></tr>
<tr><td style="color:#666">Denied</td><td><b>{{num .Denied}}</b> <span style="color:#666">(anonymous SDK challenges, not counted as denied: {{num .Challenges}})</span></td></tr>
<tr><td style="color:#666">Callers</td><td>{{callers .}} distinct identities, {{.NewIdentitiesCount}} first seen on a vault</td></tr>
<tr><td style="color:#666">Secret reads</td><td>{{num .SecretReads}}</td></tr>
<tr><td style="color:#666">Changes</td><td>{{num .ChangesCount}}</td></tr>
<tr><td style="color:#666">Findings</td><td>{{findings .}}</td></tr>
{{if $.RoutineCount}}<tr><td style="color:#666">Routine</td><td>{{plural $.RoutineCount "finding"}} learned as routine, not alerted</td></tr>{{end}}
{{if hasFam .}}<tr><td style="color:#666">By family</td><td>{{famCounts .}}</td></tr>{{end}}
</table>
{{end}}

<p style="margin:14px 0"><img src="{{.ChartSrc}}" width="{{.ChartW}}" height="{{.ChartH}}" alt="Requests per {{.Chart.Unit}} and vault" style="max-width:100%;height:auto;border:1px solid #eee"></p>

{{if .Vaults}}
<h2 style="font-size:16px;margin:18px 0 6px 0">Per vault</h2>
<table style="border-collapse:collapse;width:100%" cellpadding="4">
<tr style="background:#eef0f3;text-align:left"><th>Vault</th><th style="text-align:right">Requests</th><th style="text-align:right">Success</th><th style="text-align:right">Avg</th><th style="text-align:right">p95</th><th style="text-align:right">Denied</th><th style="text-align:right">Callers</th><th style="text-align:right">New</th><th style="text-align:right">Changes</th><th style="text-align:right">Findings</th></tr>
{{range $i, $s := .Vaults}}<tr style="border-bottom:1px solid #eee"><td>{{v $s.Vault}}</td><td style="text-align:right">{{num $s.Requests}}</td><td style="text-align:right">{{succ $s}}</td><td style="text-align:right">{{avg $s}}</td><td style="text-align:right">{{p95 $s}}</td><td style="text-align:right">{{num $s.Denied}}</td><td style="text-align:right">{{callers $s}}</td><td style="text-align:right">{{$s.NewIdentitiesCount}}</td><td style="text-align:right">{{$s.ChangesCount}}</td><td style="text-align:right">{{$s.FindingsCount}}</td></tr>
{{end}}</table>
{{end}}

{{with .Overall}}
{{if or .DeniedCallers .DeniedIPs}}
<h2 style="font-size:16px;margin:18px 0 6px 0">Denied requests: top callers and addresses</h2>
<table style="border-collapse:collapse" cellpadding="4">
{{range .DeniedCallers}}<tr><td style="color:#666">caller</td><td>{{who .Key .Name}}</td><td style="text-align:right">{{num .Count}}</td><td style="color:#666">on {{join .Vaults}}</td></tr>
{{end}}{{range .DeniedIPs}}<tr><td style="color:#666">IP</td><td>{{v .Key}}</td><td style="text-align:right">{{num .Count}}</td><td style="color:#666">on {{join .Vaults}}</td></tr>
{{end}}</table>
{{end}}

{{if .Secrets}}
<h2 style="font-size:16px;margin:18px 0 6px 0">Secrets read most <span style="font-weight:normal;color:#666">({{num .SecretReads}} successful reads in all)</span></h2>
<table style="border-collapse:collapse" cellpadding="4">
{{range .Secrets}}<tr style="border-bottom:1px solid #eee"><td>{{v .Vault}}/{{v .Name}}</td><td style="text-align:right">{{num .Reads}}</td><td style="color:#444">by {{readers .Readers}}</td></tr>
{{end}}</table>
{{end}}

{{if .NewIdentitiesCount}}
<h2 style="font-size:16px;margin:18px 0 6px 0">New identities ({{.NewIdentitiesCount}})</h2>
{{range $.Vaults}}{{if not .WatchedSince.IsZero}}<p style="color:#666;margin:2px 0">{{v .Vault}}: first records seen {{tm .WatchedSince}}, so every identity on it is new.</p>{{end}}{{end}}
<table style="border-collapse:collapse" cellpadding="3">
{{range .NewIdentities}}<tr><td style="color:#666">{{tm .First}}</td><td>{{v .Vault}}</td><td>{{who .Key .Name}}</td></tr>
{{end}}</table>
{{if gt .NewIdentitiesCount (len .NewIdentities)}}<p style="color:#666">… and {{moreInt .NewIdentitiesCount (len .NewIdentities)}} more</p>{{end}}
{{end}}

{{if .ChangesCount}}
<h2 style="font-size:16px;margin:18px 0 6px 0">Permission and configuration changes ({{num .ChangesCount}})</h2>
<table style="border-collapse:collapse;width:100%" cellpadding="4">
{{range .Changes}}<tr style="border-bottom:1px solid #eee;vertical-align:top"><td style="color:#666;white-space:nowrap">{{tm .Time}}</td><td style="white-space:nowrap">{{v .Vault}}</td><td><b>{{v .Operation}}</b> ({{.What}}) by {{who .Caller .CallerName}}{{if .IP}} from {{v .IP}}{{end}}: {{.Outcome}}{{range .Details}}<br><span style="color:#444">{{v .}}</span>{{end}}</td></tr>
{{end}}</table>
{{if gt .ChangesCount (i64 (len .Changes))}}<p style="color:#666">… and {{more .ChangesCount (len .Changes)}} more</p>{{end}}
{{end}}
{{end}}

{{if or .Findings .FindingsTruncated}}
<h2 style="font-size:16px;margin:18px 0 6px 0">Findings ({{len .Findings}})</h2>
<table style="border-collapse:collapse;width:100%" cellpadding="4">
{{range .Findings}}<tr style="border-bottom:1px solid #eee;vertical-align:top"><td style="color:#666;white-space:nowrap">{{tmIn .FirstEvent $.Start}}</td><td style="{{sevColor .Severity}};font-weight:bold">{{sev .Severity}}</td><td>{{.Rule}}<br><span style="color:#666">{{vaultOr .Vault}}</span></td><td>{{v .Summary}}<br><span style="color:#666;font-size:12px">alert {{.AlertID}}: {{delivery .}}</span></td></tr>
{{end}}</table>
{{if .FindingsTruncated}}<p style="color:#666">The outbox held more alerts than were examined: the list may be incomplete.</p>{{end}}
{{end}}

{{if .RoutineCount}}
<h2 style="font-size:16px;margin:18px 0 6px 0">Learned as routine, not alerted ({{if .RoutineTruncated}}at least {{end}}{{plural .RoutineCount "finding"}})</h2>
<p style="color:#666;margin:2px 0">Application identities whose findings recur by design (the rule's routine): recorded, not alerted. Check that each is meant to do this.</p>
<table style="border-collapse:collapse;width:100%" cellpadding="4">
{{range .RoutineShown}}<tr style="border-bottom:1px solid #eee;vertical-align:top"><td>{{v (routineRule .)}}</td><td style="text-align:right;white-space:nowrap">×{{.Findings}}</td><td>{{v (routineWho .)}}</td><td style="color:#666;white-space:nowrap">{{routineSpan $.Report .}}</td></tr>
{{end}}</table>
{{if gt (len .Routine) (len .RoutineShown)}}<p style="color:#666">… and {{moreInt (len .Routine) (len .RoutineShown)}} more groups</p>{{end}}
{{end}}

{{range .Details}}
<h2 style="font-size:16px;margin:18px 0 6px 0">{{v .Vault}}</h2>
<p style="margin:2px 0;color:#444">{{num .Requests}} requests, success {{succ .}}, average latency {{avg .}}, p95 {{p95 .}}, {{callers .}} distinct callers{{if hasFam .}}; by family: {{famCounts .}}{{end}}</p>
<table style="border-collapse:collapse" cellpadding="3">
{{range .DeniedCallers}}<tr><td style="color:#666">denied caller</td><td>{{who .Key .Name}}</td><td style="text-align:right">{{num .Count}}</td></tr>
{{end}}{{range .DeniedIPs}}<tr><td style="color:#666">denied IP</td><td>{{v .Key}}</td><td style="text-align:right">{{num .Count}}</td></tr>
{{end}}{{range .Secrets}}<tr><td style="color:#666">secret read</td><td>{{v .Name}} <span style="color:#666">by {{readers .Readers}}</span></td><td style="text-align:right">{{num .Reads}}</td></tr>
{{end}}</table>
{{end}}

{{with .Trend}}
<h2 style="font-size:16px;margin:18px 0 6px 0">Trend against {{month .PrevStart}}</h2>
<table style="border-collapse:collapse" cellpadding="4">
<tr style="background:#eef0f3;text-align:left"><th></th><th style="text-align:right">This month</th><th style="text-align:right">Previous</th><th style="text-align:right">Change</th></tr>
<tr><td>Requests</td><td style="text-align:right">{{num $.Overall.Requests}}</td><td style="text-align:right">{{num .Previous.Requests}}</td><td style="text-align:right">{{delta (f64 $.Overall.Requests) (f64 .Previous.Requests)}}</td></tr>
<tr><td>Success ratio</td><td style="text-align:right">{{succ $.Overall}}</td><td style="text-align:right">{{succ .Previous}}</td><td style="text-align:right">{{pts $.Overall .Previous}}</td></tr>
<tr><td>Average latency</td><td style="text-align:right">{{avg $.Overall}}</td><td style="text-align:right">{{avg .Previous}}</td><td style="text-align:right">{{delta $.Overall.AvgLatencyMs .Previous.AvgLatencyMs}}</td></tr>
<tr><td>p95 latency</td><td style="text-align:right">{{p95 $.Overall}}</td><td style="text-align:right">{{p95 .Previous}}</td><td style="text-align:right">{{delta $.Overall.P95LatencyMs .Previous.P95LatencyMs}}</td></tr>
<tr><td>Denied</td><td style="text-align:right">{{num $.Overall.Denied}}</td><td style="text-align:right">{{num .Previous.Denied}}</td><td style="text-align:right">{{delta (f64 $.Overall.Denied) (f64 .Previous.Denied)}}</td></tr>
<tr><td>New identities</td><td style="text-align:right">{{$.Overall.NewIdentitiesCount}}</td><td style="text-align:right">{{.Previous.NewIdentitiesCount}}</td><td style="text-align:right">{{delta (f64 (i64 $.Overall.NewIdentitiesCount)) (f64 (i64 .Previous.NewIdentitiesCount))}}</td></tr>
<tr><td>Changes</td><td style="text-align:right">{{num $.Overall.ChangesCount}}</td><td style="text-align:right">{{num .Previous.ChangesCount}}</td><td style="text-align:right">{{delta (f64 $.Overall.ChangesCount) (f64 .Previous.ChangesCount)}}</td></tr>
<tr><td>Findings</td><td style="text-align:right">{{$.Overall.FindingsCount}}</td><td style="text-align:right">{{.Previous.FindingsCount}}</td><td style="text-align:right">{{delta (f64 (i64 $.Overall.FindingsCount)) (f64 (i64 .Previous.FindingsCount))}}</td></tr>
{{range .Vaults}}<tr><td>{{v .Vault}} requests</td><td style="text-align:right">{{num .Requests}}</td><td style="text-align:right">{{num .PrevRequests}}</td><td style="text-align:right">{{delta (f64 .Requests) (f64 .PrevRequests)}}</td></tr>
{{end}}</table>
{{end}}

{{if .Compliance}}
<h2 style="font-size:16px;margin:18px 0 6px 0">Compliance</h2>
<p style="color:#666;margin:2px 0">Each vault's configuration as last recorded (VaultPut/VaultPatch) before the end of the month.</p>
<table style="border-collapse:collapse;width:100%" cellpadding="4">
{{range .Compliance}}<tr style="border-bottom:1px solid #eee;vertical-align:top"><td>{{v .Vault}}</td><td>{{if not .Known}}<span style="color:#666">unknown: no configuration recorded since kvwatch started watching</span>{{else if .Problems}}<span style="color:#c0392b">{{problems .Problems}}</span>{{else}}<span style="color:#2e7d32">ok</span>{{end}}</td><td style="color:#666">{{if .Known}}as of {{tm .AsOf}} by {{v .By}}{{end}}</td></tr>
{{end}}</table>
{{end}}

<p style="color:#999;font-size:12px;margin:20px 0 0 0">Generated by kvwatch for {{utc .Generated}}.</p>
</div>
</body>
</html>
`))

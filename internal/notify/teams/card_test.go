package teams

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// demoFinding is the demo day's mass secret retrieval, as `kvwatch replay
// -output json` printed it.
func demoFinding(t testing.TB) finding.Finding {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "mass-secret-retrieval.finding.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f finding.Finding
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func demoAlert(t testing.TB) *alert.Alert {
	f := demoFinding(t)
	return alert.New([]finding.Finding{f}, f.Raised)
}

func TestMessageGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alert func(testing.TB) *alert.Alert
	}{
		{"mass-secret-retrieval", demoAlert},
		{"mass-secret-retrieval-reminder", func(t testing.TB) *alert.Alert {
			f := demoFinding(t)
			g := f
			g.ID, g.Count = "b2", 31
			g.FirstEvent, g.LastEvent = f.FirstEvent.Add(time.Hour), f.LastEvent.Add(time.Hour)
			g.Summary = strings.Replace(f.Summary, "40 distinct", "31 distinct", 1)
			a := alert.New([]finding.Finding{f, g}, f.Raised)
			a.Suppressed, a.Repeat = 4, 2
			return a
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := Message(tc.alert(t), DefaultMaxBytes)
			if err != nil {
				t.Fatal(err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, msg); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if !bytes.Equal(compact.Bytes(), msg) {
				t.Error("message is not compact JSON")
			}
			var got bytes.Buffer
			json.Indent(&got, msg, "", "  ")
			got.WriteByte('\n')
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("message differs from %s (go test -update rewrites it):\n%s", path, firstDiff(got.String(), string(want)))
			}
			checkCard(t, msg)
		})
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, a, b)
		}
	}
	return ""
}

// parsed is a message as Teams reads it.
type parsed struct {
	Type        string `json:"type"`
	Attachments []struct {
		ContentType string          `json:"contentType"`
		ContentURL  *string         `json:"contentUrl"`
		Content     json.RawMessage `json:"content"`
	} `json:"attachments"`
}

// texts returns every string a person reads on the card, by kind: TextBlock
// text, Fact title and value, action titles.
func texts(t testing.TB, card json.RawMessage) (blocks, facts, actions []string, urls []string) {
	t.Helper()
	var v any
	if err := json.Unmarshal(card, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			switch n["type"] {
			case "TextBlock":
				if n["wrap"] != true {
					t.Errorf("TextBlock without wrap: true: %v", n["text"])
				}
				blocks = append(blocks, n["text"].(string))
			case "Action.OpenUrl":
				actions = append(actions, n["title"].(string))
				urls = append(urls, n["url"].(string))
			}
			if fs, ok := n["facts"].([]any); ok {
				for _, f := range fs {
					m := f.(map[string]any)
					facts = append(facts, m["title"].(string), m["value"].(string))
				}
			}
			for _, c := range n {
				walk(c)
			}
		case []any:
			for _, c := range n {
				walk(c)
			}
		}
	}
	walk(v)
	return blocks, facts, actions, urls
}

// checkCard asserts what holds for every message: the envelope, the card's
// version, and text that is fully escaped, defanged and visible.
func checkCard(t testing.TB, msg []byte) {
	t.Helper()
	if !json.Valid(msg) {
		t.Fatal("message is not valid JSON")
	}
	var m parsed
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "message" || len(m.Attachments) != 1 || m.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" ||
		m.Attachments[0].ContentURL != nil || !bytes.Contains(msg, []byte(`"contentUrl":null`)) {
		t.Fatalf("bad envelope: %.300s", msg)
	}
	var head struct {
		Schema  string `json:"$schema"`
		Type    string `json:"type"`
		Version string `json:"version"`
		MSTeams struct {
			Width string `json:"width"`
		} `json:"msteams"`
	}
	json.Unmarshal(m.Attachments[0].Content, &head)
	if head.Schema != CardSchema || head.Type != "AdaptiveCard" || head.Version != "1.4" || head.MSTeams.Width != "Full" {
		t.Errorf("card head %+v", head)
	}
	blocks, facts, _, urls := texts(t, m.Attachments[0].Content)
	for _, s := range append(blocks, facts...) {
		checkEscaped(t, s)
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, "https://") {
			t.Errorf("action URL %.100q is not https", u)
		}
	}
}

var liveScheme = regexp.MustCompile(`(?i)[a-z][a-z0-9+.\-]*://`)

// checkEscaped asserts that s is Markdown with every special character
// backslash-escaped, and that what it shows has no control or invisible
// formatting character and no live "scheme://".
func checkEscaped(t testing.TB, s string) {
	t.Helper()
	shown := []rune{}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if r == '\\' {
			if i+1 == len(rs) || !strings.ContainsRune(mdSpecial, rs[i+1]) {
				t.Errorf("dangling or needless backslash at %d in %.120q", i, s)
				return
			}
			i++
			shown = append(shown, rs[i])
			continue
		}
		if strings.ContainsRune(mdSpecial, r) {
			t.Errorf("unescaped %q at %d in %.200q", r, i, s)
			return
		}
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			t.Errorf("control or format character %U in %.120q", r, s)
			return
		}
		shown = append(shown, r)
	}
	// Every "://" shown follows a defanged hxxp or hxxps.
	for _, m := range liveScheme.FindAllString(string(shown), -1) {
		if sc := strings.ToLower(m[:len(m)-3]); sc != "hxxp" && sc != "hxxps" {
			t.Errorf("live URL scheme %q in %.200q", m, s)
		}
	}
}

func TestCardContent(t *testing.T) {
	a := demoAlert(t)
	msg, err := Message(a, DefaultMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	var m parsed
	json.Unmarshal(msg, &m)
	card := m.Attachments[0].Content
	blocks, facts, actions, urls := texts(t, card)
	all := strings.Join(append(blocks, facts...), "\n")
	for _, want := range []string{
		"HIGH severity", "Many different secrets read", `dave\.okafor@contoso\.com \(55e6f708`,
		`kv\-payments\-prod`, `rg\-prod\-apps`, `40 \(threshold 10\)`, "First event", "Last event",
		"Top objects", `secret/adyen\-api\-key · 1`, "Top IPs", `198\.51\.100\.24 · 40`, "SecretGet · 40",
		"Correlation ids", `d353bd21\-0cce`, "Runbook", "Disable the identity", `\| where Resource =\~ "kv\-payments\-prod"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("card lacks %q", want)
		}
	}
	if !bytes.Contains(card, []byte(`"style":"attention"`)) {
		t.Error("a high alert's header is not attention-styled")
	}
	if !bytes.Contains(card, []byte(`"fontType":"Monospace"`)) {
		t.Error("the query is not monospace")
	}
	if got := strings.Join(actions, "|"); got != "Open vault in Azure portal|Show records in Log Analytics" {
		t.Fatalf("actions %q", got)
	}
	if urls[0] != a.PortalURL() {
		t.Errorf("portal URL %q, want %q", urls[0], a.PortalURL())
	}
	if q := queryOf(t, urls[1]); q != a.Lead().KQL {
		t.Errorf("Log Analytics link carries\n%s\nwant\n%s", q, a.Lead().KQL)
	}
}

// queryOf decodes a Log Analytics link's query.
func queryOf(t testing.TB, link string) string {
	t.Helper()
	const marker = "/source/LogsBlade.AnalyticsShareLinkToQuery/q/"
	i := strings.Index(link, marker)
	if i < 0 {
		t.Fatalf("no query in %s", link)
	}
	q := link[i+len(marker):]
	if strings.ContainsAny(q, "/+=") {
		t.Errorf("query part %q is not URL-encoded", q)
	}
	once, err := url.QueryUnescape(q)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(once, "%") && strings.ContainsAny(once, "/+=") {
		t.Errorf("query part was encoded once only")
	}
	twice, err := url.QueryUnescape(once)
	if err != nil {
		t.Fatal(err)
	}
	z, err := base64.StdEncoding.DecodeString(twice)
	if err != nil {
		t.Fatalf("not standard base64 after two decodings: %v", err)
	}
	r, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLogsURL(t *testing.T) {
	const rid = "/SUBSCRIPTIONS/3F8A1C52-7D4E-4B9A-8C21-6E5F0A9D2B17/RESOURCEGROUPS/RG-PROD-APPS/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PAYMENTS-PROD"
	// A query whose compressed form holds "+", "/" and "=" in base64.
	q := "AzureDiagnostics\n| where Resource =~ \"kv\"\n| take 10 // ÿ?>>>~~~"
	u := LogsURL("4c2b9e71-3f0d-4e8a-b6c5-9d1a7e2f8c34", rid, q)
	const prefix = "https://portal.azure.com/#@4c2b9e71-3f0d-4e8a-b6c5-9d1a7e2f8c34/blade/Microsoft_Azure_Monitoring_Logs/LogsBlade/resourceId/%2FSUBSCRIPTIONS%2F3F8A1C52-7D4E-4B9A-8C21-6E5F0A9D2B17%2FRESOURCEGROUPS%2FRG-PROD-APPS%2FPROVIDERS%2FMICROSOFT.KEYVAULT%2FVAULTS%2FKV-PAYMENTS-PROD/source/LogsBlade.AnalyticsShareLinkToQuery/q/H4sI"
	if !strings.HasPrefix(u, prefix) {
		t.Errorf("link\n%s\nwant prefix\n%s", u, prefix)
	}
	if got := queryOf(t, u); got != q {
		t.Errorf("query %q, want %q", got, q)
	}
	if u := LogsURL("", "/subscriptions/x y", "x"); !strings.HasPrefix(u, "https://portal.azure.com/#blade/") || !strings.Contains(u, "%2Fsubscriptions%2Fx%20y/") {
		t.Errorf("no tenant: %s", u)
	}
}

// TestInjection puts each attack in every field a log record fills, and
// checks that the card shows it as text only.
func TestInjection(t *testing.T) {
	corpus := []struct{ name, value string }{
		{"markdown link", "[click me](https://evil.example/login)"},
		{"reference link", "[x][1]\n\n[1]: https://evil.example"},
		{"image", "![x](http://evil.example/p.png)"},
		{"autolink", "<https://evil.example/a>"},
		{"mention", "<at>Adele Vance</at> please approve"},
		{"html script", "<script>alert(1)</script><img src=x onerror=alert(1)>"},
		{"bold", "**URGENT** __now__"},
		{"italic", "_rotate_ *keys*"},
		{"heading", "# Incident closed"},
		{"list", "- item\n- item\r\n1. first\n+ plus"},
		{"quote", "> all clear"},
		{"code", "`rm -rf /` ```\ncode\n```"},
		{"table", "| a | b |\n|---|---|"},
		{"strike", "~~ignore~~"},
		{"template", "${secret} {{DATE(2017-02-14T06:08:39Z, SHORT)}}"},
		{"entity", "&#x202E;&lt;at&gt;x&lt;/at&gt; &amp;"},
		{"control characters", "a\x00b\x07c\x08d\x7fe\u0085f\u009bg"},
		{"ansi", "\x1b[31mred\x1b[0m \x1b]8;;https://evil.example\x07link\x1b]8;;\x07"},
		{"zero width", "ad\u200bmin\u200c\u200d\u2060\ufeff"},
		{"rtl override", "invoice\u202Egpj.exe \u2066x\u2069"},
		{"line separators", "one\u2028two\u2029three\r\nfour"},
		{"bare urls", "see http://evil.example/x and HTTPS://EVIL.EXAMPLE and ftp://files javascript://%0aalert(1)"},
		{"indented code", "        indented"},
		{"hard break", "a  \nb\\\nc"},
		{"invalid utf8", "bad\xff\xfe utf8"},
		{"huge", strings.Repeat("A*_[](){}<>", 100<<10/11)},
	}
	for _, tc := range corpus {
		t.Run(tc.name, func(t *testing.T) {
			a := hostileAlert(demoFinding(t), tc.value, 3)
			msg, err := Message(a, DefaultMaxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(msg) > DefaultMaxBytes {
				t.Errorf("%d bytes", len(msg))
			}
			checkCard(t, msg)
			var m parsed
			json.Unmarshal(msg, &m)
			blocks, facts, _, _ := texts(t, m.Attachments[0].Content)
			for _, s := range append(blocks, facts...) {
				// Nothing a renderer could take as markup survives.
				for _, bad := range []string{"[click me](", "![x](", "<https:", "<at>", "<script", "<img", "**URGENT**", "__now__",
					"_rotate_", "# Incident", "- item", "1. first", "+ plus", "> all", "`rm", "```", "| a |", "~~ignore", "${", "{{DATE",
					"&#x202E;", "&lt;", "\n", "\r", "\x1b", "http://", "https://", "HTTPS://", "ftp://", "javascript://",
					"\u202E", "\u2066", "\u200b", "\ufeff", "\u2028", "    indented"} {
					if containsUnescaped(s, bad) {
						t.Errorf("%q survives in %.200q", bad, s)
					}
				}
				if n := len([]rune(s)); n > 3000 {
					t.Errorf("text of %d characters", n)
				}
			}
		})
	}
}

// containsUnescaped reports whether pat occurs in s other than right after
// a backslash (which makes its first character literal).
func containsUnescaped(s, pat string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], pat)
		if j < 0 {
			return false
		}
		if k := i + j; k == 0 || s[k-1] != '\\' {
			return true
		}
		i += j + 1
	}
}

// hostileAlert is f with value in every field a log record fills, grouped
// with n more findings carrying it too.
func hostileAlert(f finding.Finding, value string, n int) *alert.Alert {
	ev := *f.Example
	ev.Caller = audit.Caller{ObjectID: value, UPN: value, Name: value, Key: value}
	ev.ClientInfo, ev.RequestURI, ev.Operation, ev.ResultDescription = value, value, value, value
	ev.ObjectName, ev.CallerIP, ev.CorrelationID = value, value, value
	f.Example = &ev
	f.Vault, f.SubscriptionID, f.ResourceGroup = value, value, value
	f.Group = []finding.Pair{{Field: "vault", Value: value}, {Field: "caller", Value: value}, {Field: "ip", Value: value}, {Field: "custom", Value: value}}
	f.Summary, f.Value = value, value
	f.TopObjects = []finding.Count{{Value: value, Count: 3}, {Value: "secret/" + value, Count: 1}}
	f.TopIPs = []finding.Count{{Value: value, Count: 3}}
	f.TopOperations = []finding.Count{{Value: value, Count: 3}}
	f.CorrelationIDs = []string{value, value}
	f.KQL = finding.KQL(&f)
	fs := []finding.Finding{f}
	for i := range n {
		g := f
		g.ID = fmt.Sprint("other", i)
		fs = append(fs, g)
	}
	a := alert.New(fs, f.Raised)
	a.Title, a.Description = value, value // from the rule, but handled as hostile all the same
	return a
}

func TestHostileEscapes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"[x](https://evil)", `\[x\]\(hxxps://evil\)`},
		{"![x](http://evil/p.png)", `\!\[x\]\(hxxp://evil/p\.png\)`},
		{"<at>user</at>", `\<at\>user\</at\>`},
		{"**bold** _it_ ~~s~~", `\*\*bold\*\* \_it\_ \~\~s\~\~`},
		{"# h\n- l\n1. n", `\# h \- l 1\. n`},
		{"`code` {x} | y + z", "\\`code\\` \\{x\\} \\| y \\+ z"},
		{`C:\path & more`, `C:\\path \& more`},
		{"HTTPS://X ftp://y xhttp://z", `HxxPS://X ftp\[:\]//y xhttp\[:\]//z`},
		{"\x1b[1;31mred\x1b[0m\u202e\u200b\x00  tab\there  ", "red tab here"},
		{"\u00a0lead\u3000ideographic\u2028sep", "lead ideographic sep"},
		{strings.Repeat("é", 250), strings.Repeat("é", 200) + "…"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"a://b://c 9ftp://x ://y", `a\[:\]//b\[:\]//c 9ftp\[:\]//x ://y`},
		{strings.Repeat("x", 200), strings.Repeat("x", 200)},
	} {
		if got := Hostile(tc.in, hostileMax); got != tc.want {
			t.Errorf("Hostile(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
	if got := Plain("see https://wiki/runbook_1", 0); got != `see https://wiki/runbook\_1` {
		t.Errorf("Plain defangs or misses: %q", got)
	}
}

// TestSize renders alerts far over the limit — 500 findings, 10 KB in every
// value — at several limits: every message fits and is valid.
func TestSize(t *testing.T) {
	big := strings.Repeat("x*[", 10<<10/3)
	for _, tc := range []struct {
		name  string
		alert *alert.Alert
	}{
		{"500 hostile findings", hostileAlert(demoFinding(t), big, 499)},
		{"500 plain findings", manyFindings(demoFinding(t), 500, 10<<10)},
		{"huge resource id", func() *alert.Alert {
			a := hostileAlert(demoFinding(t), big, 0)
			a.ResourceID = "/subscriptions/" + strings.Repeat("y", 100<<10)
			a.Runbook = strings.Repeat("runbook ", 2000)
			return a
		}()},
	} {
		for _, limit := range []int{MinMaxBytes, 8000, 16000, DefaultMaxBytes, MaxMaxBytes} {
			t.Run(fmt.Sprint(tc.name, "/", limit), func(t *testing.T) {
				msg, err := Message(tc.alert, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(msg) > limit {
					t.Errorf("%d bytes, limit %d", len(msg), limit)
				}
				checkCard(t, msg)
				if !bytes.Contains(msg, []byte("severity")) || !bytes.Contains(msg, []byte(`"title":"Severity"`)) {
					t.Error("trimmed card lost its header or severity")
				}
			})
		}
	}
	if _, err := Message(manyFindings(demoFinding(t), 2, 100), 300); err == nil {
		t.Error("a 300-byte limit did not fail")
	}
}

// manyFindings groups n findings of f with long (not hostile) evidence.
func manyFindings(f finding.Finding, n, valueLen int) *alert.Alert {
	long := strings.Repeat("v", valueLen)
	fs := make([]finding.Finding, n)
	for i := range fs {
		g := f
		g.ID = fmt.Sprint("f", i)
		g.Summary = fmt.Sprintf("finding %d %s", i, long)
		g.TopObjects = []finding.Count{{Value: "secret/" + long, Count: 1}, {Value: "secret/b" + long, Count: 1}}
		g.TopIPs = []finding.Count{{Value: "198.51.100.1" + long, Count: 1}}
		g.CorrelationIDs = []string{long, long, long}
		fs[i] = g
	}
	a := alert.New(fs, f.Raised)
	a.Runbook = long
	return a
}

// TestTrimOrder lowers the limit step by step and checks that evidence goes
// in the documented order: correlation ids, top lists, other findings, the
// query text, the runbook, the Log Analytics link.
func TestTrimOrder(t *testing.T) {
	f := demoFinding(t)
	a := manyFindings(f, 60, 100)
	a.Runbook = "Disable the identity. " + strings.Repeat("Check the sign-in logs. ", 20)
	for i := range a.Findings {
		a.Findings[i].KQL = f.KQL
	}
	full, err := Message(a, MaxMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	type state struct{ corr, top, others, kql, runbook, logs bool }
	var seen []state
	for limit := len(full); ; limit -= 101 {
		msg, err := Message(a, limit)
		if err != nil {
			break // not even a minimal card fits
		}
		s := string(msg)
		st := state{
			corr:    strings.Contains(s, `"Correlation ids"`),
			top:     strings.Contains(s, `"Top objects"`),
			others:  strings.Contains(s, `Other findings in this alert`) && strings.Contains(s, "· count 40 ·"),
			kql:     strings.Contains(s, `Log Analytics query \\(`),
			runbook: strings.Contains(s, `"Runbook"`),
			logs:    strings.Contains(s, `"Show records in Log Analytics"`),
		}
		order := []bool{st.corr, st.top, st.others, st.kql, st.runbook, st.logs}
		for i := 1; i < len(order); i++ {
			if order[i-1] && !order[i] {
				t.Fatalf("limit %d: %+v: dropped out of order", limit, st)
			}
		}
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
	}
	if first, last := seen[0], seen[len(seen)-1]; first != (state{true, true, true, true, true, true}) || last != (state{}) {
		t.Errorf("from %+v to %+v: the limits tried do not cover every step", first, last)
	}
}

func TestCardEdges(t *testing.T) {
	if _, err := Card(nil); err == nil {
		t.Error("Card(nil) did not fail")
	}
	if _, err := Message(nil, 0); err == nil {
		t.Error("Message(nil) did not fail")
	}
	// No findings, no resource id: a card all the same, without buttons.
	a := &alert.Alert{ID: "x", Rule: "r", Title: "T", Severity: finding.Medium, Summary: "s", Test: true}
	msg, err := Message(a, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkCard(t, msg)
	if bytes.Contains(msg, []byte("Action.OpenUrl")) {
		t.Error("buttons without a resource id")
	}
	if !bytes.Contains(msg, []byte(`"style":"warning"`)) || !bytes.Contains(msg, []byte("TEST · MEDIUM severity")) {
		t.Errorf("medium test alert: %s", msg)
	}
	c, err := Card(demoAlert(t))
	if err != nil || c.Version != "1.4" || c.MSTeams.Width != "Full" {
		t.Fatalf("Card: %v %+v", err, c)
	}
	// A runbook with a link gets a button.
	a = demoAlert(t)
	a.Runbook = "See https://wiki.contoso.com/kv/mass-read. Then disable the identity."
	msg, _ = Message(a, 0)
	if !bytes.Contains(msg, []byte(`"title":"Open runbook","url":"https://wiki.contoso.com/kv/mass-read"`)) {
		t.Error("no runbook button")
	}
	for s, style := range map[finding.Severity]string{finding.Critical: "attention", finding.High: "attention", finding.Medium: "warning", finding.Low: "accent", finding.Info: "emphasis"} {
		if got, _ := severityStyle(s); got != style {
			t.Errorf("%s: style %s, want %s", s, got, style)
		}
	}
}

package email

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./internal/notify/email -update to accept):\n%s", name, firstDiff(string(want), got))
	}
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\nwant: " + w + "\ngot:  " + g
		}
	}
	return "(same lines, different bytes)"
}

func TestRenderGolden(t *testing.T) {
	subject, text, html, err := Render(realisticAlert())
	if err != nil {
		t.Fatal(err)
	}
	if want := "[kvwatch] HIGH Many different secrets read — kv-payments-prod"; subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}
	golden(t, "alert.txt.golden", text)
	golden(t, "alert.html.golden", html)
}

func TestRenderContent(t *testing.T) {
	a := realisticAlert()
	_, text, html, err := Render(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kv-payments-prod", "jdoe@contoso.com", "203.0.113.47", "db-admin-password", "SecretGet",
		"8c3a1f9e-4b2d-4e7a-9f10-2b3c4d5e6f70", "Disable the identity if unexpected", "AzureDiagnostics",
		"| where Resource =~ \"kv-payments-prod\"", "T1555.006", "Threshold", "2026-03-14 09:26:53 UTC",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text body lacks %q", want)
		}
	}
	portal := a.PortalURL()
	if !strings.Contains(text, portal) {
		t.Errorf("text body lacks the portal link %s", portal)
	}
	// html/template escapes & in URLs inside attributes as &amp; only where
	// needed; the portal URL has none, so it appears as is.
	if !strings.Contains(html, `href="`+portal+`"`) {
		t.Errorf("HTML body lacks the portal link %s", portal)
	}
	if !strings.Contains(html, "<pre") || !strings.Contains(html, "| where Resource =~ &#34;kv-payments-prod&#34;") {
		t.Errorf("HTML body lacks the escaped KQL in a <pre>")
	}
	for _, want := range []string{"<th", "db-admin-password", "Correlation ids", "Top objects"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML body lacks %q", want)
		}
	}
}

func TestRenderSubjectVariants(t *testing.T) {
	a := realisticAlert()
	a.Test = true
	a.Repeat = 2
	s, _, _, err := Render(a)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[kvwatch] TEST HIGH Many different secrets read — kv-payments-prod (reminder 2)"; s != want {
		t.Errorf("subject %q, want %q", s, want)
	}
	a = realisticAlert()
	a.Vault = ""
	s, _, _, _ = Render(a)
	if want := "[kvwatch] HIGH Many different secrets read"; s != want {
		t.Errorf("subject %q, want %q", s, want)
	}
	if _, _, _, err := Render(nil); err == nil {
		t.Error("Render(nil) succeeded")
	}
}

func TestRenderRunbookLink(t *testing.T) {
	a := realisticAlert()
	a.Runbook = "https://wiki.example.com/runbooks/kv?rule=mass&x=1"
	_, text, html, err := Render(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html, `href="https://wiki.example.com/runbooks/kv?rule=mass&amp;x=1"`) {
		t.Errorf("runbook URL not a link:\n%s", html)
	}
	if !strings.Contains(text, a.Runbook) {
		t.Error("runbook URL missing from the text body")
	}
	a.Runbook = "javascript:alert(1)"
	_, _, html, _ = Render(a)
	if strings.Contains(html, `href="javascript`) {
		t.Error("a javascript: runbook became a link")
	}
}

// TestRenderHostile checks what a hostile log record can reach: the
// subject has no line break or control character; the HTML has no markup
// of the attacker's; the values are still there, as text.
func TestRenderHostile(t *testing.T) {
	subject, text, html, err := Render(hostileAlert())
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsFunc(subject, isCtl) {
		t.Errorf("subject has control characters: %q", subject)
	}
	if len([]rune(subject)) > maxSubject+1 {
		t.Errorf("subject is %d runes", len([]rune(subject)))
	}
	for _, bad := range []string{"<script", "<img", "onerror=alert(1)>", "\x1b", "\x00", "\u202e", "\u2028"} {
		if strings.Contains(html, bad) {
			t.Errorf("HTML body contains %q raw", bad)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt;",
		"&#34;&gt;&lt;img src=x onerror=alert(1)&gt;",
		`ctl\x1b[31mred\x00nul\x07bell\u202eevil\u2028sep`,
		`x@y\r\nBcc: victim@evil`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML body lacks the escaped value %q", want)
		}
	}
	for _, want := range []string{hostileScript, hostileAttr, `ctl\x1b[31mred\x00nul\x07bell\u202eevil\u2028sep`, `x@y\r\nBcc: victim@evil`} {
		if !strings.Contains(text, want) {
			t.Errorf("text body lacks %q as text", want)
		}
	}
	for _, body := range []string{text, html} {
		if strings.ContainsFunc(body, func(r rune) bool { return isCtl(r) && r != '\n' && r != '\t' }) {
			t.Error("a body contains a raw control character")
		}
		if strings.Contains(body, "\nBcc:") || strings.Contains(body, "\nX-Injected:") {
			t.Error("a body has an injected line")
		}
		if len(body) > 64<<10 {
			t.Errorf("a body is %d bytes: 100 KB values must be cut", len(body))
		}
	}
	if !strings.Contains(text, strings.Repeat("A", 100)) || !strings.Contains(text, "more bytes]") {
		t.Error("the 100 KB value is not shown cut")
	}
}

func TestSanitizers(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\nBcc: b":          "a Bcc: b",
		"  lots   of\tspace  ": "lots of space",
		"=?utf-8?q?x?=":        "= ?utf-8?q?x?=",
		"ok — ünïcode":         "ok — ünïcode",
		"bidi\u202eflip":       "bidi flip",
		"bad\xffutf8":          "bad\uFFFDutf8",
	} {
		if got := headerText(in, 100); got != want {
			t.Errorf("headerText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := headerText(strings.Repeat("x", 300), 10); got != "xxxxxxxxxx…" {
		t.Errorf("headerText cut = %q", got)
	}
	for in, want := range map[string]string{
		"a\nb":       `a\nb`,
		"\x1b[0m":    `\x1b[0m`,
		"\u202e":     `\u202e`,
		"bad\xffx":   `bad\xffx`,
		"fine ünï ✓": "fine ünï ✓",
	} {
		if got := clean(in, 100); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
	if got := cleanBlock("a\r\nb\rc\td\x00", 100); got != "a\nb\nc\td\\x00" {
		t.Errorf("cleanBlock = %q", got)
	}
	if got := token("abc-1.2_z<>@\r\n", 100); got != "abc-1.2_z" {
		t.Errorf("token = %q", got)
	}
}

func TestRenderGroupedAlert(t *testing.T) {
	base := realisticAlert().Findings[0]
	fs := []finding.Finding{base}
	for i := 1; i <= 12; i++ {
		f := base
		f.ID = "f" + strconv.Itoa(i)
		f.FirstEvent = base.FirstEvent.Add(time.Duration(i) * time.Hour)
		f.LastEvent = f.FirstEvent.Add(time.Minute)
		f.Summary = "burst number " + strconv.Itoa(i) + " <b>"
		fs = append(fs, f)
	}
	a := alert.New(fs, t0)
	a.Suppressed = 4
	_, text, html, err := Render(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Also in this alert", "burst number 1 <b> (2026-03-14 10:26:53 UTC – 2026-03-14 10:27:53 UTC)", "burst number 10 <b>", "… and 2 more", "in 13 findings", "Held back"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q", want)
		}
	}
	if strings.Contains(text, "burst number 11") {
		t.Error("more than 10 other findings listed")
	}
	if !strings.Contains(html, "burst number 1 &lt;b&gt;") || !strings.Contains(html, "… and 2 more") {
		t.Error("HTML lacks the other findings")
	}
}

// URLs from log records are defanged in the subject and both bodies, as
// Teams cards defang them; the runbook (configuration) keeps its link.
func TestRenderDefangsLogURLs(t *testing.T) {
	a := realisticAlert()
	f := &a.Findings[0]
	f.Vault = "kv-payments-prod"
	f.Example.ClientInfo = "curl/8.0 https://evil.example/collect?k=1"
	f.Example.Caller.UPN = "http://phish.example/login"
	f.Summary = "Read by http://phish.example/login from ftp://files.example/x"
	f.TopObjects = []finding.Count{{Value: "https://evil.example/obj", Count: 3}}
	f.Runbook = "https://wiki.contoso.com/runbooks/kv"
	b := alert.New([]finding.Finding{*f}, a.Created)
	b.Title = "Listing then https://evil.example/title"
	subject, text, html, err := Render(b)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"subject": subject, "text": text, "html": html} {
		for _, live := range []string{"https://evil.example", "http://phish.example", "ftp://files.example"} {
			if strings.Contains(body, live) {
				t.Errorf("%s has the live URL %q", name, live)
			}
		}
	}
	for name, body := range map[string]string{"text": text, "html": html} {
		for _, want := range []string{"hxxps://evil.example/collect", "hxxp://phish.example/login", "ftp[:]//files.example/x"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks the defanged %q", name, want)
			}
		}
		if !strings.Contains(body, "https://wiki.contoso.com/runbooks/kv") {
			t.Errorf("%s lost the runbook link", name)
		}
	}
}

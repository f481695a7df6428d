package email

// internal/digest imports this package (through delivery and config), so
// these tests build the rendered Digest by hand; cmd/kvwatch's tests send
// real reports through the receiver.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

const testCID = "chart@kvwatch"

func testPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 32))
	for x := range 64 {
		img.Set(x, x/2, color.RGBA{0, 0x72, 0xb2, 0xff})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func testDigest(t *testing.T) Digest {
	return Digest{
		ID: "daily-2026-11-23", Period: "daily", Label: "Monday 23 November 2026",
		Text: "kvwatch daily digest: Monday 23 November 2026\n\nAll vaults (2)\n  requests  16,575 — café\n" +
			strings.Repeat("a long line of figures ", 20) + "\n",
		HTML: `<!DOCTYPE html><html><body><h1>kvwatch daily digest</h1><p>caf&eacute; — 16,575</p>` +
			`<img src="cid:` + testCID + `" alt="requests per hour" width="720"></body></html>` + "\n",
		Chart: testPNG(t), ChartCID: testCID,
	}
}

// mimePart is a part of a received mail, its children parsed.
type mimePart struct {
	Header   map[string][]string
	Type     string
	Params   map[string]string
	Body     []byte // decoded: quoted-printable by the reader, base64 here
	Children []*mimePart
}

func (p *mimePart) get(k string) string {
	if v := p.Header[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func readPart(t *testing.T, header map[string][]string, body io.Reader) *mimePart {
	t.Helper()
	p := &mimePart{Header: header}
	var err error
	p.Type, p.Params, err = mime.ParseMediaType(p.get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", p.get("Content-Type"), err)
	}
	if strings.HasPrefix(p.Type, "multipart/") {
		mr := multipart.NewReader(body, p.Params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", p.Type, err)
			}
			p.Children = append(p.Children, readPart(t, part.Header, part))
		}
		return p
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.EqualFold(p.get("Content-Transfer-Encoding"), "base64") {
		if p.Body, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b))); err != nil {
			t.Fatalf("%s: base64: %v", p.Type, err)
		}
		return p
	}
	p.Body = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) // mail lines end in CRLF
	return p
}

func parseDigestMail(t *testing.T, data []byte) (mail.Header, *mimePart) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("net/mail cannot read the message: %v", err)
	}
	return msg.Header, readPart(t, msg.Header, msg.Body)
}

func TestSendDigestSMTP(t *testing.T) {
	be := newBackend()
	srv := startSMTP(t, be)
	n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
	d := testDigest(t)
	if err := n.SendDigest(context.Background(), d); err != nil {
		t.Fatalf("SendDigest: %v", err)
	}
	msgs := be.messages()
	if len(msgs) != 1 {
		t.Fatalf("server received %d messages, want 1", len(msgs))
	}
	r := msgs[0]
	if !r.TLS || r.User != "kvwatch" {
		t.Errorf("TLS %v, user %q", r.TLS, r.User)
	}
	if want := []string{"secops@contoso.com", "oncall@contoso.com", "audit@contoso.com"}; !slices.Equal(r.To, want) {
		t.Errorf("RCPT TO %v, want %v", r.To, want)
	}
	h, root := parseDigestMail(t, r.Data)

	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subject != "[kvwatch] Daily digest — Monday 23 November 2026" {
		t.Errorf("Subject %q (%v)", subject, err)
	}
	if got := h.Get("Message-Id"); got != "<kvwatch-digest.daily-2026-11-23@kvwatch.alerts.contoso.com>" {
		t.Errorf("Message-ID %q", got)
	}
	if d, err := h.Date(); err != nil || !d.Equal(fixedAt()) {
		t.Errorf("Date %v %v", d, err)
	}
	for k, want := range map[string]string{"MIME-Version": "1.0", "X-Kvwatch-Digest": "daily", "X-Kvwatch-Digest-Id": "daily-2026-11-23",
		"Auto-Submitted": "auto-generated"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 2 {
		t.Errorf("To %v %v", to, err)
	}

	// multipart/related (root: multipart/alternative) holding the
	// alternatives and the inline chart.
	if root.Type != "multipart/related" || root.Params["type"] != "multipart/alternative" {
		t.Fatalf("top level %s %v, want multipart/related; type=multipart/alternative", root.Type, root.Params)
	}
	if len(root.Children) != 2 {
		t.Fatalf("multipart/related has %d parts, want 2", len(root.Children))
	}
	alt, img := root.Children[0], root.Children[1]
	if alt.Type != "multipart/alternative" || len(alt.Children) != 2 {
		t.Fatalf("first part %s with %d parts, want multipart/alternative with 2", alt.Type, len(alt.Children))
	}
	text, html := alt.Children[0], alt.Children[1]
	if text.Type != "text/plain" || text.Params["charset"] != "utf-8" || html.Type != "text/html" || html.Params["charset"] != "utf-8" {
		t.Errorf("alternatives %s, %s: want text/plain then text/html (the preferred one last), utf-8", text.Type, html.Type)
	}
	if string(text.Body) != d.Text {
		t.Errorf("text part differs:\n%s", firstDiff(d.Text, string(text.Body)))
	}
	if string(html.Body) != d.HTML {
		t.Errorf("HTML part differs:\n%s", firstDiff(d.HTML, string(html.Body)))
	}

	// The chart: found by the Content-ID the HTML names, inline, a PNG.
	if !strings.Contains(string(html.Body), `src="cid:`+testCID+`"`) {
		t.Fatal("the HTML does not refer to the chart by cid")
	}
	var chart *mimePart
	for _, p := range root.Children {
		if p.get("Content-Id") == "<"+testCID+">" {
			chart = p
		}
	}
	if chart != img || chart == nil {
		t.Fatalf("no part with Content-ID <%s> next to the alternatives", testCID)
	}
	if chart.Type != "image/png" {
		t.Errorf("chart Content-Type %s", chart.Type)
	}
	if disp, params, err := mime.ParseMediaType(chart.get("Content-Disposition")); err != nil || disp != "inline" || params["filename"] == "" {
		t.Errorf("chart Content-Disposition %q (%v): want inline with a filename", chart.get("Content-Disposition"), err)
	}
	im, err := png.Decode(bytes.NewReader(chart.Body))
	if err != nil {
		t.Fatalf("the inline chart is not a PNG: %v", err)
	}
	if b := im.Bounds(); b.Dx() != 64 || b.Dy() != 32 || !bytes.Equal(chart.Body, d.Chart) {
		t.Errorf("chart %v, differs from the one sent", b)
	}

	for _, line := range strings.Split(string(r.Data), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line of %d bytes", len(line))
		}
	}
}

func TestSendDigestWithoutChart(t *testing.T) {
	be := newBackend()
	srv := startSMTP(t, be)
	n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthLogin), srv.startTLS)
	d := testDigest(t)
	d.Chart = nil
	if err := n.SendDigest(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	msgs := be.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	_, root := parseDigestMail(t, msgs[0].Data)
	if root.Type != "multipart/alternative" || len(root.Children) != 2 {
		t.Errorf("without a chart: %s with %d parts, want multipart/alternative with 2", root.Type, len(root.Children))
	}
}

func TestSendDigestSubjects(t *testing.T) {
	for _, tc := range []struct{ period, label, want string }{
		{"daily", "Monday 23 November 2026", "[kvwatch] Daily digest — Monday 23 November 2026"},
		{"weekly", "week of 16–22 November 2026", "[kvwatch] Weekly digest — week of 16–22 November 2026"},
		{"monthly", "October 2026", "[kvwatch] Monthly digest — October 2026"},
		{"daily", "x\r\nBcc: victim@evil", "[kvwatch] Daily digest — x Bcc: victim@evil"},
	} {
		if got := DigestSubject("[kvwatch]", &Digest{Period: tc.period, Label: tc.label}); got != tc.want {
			t.Errorf("subject %q, want %q", got, tc.want)
		}
	}
}

func TestSendDigestSMTPErrors(t *testing.T) {
	t.Run("refused recipients are permanent", func(t *testing.T) {
		be := newBackend()
		for _, a := range []string{"secops@contoso.com", "oncall@contoso.com", "audit@contoso.com"} {
			be.rcptErr[a] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		srv := startSMTP(t, be)
		n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
		wantClass(t, n.SendDigest(context.Background(), testDigest(t)), false, "550", "email secops-mail")
	})
	t.Run("greylisting is temporary", func(t *testing.T) {
		be := newBackend()
		be.rcptErr["oncall@contoso.com"] = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted"}
		srv := startSMTP(t, be)
		n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
		wantClass(t, n.SendDigest(context.Background(), testDigest(t)), true, "451")
		if len(be.messages()) != 0 {
			t.Error("a message went through")
		}
	})
	t.Run("wrong password is permanent and not quoted", func(t *testing.T) {
		be := newBackend()
		be.users["kvwatch"] = "the-real-password"
		srv := startSMTP(t, be)
		n := newSMTPNotifier(t, srv, smtpConfig(srv.implicit, TLSImplicit, AuthLogin), srv.implicit)
		wantClass(t, n.SendDigest(context.Background(), testDigest(t)), false, "535")
	})
	t.Run("no body is permanent", func(t *testing.T) {
		be := newBackend()
		srv := startSMTP(t, be)
		n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
		wantClass(t, n.SendDigest(context.Background(), Digest{ID: "daily-2026-11-23"}), false)
	})
}

func TestSendDigestACS(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	opID := OperationID("secops-acs", "digest:daily-2026-11-23")
	f.sendResp = []acsReply{{202, map[string]string{"Operation-Location": f.opLocation(opID)}, running(opID)}}
	f.pollResp = []acsReply{{200, nil, succeeded(opID)}}
	n, _ := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	d := testDigest(t)
	if err := n.SendDigest(context.Background(), d); err != nil {
		t.Fatalf("SendDigest: %v", err)
	}
	if len(f.authErrs) > 0 {
		t.Fatalf("signature rejected: %v", f.authErrs)
	}
	if len(f.sends) != 1 || f.polls != 1 {
		t.Fatalf("%d sends, %d polls", len(f.sends), f.polls)
	}
	s := f.sends[0]
	if got := s.Header.Get("Operation-Id"); got != opID {
		t.Errorf("Operation-Id %q, want %q", got, opID)
	}
	var m struct {
		SenderAddress string `json:"senderAddress"`
		Content       struct {
			Subject   string `json:"subject"`
			PlainText string `json:"plainText"`
			HTML      string `json:"html"`
		} `json:"content"`
		Recipients struct {
			To []struct {
				Address string `json:"address"`
			} `json:"to"`
		} `json:"recipients"`
		Headers     map[string]string   `json:"headers"`
		Attachments []map[string]string `json:"attachments"`
		Tracking    *bool               `json:"userEngagementTrackingDisabled"`
	}
	if err := json.Unmarshal(s.Raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Content.Subject != "[kvwatch] Daily digest — Monday 23 November 2026" || m.Content.PlainText != d.Text || m.Content.HTML != d.HTML {
		t.Errorf("content: subject %q, text/html equal %v/%v", m.Content.Subject, m.Content.PlainText == d.Text, m.Content.HTML == d.HTML)
	}
	if len(m.Recipients.To) != 2 || m.Headers["X-Kvwatch-Digest-Id"] != "daily-2026-11-23" || m.Tracking == nil || !*m.Tracking {
		t.Errorf("recipients %v, headers %v, tracking disabled %v", m.Recipients.To, m.Headers, m.Tracking)
	}
	// EmailAttachment (2025-09-01): name, contentType, contentInBase64, and
	// contentId for an inline one, referenced as cid:<contentId>.
	if len(m.Attachments) != 1 {
		t.Fatalf("%d attachments, want the chart", len(m.Attachments))
	}
	a := m.Attachments[0]
	if a["contentId"] != testCID || a["contentType"] != "image/png" || a["name"] == "" {
		t.Errorf("attachment %v", map[string]string{"name": a["name"], "contentType": a["contentType"], "contentId": a["contentId"]})
	}
	if !strings.Contains(m.Content.HTML, "cid:"+a["contentId"]) {
		t.Error("the HTML does not refer to the attachment's contentId")
	}
	raw, err := base64.StdEncoding.DecodeString(a["contentInBase64"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(raw)); err != nil {
		t.Errorf("attachment is not a PNG: %v", err)
	}
}

func TestSendDigestACSErrors(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	f.sendResp = []acsReply{{429, map[string]string{"Retry-After": "30"}, `{"error":{"code":"TooManyRequests","message":"slow down"}}`}}
	n, _ := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	err := n.SendDigest(context.Background(), testDigest(t))
	wantClass(t, err, true, "429")
	if strings.Contains(err.Error(), testKey) {
		t.Error("error quotes the access key")
	}

	f2 := newFakeACS(t)
	f2.key, _ = base64.StdEncoding.DecodeString(testKey)
	f2.sendResp = []acsReply{{400, nil, `{"error":{"code":"InvalidAttachmentContent","message":"bad"}}`}}
	n2, _ := newACSNotifier(t, f2, acsConfig(f2.srv.URL), nil)
	wantClass(t, n2.SendDigest(context.Background(), testDigest(t)), false, "400")
}

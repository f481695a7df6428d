package email

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/notify"
)

const testPassword = "s3cret-Pa55word!"

func smtpConfig(addr, tlsMode, auth string) Config {
	return Config{
		Transport: TransportSMTP,
		From:      "kvwatch@alerts.contoso.com", FromName: "kvwatch alerts",
		To: []string{"secops@contoso.com", "oncall@contoso.com"}, CC: []string{"audit@contoso.com"},
		SMTP: SMTPConfig{Host: "127.0.0.1", TLS: tlsMode, Username: "kvwatch", Password: testPassword, Auth: auth, Timeout: "5s"},
	}
}

func newSMTPNotifier(t *testing.T, srv *smtpServer, cfg Config, addr string) *Notifier {
	t.Helper()
	cfg.SMTP.Port = portOf(t, addr)
	n, err := New("secops-mail", cfg, Deps{Now: fixedAt, TLSConfig: &tls.Config{RootCAs: srv.pool}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newBackend() *backend {
	return &backend{users: map[string]string{"kvwatch": testPassword}, rcptErr: map[string]error{}}
}

func TestSMTPDelivers(t *testing.T) {
	for _, tc := range []struct {
		name, tls, auth string
		implicit        bool
	}{
		{"starttls-plain", TLSStartTLS, AuthPlain, false},
		{"starttls-login", TLSStartTLS, AuthLogin, false},
		{"implicit-plain", TLSImplicit, AuthPlain, true},
		{"implicit-login", TLSImplicit, AuthLogin, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend()
			srv := startSMTP(t, be)
			addr := srv.startTLS
			if tc.implicit {
				addr = srv.implicit
			}
			n := newSMTPNotifier(t, srv, smtpConfig(addr, tc.tls, tc.auth), addr)
			a := realisticAlert()
			if err := n.Notify(context.Background(), a); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			msgs := be.messages()
			if len(msgs) != 1 {
				t.Fatalf("server received %d messages, want 1", len(msgs))
			}
			r := msgs[0]
			if !r.TLS {
				t.Error("the message did not travel over TLS")
			}
			if r.User != "kvwatch" || r.Mech != strings.ToUpper(tc.auth) {
				t.Errorf("authenticated as %q with %q", r.User, r.Mech)
			}
			if r.From != "kvwatch@alerts.contoso.com" {
				t.Errorf("MAIL FROM %q", r.From)
			}
			if want := []string{"secops@contoso.com", "oncall@contoso.com", "audit@contoso.com"}; !slices.Equal(r.To, want) {
				t.Errorf("RCPT TO %v, want %v", r.To, want)
			}
			checkMail(t, parseMail(t, r.Data), a.ID)
		})
	}
}

func checkMail(t *testing.T, p *parsed, alertID string) {
	t.Helper()
	h := p.Header
	if want := "[kvwatch] HIGH Many different secrets read — kv-payments-prod"; p.Subject != want {
		t.Errorf("Subject %q, want %q", p.Subject, want)
	}
	if got := h.Get("From"); got != `"kvwatch alerts" <kvwatch@alerts.contoso.com>` {
		t.Errorf("From %q", got)
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 2 || to[0].Address != "secops@contoso.com" {
		t.Errorf("To %v %v", to, err)
	}
	if cc, err := h.AddressList("Cc"); err != nil || len(cc) != 1 || cc[0].Address != "audit@contoso.com" {
		t.Errorf("Cc %v %v", cc, err)
	}
	if h.Get("Bcc") != "" {
		t.Error("a Bcc header was sent")
	}
	if d, err := h.Date(); err != nil || !d.Equal(fixedAt()) {
		t.Errorf("Date %v %v, want %v", d, err, fixedAt())
	}
	if h.Get("MIME-Version") != "1.0" {
		t.Errorf("MIME-Version %q", h.Get("MIME-Version"))
	}
	wantID := "<" + alertID + "." + strconv.FormatInt(realisticAlert().Created.Unix(), 10) + "@kvwatch.alerts.contoso.com>"
	if got := h.Get("Message-Id"); got != wantID {
		t.Errorf("Message-ID %q, want %q", got, wantID)
	}
	if got := h.Get("X-Kvwatch-Alert-Id"); got != alertID {
		t.Errorf("X-Kvwatch-Alert-Id %q, want %q", got, alertID)
	}
	if h.Get("Auto-Submitted") != "auto-generated" {
		t.Error("no Auto-Submitted: auto-generated")
	}
	if !slices.Equal(p.PartTypes, []string{"text/plain; charset=utf-8", "text/html; charset=utf-8"}) {
		t.Errorf("parts %v", p.PartTypes)
	}
	_, text, html, _ := Render(realisticAlert())
	if p.Text != text {
		t.Errorf("text part differs from Render's text:\n%s", firstDiff(text, p.Text))
	}
	if p.HTML != html {
		t.Errorf("HTML part differs from Render's HTML:\n%s", firstDiff(html, p.HTML))
	}
	for _, line := range strings.Split(strings.TrimSuffix(p.RawHeader, "\r\n"), "\r\n") {
		if len(line) > 998 {
			t.Errorf("header line of %d bytes", len(line))
		}
	}
}

func TestSMTPMessageIDStableAcrossResends(t *testing.T) {
	be := newBackend()
	srv := startSMTP(t, be)
	n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
	for range 2 {
		if err := n.Notify(context.Background(), realisticAlert()); err != nil {
			t.Fatal(err)
		}
	}
	other := realisticAlert()
	other.Findings[0].ID = "another-finding"
	other = alert.New(other.Findings, other.Created)
	if err := n.Notify(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	msgs := be.messages()
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	id := func(i int) string { return parseMail(t, msgs[i].Data).Header.Get("Message-Id") }
	if id(0) != id(1) {
		t.Errorf("a resend of the same alert has another Message-ID: %s vs %s", id(0), id(1))
	}
	if id(0) == id(2) {
		t.Errorf("two alerts share Message-ID %s", id(0))
	}
	if !regexp.MustCompile(`^<[0-9a-f]{24}\.\d+@kvwatch\.alerts\.contoso\.com>$`).MatchString(id(0)) {
		t.Errorf("Message-ID %q", id(0))
	}
}

// TestSMTPHostileValues sends an alert full of attacker-chosen log values
// through a real server and reads it back as a mail client would.
func TestSMTPHostileValues(t *testing.T) {
	be := newBackend()
	srv := startSMTP(t, be)
	n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
	if err := n.Notify(context.Background(), hostileAlert()); err != nil {
		t.Fatal(err)
	}
	msgs := be.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	r := msgs[0]
	if want := []string{"secops@contoso.com", "oncall@contoso.com", "audit@contoso.com"}; !slices.Equal(r.To, want) {
		t.Errorf("envelope recipients %v: an injection reached RCPT TO", r.To)
	}
	p := parseMail(t, r.Data)

	// Headers: exactly ours, each on its own line; the hostile values only
	// inside the Subject, flattened to one line.
	allowed := map[string]bool{
		"Date": true, "From": true, "To": true, "Cc": true, "Subject": true, "Message-Id": true,
		"Mime-Version": true, "Content-Type": true, "X-Kvwatch-Alert-Id": true, "X-Kvwatch-Rule": true,
		"X-Kvwatch-Severity": true, "Auto-Submitted": true, "X-Auto-Response-Suppress": true,
	}
	for k := range p.Header {
		if !allowed[k] {
			t.Errorf("unexpected header %q (injection?)", k)
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(p.RawHeader, "\r\n"), "\r\n") {
		if strings.HasPrefix(line, " ") {
			continue
		}
		name, _, ok := strings.Cut(line, ":")
		if !ok || !allowed[canonical(name)] {
			t.Errorf("raw header line %q", line)
		}
		if strings.ContainsAny(line, "\x00\x1b\x07") {
			t.Errorf("control character in header line %q", line)
		}
	}
	if strings.ContainsFunc(p.Subject, isCtl) {
		t.Errorf("decoded Subject has control characters: %q", p.Subject)
	}
	if !strings.Contains(p.Subject, "kv-payments-prod Bcc: victim@evil") {
		t.Errorf("Subject %q: the vault name should be there, flattened", p.Subject)
	}
	if strings.Contains(p.RawHeader, hostileScript) || strings.Contains(p.RawHeader, "AAAAAAAAAAAAAAAAAAAA") {
		t.Error("log values other than the vault reached the headers")
	}

	// HTML: escaped; text: the values as text.
	for _, bad := range []string{"<script", "<img", "\x1b", "\x00", "\u202e"} {
		if strings.Contains(p.HTML, bad) {
			t.Errorf("HTML part contains %q raw", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;", `x@y\r\nBcc: victim@evil`} {
		if !strings.Contains(p.HTML, want) {
			t.Errorf("HTML part lacks %q", want)
		}
	}
	for _, want := range []string{hostileScript, hostileAttr, `ctl\x1b[31mred\x00nul\x07bell\u202eevil\u2028sep`, `203.0.113.47\r\nX-Injected: yes`} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("text part lacks %q", want)
		}
	}
	if len(r.Data) > 200<<10 {
		t.Errorf("message is %d bytes; 100 KB values must be cut", len(r.Data))
	}
}

func canonical(s string) string {
	parts := strings.Split(strings.ToLower(s), "-")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "-")
}

func wantClass(t *testing.T, err error, retry bool, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var ne *notify.Error
	if !errors.As(err, &ne) {
		t.Fatalf("%v is not a *notify.Error", err)
	}
	if got, _ := notify.Retryable(err); got != retry {
		t.Errorf("retryable = %v, want %v: %v", got, retry, err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q lacks %q", err, c)
		}
	}
	if strings.Contains(err.Error(), testPassword) {
		t.Errorf("error quotes the password: %v", err)
	}
}

func TestSMTPWrongPasswordIsPermanent(t *testing.T) {
	for _, auth := range []string{AuthPlain, AuthLogin} {
		t.Run(auth, func(t *testing.T) {
			be := newBackend()
			be.users["kvwatch"] = "the-real-password"
			srv := startSMTP(t, be)
			n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, auth), srv.startTLS)
			err := n.Notify(context.Background(), realisticAlert())
			wantClass(t, err, false, "535", "email secops-mail")
			if len(be.messages()) != 0 {
				t.Error("a message went through")
			}
		})
	}
}

func TestSMTPServerDownIsTemporary(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := smtpConfig(addr, TLSStartTLS, AuthPlain)
	cfg.SMTP.Port = portOf(t, addr)
	n, err := New("secops-mail", cfg, Deps{Now: fixedAt})
	if err != nil {
		t.Fatal(err)
	}
	wantClass(t, n.Notify(context.Background(), realisticAlert()), true, "connect")
}

func TestSMTPSilentServerTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // never greets
		}
	}()
	cfg := smtpConfig(l.Addr().String(), TLSStartTLS, AuthPlain)
	cfg.SMTP.Port = portOf(t, l.Addr().String())
	cfg.SMTP.Timeout = "300ms"
	n, err := New("secops-mail", cfg, Deps{Now: fixedAt})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = n.Notify(context.Background(), realisticAlert())
	wantClass(t, err, true)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %s with a 300ms timeout", el)
	}
}

func TestSMTPGreylistingIsTemporary(t *testing.T) {
	be := newBackend()
	be.rcptErr["oncall@contoso.com"] = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, please try again later"}
	srv := startSMTP(t, be)
	n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
	wantClass(t, n.Notify(context.Background(), realisticAlert()), true, "451", "Greylisted")
	if len(be.messages()) != 0 {
		t.Error("a temporary refusal must abort the whole transaction, so the retry reaches everyone once")
	}
}

func TestSMTPBadRecipientIsPermanent(t *testing.T) {
	be := newBackend()
	no := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	for _, a := range []string{"secops@contoso.com", "oncall@contoso.com", "audit@contoso.com"} {
		be.rcptErr[a] = no
	}
	srv := startSMTP(t, be)
	n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
	wantClass(t, n.Notify(context.Background(), realisticAlert()), false, "550", "No such user")
	if len(be.messages()) != 0 {
		t.Error("a message went through")
	}
}

func TestSMTPOneBadRecipientOthersServed(t *testing.T) {
	be := newBackend()
	be.rcptErr["audit@contoso.com"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	srv := startSMTP(t, be)
	n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
	wantClass(t, n.Notify(context.Background(), realisticAlert()), false, "audit@contoso.com", "550", "sent to 2")
	msgs := be.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"secops@contoso.com", "oncall@contoso.com"}) {
		t.Fatalf("messages %+v", msgs)
	}
}

func TestSMTPUntrustedCertificateIsPermanent(t *testing.T) {
	be := newBackend()
	srv := startSMTP(t, be)
	cfg := smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain)
	cfg.SMTP.Port = portOf(t, srv.startTLS)
	n, err := New("secops-mail", cfg, Deps{Now: fixedAt}) // system roots only
	if err != nil {
		t.Fatal(err)
	}
	wantClass(t, n.Notify(context.Background(), realisticAlert()), false, "certificate")
	if len(be.messages()) != 0 {
		t.Error("a message went through")
	}
	// insecure_skip_verify, allowed for loopback test servers only.
	cfg.SMTP.InsecureSkipVerify = true
	n, err = New("secops-mail", cfg, Deps{Now: fixedAt})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), realisticAlert()); err != nil {
		t.Fatal(err)
	}
}

func TestSMTPNoSTARTTLSIsPermanent(t *testing.T) {
	be := newBackend()
	srv := smtp.NewServer(be)
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	cfg := smtpConfig(l.Addr().String(), TLSStartTLS, AuthPlain)
	cfg.SMTP.Port = portOf(t, l.Addr().String())
	n, err := New("secops-mail", cfg, Deps{Now: fixedAt})
	if err != nil {
		t.Fatal(err)
	}
	wantClass(t, n.Notify(context.Background(), realisticAlert()), false, "STARTTLS")
	if len(be.messages()) != 0 {
		t.Error("sent in cleartext although STARTTLS was required")
	}
	// tls: none is allowed to a loopback relay.
	cfg.SMTP.TLS = TLSNone
	n, err = New("secops-mail", cfg, Deps{Now: fixedAt})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), realisticAlert()); err != nil {
		t.Fatal(err)
	}
	if len(be.messages()) != 1 {
		t.Error("no message through the loopback relay")
	}
}

func TestSMTPCanceledContextIsTemporary(t *testing.T) {
	be := newBackend()
	srv := startSMTP(t, be)
	n := newSMTPNotifier(t, srv, smtpConfig(srv.startTLS, TLSStartTLS, AuthPlain), srv.startTLS)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wantClass(t, n.Notify(ctx, realisticAlert()), true)
}

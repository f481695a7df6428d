package email

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// Digest is a digest as this receiver sends it, already rendered
// (internal/digest depends on this package through delivery and config,
// so it cannot be passed the report itself).
type Digest struct {
	// ID names the digest, e.g. "daily-2026-11-23": Message-ID, the ACS
	// Operation-Id, the X-Kvwatch-Digest-Id header, errors.
	ID string
	// Period is "daily", "weekly" or "monthly"; Label names the period in
	// words (digest.PeriodLabel), e.g. "Monday 23 November 2026".
	Period, Label string
	// Text and HTML are the bodies (digest.Text, digest.HTML); the HTML
	// shows the chart as "cid:"+ChartCID.
	Text, HTML string
	// Chart is the PNG (digest.ChartPNG), sent inline with Content-ID
	// ChartCID (digest.ChartCID). No chart, no image part.
	Chart    []byte
	ChartCID string
}

// chartName is the inline image's file name.
const chartName = "kvwatch-digest-chart.png"

// DigestSubject is the subject of a digest mail, e.g.
// "[kvwatch] Daily digest — Monday 23 November 2026".
func DigestSubject(prefix string, d *Digest) string {
	p := headerText(d.Period, 20)
	if r, size := utf8.DecodeRuneInString(p); size > 0 {
		p = string(unicode.ToUpper(r)) + p[size:]
	}
	return headerText(prefix+" "+p+" digest — "+d.Label, maxSubject)
}

// SendDigest sends one mail holding the digest: the plain text and the
// HTML as alternatives, the chart as an inline image the HTML refers to
// by Content-ID. Over SMTP the message is
//
//	multipart/related; type="multipart/alternative"
//	├── multipart/alternative
//	│   ├── text/plain
//	│   └── text/html          (<img src="cid:chart@kvwatch">)
//	└── image/png              Content-ID: <chart@kvwatch>, inline
//
// the form Exchange and Outlook write for HTML with inline images
// ([MS-OXCMAIL] 2.1.3.3); through ACS the chart is an attachment with
// contentId. Errors are classified as Notify's and never quote the SMTP
// password or the ACS key.
func (n *Notifier) SendDigest(ctx context.Context, d Digest) error {
	if d.Text == "" && d.HTML == "" {
		return notify.Wrap(n.label(), notify.Permanent(fmt.Errorf("digest %s has no body", d.ID)))
	}
	var err error
	switch n.cfg.Transport {
	case TransportACS:
		err = n.sendDigestACS(ctx, &d)
	default:
		var data []byte
		data, err = digestBytes(&d, n.cfg, n.now())
		if err != nil {
			return notify.Wrap(n.label(), notify.Permanent(fmt.Errorf("build digest %s: %w", d.ID, err)))
		}
		err = n.submitSMTP(ctx, data)
	}
	return notify.Wrap(n.label(), n.scrub(err))
}

// digestMessageID is stable for a digest and sender:
// <kvwatch-digest.ID@kvwatch.from-domain>.
func digestMessageID(id, from string) string {
	domain := token(domainOf(from), 200)
	if domain == "" {
		domain = "localhost"
	}
	return "<kvwatch-digest." + token(id, 64) + "@kvwatch." + domain + ">"
}

// digestBytes renders the digest mail as RFC 5322 with CRLF line ends.
// Boundaries contain "=_", which quoted-printable and base64 content can
// never contain, and neither is a prefix of the other.
func digestBytes(d *Digest, cfg Config, date time.Time) ([]byte, error) {
	var b bytes.Buffer
	msgID := digestMessageID(d.ID, cfg.From)
	h := sha256.Sum256([]byte(msgID + date.String()))
	related := "=_kvwatch_rel_" + hex.EncodeToString(h[:10])
	alternative := "=_kvwatch_alt_" + hex.EncodeToString(h[:10])

	fromAddr := (&mail.Address{Name: headerText(cfg.FromName, 120), Address: cfg.From}).String()
	writeHeader(&b, "Date", date.Format(time.RFC1123Z))
	writeHeader(&b, "From", fromAddr)
	writeHeader(&b, "To", addressList(cfg.To))
	if len(cfg.CC) > 0 {
		writeHeader(&b, "Cc", addressList(cfg.CC))
	}
	writeHeader(&b, "Subject", mime.QEncoding.Encode("utf-8", DigestSubject(cfg.SubjectPrefix, d)))
	writeHeader(&b, "Message-ID", msgID)
	writeHeader(&b, "MIME-Version", "1.0")
	if len(d.Chart) > 0 {
		writeHeader(&b, "Content-Type", mime.FormatMediaType("multipart/related",
			map[string]string{"boundary": related, "type": "multipart/alternative"}))
	} else {
		writeHeader(&b, "Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": alternative}))
	}
	writeHeader(&b, "X-Kvwatch-Digest", token(d.Period, 20))
	writeHeader(&b, "X-Kvwatch-Digest-Id", token(d.ID, 64))
	writeHeader(&b, "Auto-Submitted", "auto-generated")
	writeHeader(&b, "X-Auto-Response-Suppress", "All")
	b.WriteString("\r\n")

	if len(d.Chart) == 0 {
		if err := writeAlternative(&b, alternative, d); err != nil {
			return nil, err
		}
		b.WriteString("\r\n")
		return b.Bytes(), nil
	}

	rw := multipart.NewWriter(&b)
	if err := rw.SetBoundary(related); err != nil {
		return nil, err
	}
	w, err := rw.CreatePart(textproto.MIMEHeader{
		"Content-Type": {mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": alternative})},
	})
	if err != nil {
		return nil, err
	}
	if err := writeAlternative(w, alternative, d); err != nil {
		return nil, err
	}
	cid := strings.Trim(d.ChartCID, "<>")
	w, err = rw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {mime.FormatMediaType("image/png", map[string]string{"name": chartName})},
		"Content-Transfer-Encoding": {"base64"},
		"Content-Id":                {"<" + headerText(cid, 200) + ">"},
		"Content-Disposition":       {mime.FormatMediaType("inline", map[string]string{"filename": chartName})},
	})
	if err != nil {
		return nil, err
	}
	if err := writeBase64(w, d.Chart); err != nil {
		return nil, err
	}
	if err := rw.Close(); err != nil {
		return nil, err
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

// writeAlternative writes the text and HTML parts as multipart/alternative
// with the given boundary, both quoted-printable.
func writeAlternative(w interface{ Write([]byte) (int, error) }, boundary string, d *Digest) error {
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary(boundary); err != nil {
		return err
	}
	for _, p := range []struct{ ctype, body string }{
		{"text/plain; charset=utf-8", d.Text},
		{"text/html; charset=utf-8", d.HTML},
	} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return err
		}
		qp := quotedprintable.NewWriter(pw)
		if _, err := qp.Write([]byte(p.body)); err != nil {
			return err
		}
		if err := qp.Close(); err != nil {
			return err
		}
	}
	return mw.Close()
}

// writeBase64 writes data as base64 in lines of 76 characters.
func writeBase64(w interface{ Write([]byte) (int, error) }, data []byte) error {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 0 {
		n := min(76, len(enc))
		if _, err := w.Write([]byte(enc[:n] + "\r\n")); err != nil {
			return err
		}
		enc = enc[n:]
	}
	return nil
}

// submitSMTP delivers data (a whole message) in one SMTP conversation
// bounded by smtp.timeout, with the same TLS, AUTH, recipient and error
// handling as sendSMTP.
func (n *Notifier) submitSMTP(ctx context.Context, data []byte) error {
	s := &n.cfg.SMTP
	ctx, cancel := context.WithTimeout(ctx, n.smtpTimeout)
	defer cancel()

	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	dialer := &net.Dialer{Timeout: n.smtpTimeout}
	var conn net.Conn
	var err error
	if s.TLS == TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: n.tlsConfig}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return classifySMTP(ctx, "connect to "+addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var c *smtp.Client
	if s.TLS == TLSStartTLS {
		c, err = smtp.NewClientStartTLS(conn, n.tlsConfig)
		if err != nil {
			conn.Close()
			return classifySMTP(ctx, "STARTTLS with "+addr, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout = n.smtpTimeout
	c.SubmissionTimeout = n.smtpTimeout
	if err := c.Hello(localName()); err != nil {
		return classifySMTP(ctx, "EHLO", err)
	}
	if s.Username != "" {
		if ok, mechs := c.Extension("AUTH"); !ok {
			return classifySMTP(ctx, "auth", notify.Permanent(fmt.Errorf("server %s offers no AUTH (credentials are configured)", addr)))
		} else if mech := strings.ToUpper(s.Auth); !c.SupportsAuth(mech) {
			return classifySMTP(ctx, "auth", notify.Permanent(fmt.Errorf("server %s offers AUTH %s, not %s", addr, headerText(mechs, 100), mech)))
		}
		var client sasl.Client
		if s.Auth == AuthLogin {
			client = sasl.NewLoginClient(s.Username, s.Password)
		} else {
			client = sasl.NewPlainClient("", s.Username, s.Password)
		}
		if err := c.Auth(client); err != nil {
			return classifySMTP(ctx, "AUTH "+strings.ToUpper(s.Auth), err)
		}
	}
	if err := c.Mail(n.cfg.From, nil); err != nil {
		return classifySMTP(ctx, "MAIL FROM", err)
	}
	var rejected []string
	accepted := 0
	for _, rcpt := range append(append([]string(nil), n.cfg.To...), n.cfg.CC...) {
		err := c.Rcpt(rcpt, nil)
		if err == nil {
			accepted++
			continue
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code/100 == 5 {
			rejected = append(rejected, fmt.Sprintf("%s (%v)", rcpt, err))
			continue
		}
		_ = c.Reset()
		return classifySMTP(ctx, "RCPT TO "+rcpt, err)
	}
	if accepted == 0 {
		return notify.Permanent(fmt.Errorf("every recipient refused: %s", strings.Join(rejected, "; ")))
	}
	w, err := c.Data()
	if err != nil {
		return classifySMTP(ctx, "DATA", err)
	}
	if _, err := w.Write(data); err != nil {
		return classifySMTP(ctx, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return classifySMTP(ctx, "end of DATA", err)
	}
	_ = c.Quit()
	if len(rejected) > 0 {
		return notify.Permanent(fmt.Errorf("sent to %d recipient(s), refused: %s", accepted, strings.Join(rejected, "; ")))
	}
	return nil
}

// acsAttachment is an EmailAttachment of the Email REST API (2025-09-01):
// contentId makes it inline, referenced from the HTML as "cid:<id>".
type acsAttachment struct {
	Name            string `json:"name"`
	ContentType     string `json:"contentType"`
	ContentInBase64 string `json:"contentInBase64"`
	ContentID       string `json:"contentId,omitempty"`
}

// acsDigestMessage is an EmailMessage with attachments.
type acsDigestMessage struct {
	acsMessage
	Attachments []acsAttachment `json:"attachments,omitempty"`
}

// sendDigestACS sends the digest through the Email REST API and polls the
// operation, as sendACS does for alerts.
func (n *Notifier) sendDigestACS(ctx context.Context, d *Digest) error {
	msg := acsDigestMessage{acsMessage: acsMessage{
		SenderAddress: n.cfg.From,
		Content:       acsContent{Subject: DigestSubject(n.cfg.SubjectPrefix, d), PlainText: d.Text, HTML: d.HTML},
		Headers: map[string]string{
			"X-Kvwatch-Digest":    token(d.Period, 20),
			"X-Kvwatch-Digest-Id": token(d.ID, 64),
		},
		UserEngagementTrackingDisabled: true,
	}}
	for _, a := range n.cfg.To {
		msg.Recipients.To = append(msg.Recipients.To, acsAddress{Address: a})
	}
	for _, a := range n.cfg.CC {
		msg.Recipients.CC = append(msg.Recipients.CC, acsAddress{Address: a})
	}
	if len(d.Chart) > 0 {
		msg.Attachments = []acsAttachment{{
			Name: chartName, ContentType: "image/png",
			ContentInBase64: base64.StdEncoding.EncodeToString(d.Chart),
			ContentID:       strings.Trim(d.ChartCID, "<>"),
		}}
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return notify.Permanent(fmt.Errorf("acs: encode: %w", err))
	}
	opID := OperationID(n.name, "digest:"+d.ID)
	resp, rbody, err := n.acsDo(ctx, http.MethodPost, n.apiURL("/emails:send"), body, opID)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return acsStatusError("acs: send", resp, rbody, n.now())
	}
	var res acsResult
	_ = json.Unmarshal(rbody, &res)
	if done, err := acsTerminal(opID, &res); done {
		return err
	}
	if res.ID == "" {
		res.ID = opID
	}
	return n.pollACS(ctx, n.pollURL(resp.Header.Get("Operation-Location"), res.ID), opID, resp, res.Status)
}
